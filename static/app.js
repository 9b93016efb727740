/* feature-browser client: token tooltips, expand-to-sequence, copy buttons, the index table and
   search. A classic script (no modules, no fetch) so that the site works from file://: data files
   are <script src> files that call the fb* registration functions defined here. Token text always
   goes through textContent, never innerHTML. */
(function () {
  "use strict";

  var LEVELS = 9, ACT_LEVELS = 1000, MARK = 10, NEWLINE = "\u23ce", SEQ_SHARD = 64;
  /* BOS / document-boundary positions: 0 in seqs/<k>.js, a muted marker on the page
     (generator/pages.py BOS_MARK, BOS_TITLE). */
  var BOS = 0, BOS_MARK = "\u27e8bos\u27e9", BOS_TITLE = "BOS / document boundary: excluded from statistics";
  var root = document.body.getAttribute("data-root") || "./";
  var store = { seqs: {}, symbols: null, shards: {}, rows: {} };
  var loading = {};

  window.fbSeqs = function (k, seqs) { for (var s in seqs) store.seqs[s] = seqs[s]; };
  window.fbSeqTable = function (symbols) { store.symbols = symbols; };
  window.fbIndex = function (k, terms) { store.shards[k] = terms; };

  /* Load a data script once (relative to the site root); resolves when it has run. */
  function load(path) {
    if (!loading[path]) {
      loading[path] = new Promise(function (resolve, reject) {
        var s = document.createElement("script");
        s.src = root + path;
        s.onload = resolve;
        s.onerror = function () { delete loading[path]; reject(new Error("cannot load " + path)); };
        document.head.appendChild(s);
      });
    }
    return loading[path];
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  /* ---------------- tokens: classes and elements, mirroring generator/tokens.py ------------- */

  /* colour class of a shipped activation level 1..ACT_LEVELS (integer maths, as in Python) */
  function level(lvl) {
    if (!(lvl > 0)) return 0;
    return Math.min(LEVELS, Math.floor((LEVELS * lvl + ACT_LEVELS - 1) / ACT_LEVELS));
  }

  function tokenClasses(lvl, isMax, dl) {
    var c = [], lv = level(lvl);
    if (lv) c.push("a" + lv);
    if (isMax) c.push("m");
    if (dl >= MARK) c.push("p"); else if (dl <= -MARK) c.push("n");
    return c.join(" ");
  }

  /* A display is a string, an array alternating normal and muted segments, or BOS. */
  function appendToken(parent, display, cls) {
    if (display === BOS) { parent.appendChild(el("i", "bos", BOS_MARK)); return; }
    var i = el("i", cls), breaks = 0;
    var parts = typeof display === "string" ? [display] : display;
    for (var k = 0; k < parts.length; k++) {
      if (!parts[k]) continue;
      if (k % 2) {
        i.appendChild(el("b", null, parts[k]));
        breaks += parts[k].split(NEWLINE).length - 1;
      } else {
        i.appendChild(document.createTextNode(parts[k]));
      }
    }
    parent.appendChild(i);
    for (var b = 0; b < breaks; b++) parent.appendChild(document.createElement("br"));
  }

  /* ---------------- latent pages: per-example data, tooltips, expansion -------------------- */

  var data = null;
  var dataEl = document.getElementById("fb-data");
  if (dataEl) data = JSON.parse(dataEl.textContent);

  /* Example codes: unsigned varints in B64 digits, 5 bits each, least significant first, 32 =
     continuation (generator/pages.py varint). */
  var B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  function varints(code) {
    var out = [], v = 0, mul = 1;
    for (var k = 0; k < code.length; k++) {
      var d = B64.indexOf(code.charAt(k));
      v += (d & 31) * mul;
      if (d >= 32) mul *= 32; else { out.push(v); v = 0; mul = 1; }
    }
    return out;
  }

  /* Code: seq, start, end - start, peak - start, cut, n_in, n_in x (gap, level) inside the
     window (gaps from start - 1), n_out, n_out x (gap * LEVELS + colour - 1) outside it, then
     (gap, zigzag Δloss milli) to the end; see generator/pages.py. The window's <i> elements
     other than .bos are the positions in sorted(acts u dloss u {peak}) within [start, end). */
  var examples = [];
  function exampleOf(tx) {
    var n = +tx.id.slice(3);
    if (examples[n]) return examples[n];
    if (typeof data.e === "string") data.e = data.e.split(" ");
    var v = varints(data.e[n]), e = { seq: v[0], start: v[1], end: v[1] + v[2], peak: v[1] + v[3],
      cut: v[4], acts: {}, colours: {}, dl: {} };
    var k = 6, p = v[1] - 1, end = 6 + 2 * v[5];
    for (; k < end; k += 2) { p += v[k] + 1; e.acts[p] = v[k + 1]; }
    for (end = k + 1 + v[k], k++, p = -1; k < end; k++) {
      p += Math.floor(v[k] / LEVELS) + 1;
      e.colours[p] = v[k] % LEVELS + 1;
    }
    for (p = -1; k + 1 < v.length; k += 2) { p += v[k] + 1; e.dl[p] = v[k + 1] % 2 ? -(v[k + 1] + 1) / 2 : v[k + 1] / 2; }
    var seen = {}, pos = [];
    [e.peak].concat(Object.keys(e.acts), Object.keys(e.dl)).forEach(function (q) {
      q = +q;
      if (q >= e.start && q < e.end && !seen[q]) { seen[q] = 1; pos.push(q); }
    });
    e.pos = pos.sort(function (a, b) { return a - b; });
    examples[n] = e;
    return e;
  }

  function isBos(n) { return n.classList.contains("bos"); }

  /* A token's position in its sequence; null for a BOS marker of a window (not in the data). */
  function positionOf(tok) {
    var tx = tok.parentNode, e = exampleOf(tx), full = tx.classList.contains("full"), k = 0;
    if (!full && isBos(tok)) return null;
    for (var n = tx.firstElementChild; n && n !== tok; n = n.nextElementSibling) {
      if (n.tagName === "I" && (full || !isBos(n))) k++;
    }
    return full ? k : e.pos[k];
  }

  function fmt(x) { return Math.abs(x) >= 1000 ? Math.round(x).toLocaleString("en") : String(+x.toPrecision(3)); }

  function tipText(tok) {
    var e = exampleOf(tok.parentNode), pos = positionOf(tok);
    if (isBos(tok)) return BOS_MARK + (pos == null ? "" : "  position " + pos) + "\n" + BOS_TITLE;
    var lvl = e.acts[pos] || 0, colour = e.colours[pos], dl = e.dl[pos];
    var lines = ["\u201c" + tok.textContent + "\u201d  position " + pos];
    if (colour) lines.push("activation " + fmt((colour - 1) * data.m / LEVELS) + "\u2013" +
      fmt(colour * data.m / LEVELS) + " (colour " + colour + " of " + LEVELS +
      "; exact values are kept inside the snippet)");
    else lines.push("activation " + (lvl ? "\u2248" + fmt(lvl * data.m / ACT_LEVELS) + " (" +
      Math.round(100 * lvl / ACT_LEVELS) + "% of max)" : "0"));
    var outside = pos < e.start || pos >= e.end;
    if (dl === undefined && outside && e.cut) lines.push("|\u0394loss| \u2264 " + (e.cut / 1000).toFixed(3) + " (only the largest effects outside the snippet are kept)");
    else if (dl === undefined) lines.push("|\u0394loss| < 0.01");
    else lines.push("\u0394loss " + (dl > 0 ? "+" : "") + (dl / 1000).toFixed(3) +
      (dl > 0 ? ": the latent helped predict this token" : ": the latent hurt predicting this token"));
    return lines.join("\n");
  }

  var tip = null;  /* #tip, made on first use (not in the pages: it is script-only) */
  function showTip(tok) {
    if (data) placeTip(tipText(tok), tok.getBoundingClientRect());
  }
  /* #tip with `text`, under (or above) the viewport rectangle r */
  function placeTip(text, r) {
    if (!tip) {
      tip = el("div");
      tip.id = "tip";
      tip.setAttribute("role", "tooltip");
      document.body.appendChild(tip);
    }
    tip.textContent = text;
    tip.hidden = false;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    var x = Math.max(4, Math.min(r.left, document.documentElement.clientWidth - w - 4));
    var y = r.bottom + 6 + h > window.innerHeight ? r.top - h - 6 : r.bottom + 6;
    tip.style.left = x + window.scrollX + "px";  /* page coordinates: stays put on scroll */
    tip.style.top = Math.max(4, y) + window.scrollY + "px";
  }
  function hideTip() { if (tip) tip.hidden = true; }

  function isToken(t) { return t && t.tagName === "I" && t.parentNode && t.parentNode.classList && t.parentNode.classList.contains("tx"); }

  function tokenTarget(t) {
    while (t && t !== document.body) { if (isToken(t)) return t; t = t.parentNode; }
    return null;
  }

  function renderFull(tx, e, seq) {
    var label = tx.querySelector(":scope > em");
    tx.textContent = "";
    if (label) tx.appendChild(label);
    var dl = e.dl, acts = e.acts, colours = e.colours;
    for (var pos = 0; pos < seq.length; pos++) {
      /* outside the window only the colour is shipped: the top level of that colour */
      var lvl = acts[pos] || Math.floor((colours[pos] || 0) * ACT_LEVELS / LEVELS);
      appendToken(tx, store.symbols[seq[pos]], tokenClasses(lvl, pos === e.peak, dl[pos] || 0));
    }
  }

  function toggle(tx) {
    var e = exampleOf(tx);
    hideTip();
    if (tx.classList.contains("full")) {
      tx.innerHTML = tx.fbWindow;
      tx.classList.remove("full");
      tx.setAttribute("aria-expanded", "false");
      return Promise.resolve();
    }
    if (!tx.fbWindow) tx.fbWindow = tx.innerHTML;
    return load("seqs/t.js").then(function () {
      return load("seqs/" + Math.floor(e.seq / SEQ_SHARD) + ".js");
    }).then(function () {
      var seq = store.seqs[e.seq];
      if (!seq || !store.symbols) return;
      if (typeof seq === "string") seq = store.seqs[e.seq] = varints(seq);
      renderFull(tx, e, seq);
      tx.classList.add("full");
      tx.setAttribute("aria-expanded", "true");
    });
  }

  function moveCursor(tx, step) {
    var toks = tx.querySelectorAll(":scope > i"), cur = tx.querySelector(":scope > i.cur"), k = -1;
    for (var n = 0; n < toks.length; n++) if (toks[n] === cur) k = n;
    if (k < 0) k = step > 0 ? -1 : toks.length;
    if (cur) cur.classList.remove("cur");
    var next = toks[Math.max(0, Math.min(toks.length - 1, k + step))];
    if (next) { next.classList.add("cur"); showTip(next); }
  }

  function setupExamples() {
    if (!data) return;
    var lines = document.querySelectorAll(".exs > li");
    /* a class-less <i> of a window is a helped-only token (generator/pages.py HELPED_ONLY) */
    var bare = document.querySelectorAll(".exs > li > i:not([class])");
    for (var b = 0; b < bare.length; b++) bare[b].className = "p";
    for (var n = 0; n < lines.length; n++) {
      lines[n].classList.add("tx");
      lines[n].tabIndex = 0;
      lines[n].setAttribute("aria-expanded", "false");
      lines[n].setAttribute("aria-label", "Example " + lines[n].id.slice(3) +
        ": Enter shows the whole sequence, arrow keys step through tokens");
    }
    document.addEventListener("mouseover", function (ev) {
      var t = tokenTarget(ev.target);
      if (t) showTip(t); else if (!chartTarget(ev.target)) hideTip();
    });
    document.addEventListener("click", function (ev) {
      if (ev.target.closest && ev.target.closest("a")) return;
      var tx = ev.target.closest && ev.target.closest(".tx");
      if (tx) toggle(tx);
    });
    document.addEventListener("keydown", function (ev) {
      var tx = document.activeElement;
      if (!tx || !tx.classList || !tx.classList.contains("tx")) return;
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); toggle(tx); }
      else if (ev.key === "ArrowRight") { ev.preventDefault(); moveCursor(tx, 1); }
      else if (ev.key === "ArrowLeft") { ev.preventDefault(); moveCursor(tx, -1); }
      else if (ev.key === "Escape") hideTip();
    });
    document.addEventListener("focusout", function (ev) {
      if (ev.target.classList && ev.target.classList.contains("tx")) {
        var cur = ev.target.querySelector("i.cur");
        if (cur) cur.classList.remove("cur");
        hideTip();
      }
    });
  }

  /* ---------------- chart bars: what each bin counts ------------------------------------- */

  /* Python's sig(): 3 significant digits, thousands separators from 1,000 to 1e6, exponents
     as Python writes them (generator/charts.py). */
  function sig(x) {
    if (!isFinite(x)) return "n/a";
    if (Math.abs(x) >= 1000 && Math.abs(x) < 1e6) return Math.round(x).toLocaleString("en");
    var m = x.toExponential(2).split("e"), e = +m[1];
    if (x !== 0 && (e < -4 || e >= 3)) {
      return m[0].replace(/\.?0+$/, "") + "e" + (e < 0 ? "-" : "+") + (Math.abs(e) < 10 ? "0" : "") + Math.abs(e);
    }
    return String(+x.toPrecision(3));
  }

  function chartTarget(t) { return t && t.closest ? t.closest("svg.chart[data-c]") : null; }

  /* The tooltip of bin k of a chart: generator/charts.py Bins.tip, from the <svg>'s data-c
     (counts, varints), data-x (range), data-t (unit|what|brackets), data-l (log10 bins), data-i
     (intervals colouring the bins). */
  function binTip(svg, k) {
    var counts = varints(svg.getAttribute("data-c")), n = counts.length, c = counts[k];
    var x = svg.getAttribute("data-x").split(" "), lo = +x[0], hi = +x[1];
    var t = svg.getAttribute("data-t").split("|"), b = t[2], log = svg.hasAttribute("data-l");
    function edge(j) { var v = lo + j * (hi - lo) / n; return log ? Math.pow(10, v) : v; }
    var text = c.toLocaleString("en") + " " + t[0] + (c === 1 ? "" : "s") + " with " + t[1] + " in " +
      b.charAt(0) + sig(edge(k)) + ", " + sig(edge(k + 1)) + b.charAt(k === n - 1 ? 2 : 1);
    var ni = +svg.getAttribute("data-i");
    if (ni) text += " (interval " + (Math.min(ni - 1, Math.floor((k + 0.5) * ni / n)) + 1) + ")";
    return text;
  }

  function setupCharts() {
    var charts = document.querySelectorAll("svg.chart[data-c]");
    for (var n = 0; n < charts.length; n++) {
      var title = charts[n].querySelector("title");
      if (title) {  /* the chart's name stays for screen readers; the bins get the tooltips */
        charts[n].setAttribute("aria-label", title.textContent);
        title.parentNode.removeChild(title);
      }
    }
    function onChart(ev) {
      var svg = chartTarget(ev.target);
      if (!svg) return;
      var r = svg.getBoundingClientRect(), n = varints(svg.getAttribute("data-c")).length;
      var k = Math.max(0, Math.min(n - 1, Math.floor((ev.clientX - r.left) / r.width * n)));
      var left = r.left + k * r.width / n;
      placeTip(binTip(svg, k), { left: left, right: left + r.width / n, top: r.top, bottom: r.bottom });
    }
    document.addEventListener("mousemove", onChart);
    document.addEventListener("click", onChart);
    document.addEventListener("mouseout", function (ev) {
      if (chartTarget(ev.target) && !chartTarget(ev.relatedTarget)) hideTip();
    });
  }

  /* ---------------- copy permalink / embed snippet --------------------------------------- */

  function copyText(text, status) {
    function done(ok) { if (status) status.textContent = ok ? "Copied." : "Copy this: " + text; }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(fallbackCopy(text)); });
    } else {
      done(fallbackCopy(text));
    }
  }

  function fallbackCopy(text) {
    var area = el("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (err) { ok = false; }
    document.body.removeChild(area);
    return ok;
  }

  /* The copy buttons exist only with scripts: made here, after the latent's stats, from the
     article's data-embed (the embed URL relative to the page). */
  function addCopyButtons() {
    var art = document.querySelector("article[data-embed]"), stats = document.querySelector(".stats");
    if (!art || !stats) return;
    var p = el("p", "copy"), link = el("button", null, "Copy permalink"),
      embed = el("button", null, "Copy embed snippet"), status = el("span", "st");
    link.type = embed.type = "button";
    link.setAttribute("data-copy", "link");
    embed.setAttribute("data-copy", "embed");
    embed.setAttribute("data-src", art.getAttribute("data-embed"));
    status.setAttribute("aria-live", "polite");
    p.appendChild(link);
    p.appendChild(document.createTextNode(" "));
    p.appendChild(embed);
    p.appendChild(document.createTextNode(" "));
    p.appendChild(status);
    stats.parentNode.insertBefore(p, stats.nextSibling);
  }

  function setupCopy() {
    addCopyButtons();
    var buttons = document.querySelectorAll("[data-copy]");
    for (var n = 0; n < buttons.length; n++) {
      buttons[n].addEventListener("click", function (ev) {
        var b = ev.currentTarget, status = b.parentNode.querySelector(".st"), text;
        var here = location.href.split("#")[0];
        if (b.getAttribute("data-copy") === "link") {
          text = here;
        } else {
          var src = new URL(b.getAttribute("data-src"), here).href;
          text = '<iframe src="' + src + '" title="' + document.querySelector("h1").textContent +
            '" width="100%" height="460" style="border:1px solid #d0d7de;border-radius:6px" loading="lazy"></iframe>';
        }
        window.fbLastCopy = text;
        copyText(text, status);
      });
    }
  }

  /* ---------------- index: sortable, paginated latent table ------------------------------ */

  /* The table ships as one file per page per sort key, search/<key>/<c>.js (format in
     generator/search.py); the manifest is inline (#fb-table). Nothing is loaded up front. */
  var manifestEl = document.getElementById("fb-table");
  var manifest = manifestEl ? JSON.parse(manifestEl.textContent) : null;
  var table = { key: "id", dir: 1, page: 0, seq: 0 };

  window.fbRows = function (key, c, rows) { (store.rows[key] = store.rows[key] || {})[c] = rows; };

  function col(name) { return manifest.cols.indexOf(name) + 1; }

  /* rows at positions `pos` of key's file order (loading the files they lie in) */
  function rowsAt(key, pos) {
    var R = manifest.rows, files = {};
    pos.forEach(function (p) { files[Math.floor(p / R)] = 1; });
    return Promise.all(Object.keys(files).map(function (c) { return load("search/" + key + "/" + c + ".js"); }))
      .then(function () { return pos.map(function (p) { return store.rows[key][Math.floor(p / R)][p % R]; }); });
  }

  /* the rows of latents `ids` (for search labels), from the id-ordered files */
  function rowsOf(ids) { return rowsAt("id", ids); }

  function pct(x) {
    if (x == null) return "n/a";
    if (x === 0) return "0%";
    var v = 100 * x;
    return v >= 0.001 ? String(+v.toPrecision(3)) + "%" : v.toExponential(2) + "%";
  }

  function pageCount() { return Math.max(1, Math.ceil(manifest.n / manifest.rows)); }

  /* file positions of the current page: the natural order, or its valid part read backwards */
  function pagePositions() {
    var natural = table.key === "id" || table.key === "e" ? 1 : -1, valid = manifest.sorts[table.key];
    var start = table.page * manifest.rows, end = Math.min(manifest.n, start + manifest.rows), pos = [];
    for (var r = start; r < end; r++) pos.push(table.dir === natural || r >= valid ? r : valid - 1 - r);
    return pos;
  }

  function sortTable(key) {
    if (!(key in manifest.sorts)) return;
    table.dir = table.key === key ? -table.dir : (key === "id" || key === "e" ? 1 : -1);
    table.key = key;
    table.page = 0;
    var ths = document.querySelectorAll("#lt th");
    for (var n = 0; n < ths.length; n++) {
      var b = ths[n].querySelector("button");
      if (b && b.getAttribute("data-sort") === key) ths[n].setAttribute("aria-sort", table.dir > 0 ? "ascending" : "descending");
      else ths[n].removeAttribute("aria-sort");
    }
    showPage();
  }

  function showPage() {
    var mine = ++table.seq;
    return rowsAt(table.key, pagePositions()).then(function (rows) {
      if (mine === table.seq) renderTable(rows);
    });
  }

  function renderTable(rows) {
    var tbody = document.querySelector("#lt tbody"), frag = document.createDocumentFragment();
    var d = col("d"), x = col("x"), t = col("t"), e = col("e"), am = col("am"), af = col("af");
    rows.forEach(function (row) {
      var i = row[0], tr = el("tr"), td = el("td"), a = el("a", null, String(i));
      a.href = root + "features/" + i + ".html";
      td.appendChild(a);
      tr.appendChild(td);
      tr.appendChild(el("td", "num", pct(row[d])));
      tr.appendChild(el("td", "num", fmt(row[x])));
      tr.appendChild(el("td", null, row[t]));
      tr.appendChild(el("td", null, row[e]));
      if (am) {
        tr.appendChild(el("td", "num", row[am] == null ? "n/a" : (row[am] > 0 ? "+" : "") + fmt(row[am])));
        tr.appendChild(el("td", "num", pct(row[af])));
      }
      frag.appendChild(tr);
    });
    tbody.textContent = "";
    tbody.appendChild(frag);
    document.getElementById("pg").textContent = "page " + (table.page + 1) + " of " + pageCount();
    document.querySelector("[data-page='-1']").disabled = table.page === 0;
    document.querySelector("[data-page='1']").disabled = table.page >= pageCount() - 1;
  }

  function setupTable() {
    if (!document.getElementById("lt") || !manifest) return;
    var sorters = document.querySelectorAll("#lt [data-sort]");
    for (var n = 0; n < sorters.length; n++) {
      sorters[n].addEventListener("click", function (ev) { sortTable(ev.currentTarget.getAttribute("data-sort")); });
    }
    var pagers = document.querySelectorAll("[data-page]");
    for (var p = 0; p < pagers.length; p++) {
      pagers[p].addEventListener("click", function (ev) {
        table.page = Math.max(0, Math.min(pageCount() - 1, table.page + +ev.currentTarget.getAttribute("data-page")));
        showPage();
      });
    }
  }

  /* ---------------- search (index format v1: see generator/search.py) -------------------- */

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

  /* latent -> best score for one query term: exact matches count fully, prefixes 60%. */
  function matchTerm(term, n) {
    var shard = store.shards[shardOf(term, n)] || {}, hits = {}, single = Array.from(term).length < 2;
    for (var key in shard) {
      if (key !== term && (single || key.lastIndexOf(term, 0) !== 0)) continue;
      var weight = key === term ? 1 : 0.6, list = shard[key];
      for (var k = 0; k + 1 < list.length; k += 2) {
        var s = list[k + 1] * weight;
        if (!(hits[list[k]] >= s)) hits[list[k]] = s;
      }
    }
    return hits;
  }

  function rank(query, n) {
    var scores = {}, matched = {}, terms = termsOf(query);
    terms.forEach(function (term) {
      var hits = matchTerm(term, n);
      for (var id in hits) { scores[id] = (scores[id] || 0) + hits[id]; matched[id] = (matched[id] || 0) + 1; }
    });
    var ids = Object.keys(scores).map(Number);
    ids.sort(function (a, b) { return (matched[b] - matched[a]) || (scores[b] - scores[a]) || (a - b); });
    var q = query.trim().replace(/^#/, "");
    if (/^\d+$/.test(q) && +q < manifest.n) {
      ids = [+q].concat(ids.filter(function (i) { return i !== +q; }));
    }
    return { ids: ids.slice(0, 20), total: ids.length, terms: terms };
  }

  function search(query, n) {
    var shards = {};
    termsOf(query).forEach(function (t) { shards[shardOf(t, n)] = 1; });
    var result;
    return Promise.all(Object.keys(shards).map(function (k) { return load("search/s" + k + ".js"); }))
      .then(function () { result = rank(query, n); return rowsOf(result.ids); })
      .then(function (rows) { result.rows = rows; return result; });
  }

  function setupSearch() {
    var input = document.getElementById("q");
    if (!input || !manifest) return;
    var list = document.getElementById("qr"), status = document.getElementById("qs");
    var n = +input.getAttribute("data-shards") || 1, selected = -1, seq = 0, timer = null;

    function select(k) {
      var items = list.querySelectorAll("li");
      if (!items.length) return;
      selected = (k + items.length) % items.length;
      for (var j = 0; j < items.length; j++) items[j].setAttribute("aria-selected", j === selected ? "true" : "false");
      input.setAttribute("aria-activedescendant", items[selected].id);
      items[selected].scrollIntoView({ block: "nearest" });
    }

    function show(result) {
      var e = col("e"), t = col("t");
      list.textContent = "";
      selected = -1;
      input.removeAttribute("aria-activedescendant");
      result.ids.forEach(function (i, k) {
        var li = el("li"), a = el("a", null, "#" + i);
        li.id = "qr-" + k;
        li.setAttribute("role", "option");
        a.href = root + "features/" + i + ".html";
        a.tabIndex = -1;
        li.appendChild(a);
        li.appendChild(el("span", "note", result.rows[k][e] || result.rows[k][t] || ""));
        list.appendChild(li);
      });
      list.hidden = !result.ids.length;
      input.setAttribute("aria-expanded", result.ids.length ? "true" : "false");
      status.textContent = input.value.trim() ? (result.total || result.ids.length) + " latents match" : "";
    }

    function run() {
      var query = input.value, mine = ++seq;
      if (!query.trim()) { show({ ids: [], rows: [], total: 0 }); return; }
      search(query, n).then(function (r) { if (mine === seq) show(r); },
        function (err) { status.textContent = String(err.message || err); });
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
        var items = list.querySelectorAll("li a");
        if (items.length) { ev.preventDefault(); location.href = items[Math.max(0, selected)].href; }
      } else if (ev.key === "Escape") { input.value = ""; run(); }
    });
    list.addEventListener("mousemove", function (ev) {
      var li = ev.target.closest && ev.target.closest("li");
      if (li) select(+li.id.slice(3));
    });
    var initial = new URLSearchParams(location.search).get("q") ||
      (location.hash.indexOf("#q=") === 0 ? decodeURIComponent(location.hash.slice(3)) : "");
    if (initial) { input.value = initial; run(); input.focus(); }
  }

  /* Card mode of a latent page (features/<id>.html?embed): the embed snippet of a site rendered
     with --compact, which has no embed/<id>.html files. The stylesheet hides all but the card. */
  function setupCard() {
    if (!document.body.classList.contains("feat") || !/[?&]embed\b/.test(location.search)) return;
    document.body.classList.add("card");
    var more = el("p", "more"), a = el("a", null, "Full page \u2192");
    a.href = location.href.split("?")[0];
    a.target = "_blank";
    a.rel = "noopener";
    more.appendChild(a);
    document.querySelector("article").appendChild(more);
  }

  function init() {
    setupCard();
    setupCharts();
    setupExamples();
    setupCopy();
    setupTable();
    setupSearch();
    document.documentElement.classList.add("js");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();

  window.fbSearch = search;
})();
