/* feature-browser client, the index's search box (templates/index.html #q): the term index
   search/s<k>.js (calling fbIndex) and the token index search/t<k>.js (calling fbTokens), both
   in the format that generator/site/search.py describes and versions as SEARCH_FORMAT (the
   box's data-search-v); result labels come from the latent table's rows (table.js). Needs
   util.js and table.js. */
(function (fb) {
  "use strict";

  var u = fb.util, el = u.el, load = u.load, root = u.root;
  var manifest = fb.table.manifest, col = fb.table.col, rowsOf = fb.table.rowsOf;

  /* the loaded shards: k -> {term: postings} and k -> {token key: entry} */
  var store = { shards: {}, tokens: {} };
  window.fbIndex = function (k, terms) { store.shards[k] = terms; };
  window.fbTokens = function (k, keys) { store.tokens[k] = keys; };

  var WORD = /[\p{L}\p{N}_]+/gu, HAS_WORD = /[\p{L}\p{N}_]/u;

  function norm(s) { return s.normalize("NFKC").toLowerCase(); }

  function termsOf(text) {
    var s = norm(text), out = [], seen = {};
    var words = s.match(WORD) || [];
    var pieces = s.split(/\s+/).filter(function (p) { return p && !HAS_WORD.test(p); });
    words.concat(pieces).forEach(function (t) { if (!seen[t]) { seen[t] = 1; out.push(t); } });
    return out;
  }

  function fnv1a(str) {
    var bytes = new TextEncoder().encode(str), h = 0x811c9dc5;
    for (var k = 0; k < bytes.length; k++) { h ^= bytes[k]; h = Math.imul(h, 0x01000193) >>> 0; }
    return h >>> 0;
  }

  function shardOf(term, n) { return fnv1a(Array.from(term).slice(0, 2).join("")) % n; }

  /* latent -> best score for one query term: exact matches count fully, prefixes 60%. A term
     whose postings list is full (data-postings) may match more latents than it lists: `full`. */
  var fullAt = 0, full = false;
  function matchTerm(term, n) {
    var shard = store.shards[shardOf(term, n)] || {}, hits = {}, single = Array.from(term).length < 2;
    for (var key in shard) {
      if (key !== term && (single || key.lastIndexOf(term, 0) !== 0)) continue;
      var weight = key === term ? 1 : 0.6, list = shard[key];
      if (fullAt && list.length >= 2 * fullAt) full = true;
      for (var k = 0; k + 1 < list.length; k += 2) {
        var s = list[k + 1] * weight;
        if (!(hits[list[k]] >= s)) hits[list[k]] = s;
      }
    }
    return hits;
  }

  function rank(query, n) {
    var scores = {}, matched = {}, terms = termsOf(query);
    full = false;
    terms.forEach(function (term) {
      var hits = matchTerm(term, n);
      for (var id in hits) { scores[id] = (scores[id] || 0) + hits[id]; matched[id] = (matched[id] || 0) + 1; }
    });
    var ids = Object.keys(scores).map(Number);
    ids.sort(function (a, b) { return (matched[b] - matched[a]) || (scores[b] - scores[a]) || (a - b); });
    var q = query.trim().replace(/^#/, ""), first = null;
    if (/^\d+$/.test(q) && +q < manifest.n) {
      first = +q;
      ids = [first].concat(ids.filter(function (i) { return i !== first; }));
    }
    return { ids: ids.slice(0, 20), all: ids, total: ids.length, terms: terms, full: full, query: query, first: first };
  }

  /* The token index (generator/site/search.py): the whole query as one corpus token's key ->
     [{latent, variant, mean, count}], best first; variants: the displays of its tokens. */
  function tokenHits(query, tn) {
    var key = norm(query).trim();
    if (!tn || !key) return Promise.resolve(null);
    var k = shardOf(key, tn);
    return load("search/t" + k + ".js").then(function () {
      var entry = (store.tokens[k] || {})[key];
      if (!entry) return null;
      var hits = [];
      for (var j = 0; j + 3 < entry.l.length; j += 4) {
        hits.push({ latent: entry.l[j], variant: entry.v[entry.l[j + 1]], mean: entry.l[j + 2], count: entry.l[j + 3] });
      }
      return { key: key, hits: hits };
    });
  }

  function search(query, n, tn) {
    var shards = {};
    termsOf(query).forEach(function (t) { shards[shardOf(t, n)] = 1; });
    var result, tokens;
    return Promise.all(Object.keys(shards).map(function (k) { return load("search/s" + k + ".js"); })
      .concat([tokenHits(query, tn).then(function (t) { tokens = t; })]))
      .then(function () {
        result = rank(query, n);
        result.tokens = tokens;
        /* a latent id typed as the query (rank put it first) stays first, above the token */
        if (result.first != null) result.ids.shift();
        if (tokens) tokens.hits = tokens.hits.filter(function (h) { return h.latent !== result.first; });
        var onToken = tokens ? tokens.hits.map(function (h) { return h.latent; }) : [];
        result.ids = result.ids.filter(function (i) { return onToken.indexOf(i) < 0; });
        /* the matches not already listed (on the token, or as the typed id) */
        result.total = result.all.filter(function (i) { return onToken.indexOf(i) < 0 && i !== result.first; }).length;
        var lead = result.first == null ? [] : [result.first], wanted = lead.concat(onToken, result.ids);
        function fill(rows) {
          var k = result.tokens ? result.tokens.hits.length : 0;
          result.firstRow = rows[0];
          result.tokenRows = rows.slice(lead.length, lead.length + k);
          result.rows = rows.slice(lead.length + k);
          return result;
        }
        /* a packed site's id files hold 1,024 rows each: the results show at once, their labels
           as the files arrive (result.labels) */
        if (!u.packed) return rowsOf(wanted).then(fill);
        fill(wanted.map(function () { return []; }));
        result.labels = rowsOf(wanted).then(fill);
        return result;
      });
  }

  function setup() {
    var input = document.getElementById("q");
    if (!input || !manifest) return;
    var list = document.getElementById("qr"), status = document.getElementById("qs");
    var n = +input.getAttribute("data-shards") || 1, selected = -1, seq = 0, timer = null;
    var tn = +input.getAttribute("data-token-shards") || 0, shownFor = "";
    fullAt = +input.getAttribute("data-postings") || 0;

    function select(k) {
      var items = list.querySelectorAll("li[role=option]");
      if (!items.length) return;
      selected = (k + items.length) % items.length;
      for (var j = 0; j < items.length; j++) items[j].setAttribute("aria-selected", j === selected ? "true" : "false");
      input.setAttribute("aria-activedescendant", items[selected].id);
      items[selected].scrollIntoView({ block: "nearest" });
    }

    function show(result) {
      var k = 0;
      list.textContent = "";
      selected = -1;
      input.removeAttribute("aria-activedescendant");
      function option(i, row, extra) {
        var li = el("li"), a = el("a", null, "#" + i);
        li.id = "qr-" + k++;
        li.setAttribute("role", "option");
        a.href = fb.util.latentHref(i);
        a.tabIndex = -1;
        li.appendChild(a);
        if (extra) li.appendChild(el("span", "tokhit", extra));
        li.appendChild(el("span", "note", label(row)));
        list.appendChild(li);
      }
      if (result.first != null) option(result.first, result.firstRow);
      var tokens = result.tokens;
      if (tokens && tokens.hits.length) {
        var head = el("li", "qh", "Fire most on the token \u201c" + tokens.key + "\u201d (mean activation there \u00d7 times):");
        head.setAttribute("role", "presentation");
        list.appendChild(head);
        tokens.hits.forEach(function (h, j) {
          option(h.latent, result.tokenRows[j], fmtMean(h.mean) + " \u00d7 " + h.count.toLocaleString("en") + " on \u201c" + h.variant + "\u201d");
        });
        if (result.ids.length) {
          var more = el("li", "qh", "Other matches:");
          more.setAttribute("role", "presentation");
          list.appendChild(more);
        }
      }
      result.ids.forEach(function (i, j) { option(i, result.rows[j]); });
      list.hidden = !k;
      input.setAttribute("aria-expanded", k ? "true" : "false");
      shownFor = result.query || "";
      var total = result.total || 0, onToken = tokens ? tokens.hits.length : 0;
      var parts = [];
      if (result.first != null) parts.push("latent " + result.first);
      if (onToken) parts.push("the " + onToken + " latents that fire most on the token");
      parts.push(total + (result.full ? "+" : "") + (parts.length ? " other" : "") +
        (total === 1 && !result.full ? " latent matches" : " latents match"));
      var words = parts.join("; ");
      status.textContent = input.value.trim() ? words : "";
    }

    /* a result's label: the latent's explanation, else its top tokens */
    function label(row) { return row[col("e")] || row[col("t")] || ""; }

    /* the labels of the shown results, once their rows have loaded (show's order) */
    function fillLabels(result) {
      var notes = list.querySelectorAll("li[role=option] > span.note");
      var rows = (result.first != null ? [result.firstRow] : []).concat(result.tokenRows || [], result.rows);
      for (var j = 0; j < notes.length && j < rows.length; j++) notes[j].textContent = label(rows[j]);
    }

    function fmtMean(x) { return String(+(+x).toPrecision(3)); }

    /* resolves once the results of the box's current text are shown */
    function run() {
      var query = input.value, mine = ++seq;
      clearTimeout(timer);
      if (!query.trim()) { show({ ids: [], rows: [], total: 0, query: query }); return Promise.resolve(); }
      return search(query, n, tn).then(function (r) {
        if (mine !== seq) return;
        show(r);
        if (r.labels) r.labels.then(function () { if (mine === seq) fillLabels(r); });
      }, function (err) { status.textContent = String(err.message || err); });
    }

    /* Enter opens the selected (or first) result of what the box says now: typed fast, the
       list may still show an earlier text's results, so those are searched first */
    function open() {
      var items = list.querySelectorAll("li[role=option] a");
      if (items.length) location.href = items[Math.max(0, selected)].href;
    }

    /* the first keystroke after a pause searches at once; a burst of typing is debounced */
    var lastInput = 0;
    input.addEventListener("input", function () {
      var now = Date.now();
      clearTimeout(timer);
      timer = setTimeout(run, now - lastInput > 300 ? 0 : 60);
      lastInput = now;
    });
    input.addEventListener("keydown", function (ev) {
      if (ev.key === "ArrowDown") { ev.preventDefault(); select(selected + 1); }
      else if (ev.key === "ArrowUp") { ev.preventDefault(); select(selected - 1); }
      else if (ev.key === "Enter") {
        ev.preventDefault();
        if (shownFor === input.value) open(); else run().then(open);
      } else if (ev.key === "Escape") { input.value = ""; run(); }
    });
    list.addEventListener("mousemove", function (ev) {
      var li = ev.target.closest && ev.target.closest("li[role=option]");
      if (li) select(+li.id.slice(3));
    });
    var initial = new URLSearchParams(location.search).get("q") ||
      (location.hash.indexOf("#q=") === 0 ? decodeURIComponent(location.hash.slice(3)) : "");
    if (initial) { input.value = initial; run(); input.focus(); }
  }

  /* window.fbSearch(query, n_shards, n_token_shards): the search itself, without the box */
  window.fbSearch = search;
  fb.search = { setup: setup, search: search };
})(window.fb);
