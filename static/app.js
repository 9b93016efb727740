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
  var store = { seqs: {}, symbols: null, shards: {}, tokens: {}, rows: {}, flags: {} };
  var loading = {};

  window.fbSeqs = function (k, seqs) { for (var s in seqs) store.seqs[s] = seqs[s]; };
  window.fbSeqTable = function (symbols) { store.symbols = symbols; };
  window.fbIndex = function (k, terms) { store.shards[k] = terms; };
  window.fbTokens = function (k, keys) { store.tokens[k] = keys; };

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
    /* the corpus view of this sequence (generator/promptpages.py), its peak token selected and
       this latent lit */
    var art = document.querySelector("article[data-corpus]");
    if (art) {
      var a = el("a", "pvl", "corpus view \u2192");
      a.href = root + "corpus/" + e.seq + ".html#t=" + e.peak + "&l=" + art.getAttribute("data-corpus");
      a.title = "Every latent on every token of this sequence";
      tx.appendChild(a);
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
  /* the flags filter (generator/quality.py): rows with none of the `hide` bits and all of the
     `only` bits; `passing` holds the file positions that pass, in display order (null: none) */
  var filter = { hide: 0, only: 0, passing: null };

  window.fbRows = function (key, c, rows) { (store.rows[key] = store.rows[key] || {})[c] = rows; };
  /* search/<key>/q.js: the flags of every row of key's file order, one B64 digit each */
  window.fbFlags = function (key, digits) {
    var q = new Uint8Array(digits.length);
    for (var k = 0; k < digits.length; k++) q[k] = B64.indexOf(digits.charAt(k));
    store.flags[key] = q;
  };

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

  function shownCount() { return filter.passing ? filter.passing.length : manifest.n; }

  function pageCount() { return Math.max(1, Math.ceil(shownCount() / manifest.rows)); }

  /* the file position of display row r: the natural order, or its valid part read backwards */
  function filePosition(r) {
    var natural = table.key === "id" || table.key === "e" ? 1 : -1, valid = manifest.sorts[table.key];
    return table.dir === natural || r >= valid ? r : valid - 1 - r;
  }

  /* file positions of the current page (of the rows passing the filter, when there is one) */
  function pagePositions() {
    var start = table.page * manifest.rows, end = Math.min(shownCount(), start + manifest.rows), pos = [];
    for (var r = start; r < end; r++) pos.push(filter.passing ? filter.passing[r] : filePosition(r));
    return pos;
  }

  /* with a filter: load the sort key's flags (d_sae bytes) and list the passing positions */
  function applyFilter() {
    if (!filter.hide && !filter.only) { filter.passing = null; return Promise.resolve(); }
    var key = table.key;
    return load("search/" + key + "/q.js").then(function () {
      var q = store.flags[key], out = [];
      for (var r = 0; r < manifest.n; r++) {
        var p = filePosition(r), f = q[p];
        if ((f & filter.hide) === 0 && (f & filter.only) === filter.only) out.push(p);
      }
      filter.passing = out;
    });
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
    return applyFilter().then(function () {
      if (mine !== table.seq) return null;
      return rowsAt(table.key, pagePositions()).then(function (rows) {
        if (mine === table.seq) renderTable(rows);
      });
    });
  }

  /* a row's quality flags as badges (the server renders the same) */
  function badges(td, q) {
    (manifest.flags || []).forEach(function (f) {
      if (!(q & f[0])) return;
      var b = el("span", "bd b-" + f[1], f[2]);
      b.title = f[3].charAt(0).toUpperCase() + f[3].slice(1);
      td.appendChild(b);
      td.appendChild(document.createTextNode(" "));
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
      if (col("q")) {
        var flags = el("td", "fl");
        badges(flags, row[col("q")]);
        tr.appendChild(flags);
      }
      ["b", "f", "s"].forEach(function (k) { if (col(k)) tr.appendChild(el("td", "num", pct(row[col(k)]))); });
      if (col("c")) tr.appendChild(el("td", "num", row[col("c")] == null ? "n/a" : fmt(row[col("c")])));
      frag.appendChild(tr);
    });
    tbody.textContent = "";
    tbody.appendChild(frag);
    var count = document.getElementById("lfn");
    if (count) count.textContent = filter.passing ? filter.passing.length.toLocaleString("en") + " of " +
      manifest.n.toLocaleString("en") + " latents pass the filter" : "";
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
    var box = document.getElementById("lf");
    if (box && manifest.flags) {
      box.hidden = false;
      var readFilter = function () {
        var selects = box.querySelectorAll("select[data-flag]");
        filter.hide = filter.only = 0;
        for (var k = 0; k < selects.length; k++) {
          var bit = +selects[k].getAttribute("data-flag");
          if (selects[k].value === "hide") filter.hide |= bit;
          else if (selects[k].value === "only") filter.only |= bit;
        }
      };
      box.addEventListener("change", function () { readFilter(); table.page = 0; showPage(); });
      /* a browser may restore the choices on "back" (after this script ran): the table follows */
      var sync = function () {
        var was = [filter.hide, filter.only];
        readFilter();
        if (filter.hide !== was[0] || filter.only !== was[1]) { table.page = 0; showPage(); }
      };
      sync();
      window.addEventListener("pageshow", sync);
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

  /* The token index (generator/search.py): the whole query as one corpus token's key ->
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
        var lead = result.first == null ? [] : [result.first];
        return rowsOf(lead.concat(onToken, result.ids));
      })
      .then(function (rows) {
        var lead = result.first == null ? 0 : 1, k = result.tokens ? result.tokens.hits.length : 0;
        result.firstRow = rows[0];
        result.tokenRows = rows.slice(lead, lead + k);
        result.rows = rows.slice(lead + k);
        return result;
      });
  }

  function setupSearch() {
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
      var e = col("e"), t = col("t"), k = 0;
      list.textContent = "";
      selected = -1;
      input.removeAttribute("aria-activedescendant");
      function option(i, row, extra) {
        var li = el("li"), a = el("a", null, "#" + i);
        li.id = "qr-" + k++;
        li.setAttribute("role", "option");
        a.href = root + "features/" + i + ".html";
        a.tabIndex = -1;
        li.appendChild(a);
        if (extra) li.appendChild(el("span", "tokhit", extra));
        li.appendChild(el("span", "note", row[e] || row[t] || ""));
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

    function fmtMean(x) { return String(+(+x).toPrecision(3)); }

    /* resolves once the results of the box's current text are shown */
    function run() {
      var query = input.value, mine = ++seq;
      clearTimeout(timer);
      if (!query.trim()) { show({ ids: [], rows: [], total: 0, query: query }); return Promise.resolve(); }
      return search(query, n, tn).then(function (r) { if (mine === seq) show(r); },
        function (err) { status.textContent = String(err.message || err); });
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

  /* ---------------- index: the latent map (data format in generator/mapview.py) ---------- */

  /* map/points.js calls fbMap once it is loaded: when #mapbox scrolls into view, or at once
     for index.html#map=<id> (a latent page's "show on the map"). One canvas draws every point
     into an ImageData buffer (no element per latent); a grid over the unit square finds the
     point under the pointer. */
  var MAP_Q = 65535, MAP_GRID = 128, MAP_HIT = 8, MAP_ZMAX = 256;
  var mapData = null;
  window.fbMap = function (d) { mapData = d; };

  function bytesOf(b64) {
    var bin = atob(b64), out = new Uint8Array(bin.length);
    for (var k = 0; k < bin.length; k++) out[k] = bin.charCodeAt(k);
    return out;
  }

  /* 256 colours as RGBA words: 0 = no value (grey), 1..255 along viridis */
  var VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];
  function colourAt(t) {
    var x = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1), k = Math.min(VIRIDIS.length - 2, Math.floor(x)), f = x - k;
    return VIRIDIS[k].map(function (c, j) { return Math.round(c + (VIRIDIS[k + 1][j] - c) * f); });
  }
  var MAP_LUT = (function () {
    var bytes = new Uint8ClampedArray(256 * 4);
    for (var v = 0; v < 256; v++) {
      var c = v ? colourAt((v - 1) / 254) : [150, 150, 150];
      bytes.set([c[0], c[1], c[2], 255], v * 4);
    }
    return new Uint32Array(bytes.buffer);
  })();
  var MAP_PLAIN = new Uint32Array(new Uint8ClampedArray([60, 110, 200, 255]).buffer)[0];

  function mapTarget() {
    var m = /^#map=(\d+)$/.exec(location.hash);
    return m ? +m[1] : null;
  }

  function setupMap() {
    var box = document.getElementById("mapbox");
    if (!box) return;
    var started = null;
    function start() {
      if (!started) {
        started = load(box.getAttribute("data-src")).then(function () { return makeMap(box); }, function () {
          document.getElementById("mapl").textContent = "The map's data could not be loaded.";  /* the picture stays */
          return null;
        });
      }
      return started;
    }
    function focusTarget() {
      var id = mapTarget();
      if (id == null) return;
      start().then(function (map) { if (map) map.focus(id); });
    }
    if (mapTarget() != null || !("IntersectionObserver" in window)) focusTarget();
    if (!("IntersectionObserver" in window)) { start(); return; }
    var seen = new IntersectionObserver(function (entries) {
      if (entries.some(function (e) { return e.isIntersecting; })) { seen.disconnect(); start(); }
    }, { rootMargin: "300px" });
    seen.observe(box);
    window.addEventListener("hashchange", focusTarget);
  }

  function makeMap(box) {
    var d = mapData;
    if (!d) return null;
    var n = d.n, xy = new Uint16Array(bytesOf(d.xy).buffer), ux = new Float32Array(n), uy = new Float32Array(n);
    for (var i = 0; i < n; i++) { ux[i] = xy[2 * i] / MAP_Q; uy[i] = xy[2 * i + 1] / MAP_Q; }
    /* grid index: the ids of cell c are ids[start[c] .. start[c + 1]) */
    var G = MAP_GRID, start = new Int32Array(G * G + 1), ids = new Int32Array(n), cellOf = new Int32Array(n);
    for (i = 0; i < n; i++) {
      cellOf[i] = Math.min(G - 1, Math.floor(uy[i] * G)) * G + Math.min(G - 1, Math.floor(ux[i] * G));
      start[cellOf[i] + 1]++;
    }
    for (var c = 0; c < G * G; c++) start[c + 1] += start[c];
    var fill = start.slice(0, G * G);
    for (i = 0; i < n; i++) ids[fill[cellOf[i]]++] = i;

    var stats = {}, orders = {}, select = document.getElementById("mapc"), legend = document.getElementById("mapl");
    d.stats.forEach(function (s) {
      stats[s.k] = s;
      select.appendChild(el("option", null, s.name)).value = s.k;
    });
    select.appendChild(el("option", null, "nothing (one colour)")).value = "";
    var key = d.stats.length ? d.stats[0].k : "";
    select.value = key;

    /* drawing order for a colouring: by its byte, so that high values lie on top */
    function orderOf(k) {
      if (orders[k]) return orders[k];
      var order = new Int32Array(n);
      if (!k) { for (var j = 0; j < n; j++) order[j] = j; return (orders[k] = order); }
      var v = stats[k].codes || (stats[k].codes = bytesOf(stats[k].v)), at = new Int32Array(257);
      for (j = 0; j < n; j++) at[v[j] + 1]++;
      for (j = 0; j < 256; j++) at[j + 1] += at[j];
      for (j = 0; j < n; j++) order[at[v[j]]++] = j;
      return (orders[k] = order);
    }

    var canvas = el("canvas"), ctx = canvas.getContext("2d");
    canvas.tabIndex = 0;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", "Map of " + n + " latents: arrow keys pan, + and - zoom");
    var picture = box.querySelector("img");
    if (picture) picture.parentNode.removeChild(picture);  /* the picture for pages without scripts */
    box.appendChild(canvas);
    var view = { cx: 0.5, cy: 0.5, z: 1 }, hover = -1, target = -1, image = null, pending = false;
    var W = 0, H = 0, dpr = 1;

    function scale() { return view.z * Math.min(W, H) * 0.94; }  /* css px per unit */
    function screenOf(j) { var s = scale(); return { x: W / 2 + (ux[j] - view.cx) * s, y: H / 2 + (uy[j] - view.cy) * s }; }

    function resize() {
      dpr = window.devicePixelRatio || 1;
      W = canvas.clientWidth; H = canvas.clientHeight;
      canvas.width = Math.max(1, Math.round(W * dpr));
      canvas.height = Math.max(1, Math.round(H * dpr));
      image = null;
      draw();
    }

    function draw() {
      pending = false;
      var cw = canvas.width, ch = canvas.height;
      if (!image || image.width !== cw || image.height !== ch) image = ctx.createImageData(cw, ch);
      var px = new Uint32Array(image.data.buffer), s = scale() * dpr;
      px.fill(0);
      var base = n > 50000 ? 1.5 : n > 5000 ? 2.5 : n > 500 ? 4 : 7;
      var size = Math.max(1, Math.round(Math.min(12, base * Math.sqrt(view.z)) * dpr)), half = size / 2;
      var spans = [];  /* a dot: per row, its [first, end) pixel; squares up to 3 pixels */
      for (var r = 0; r < size; r++) {
        var yy = r + 0.5 - half, w = size <= 3 ? half : Math.sqrt(Math.max(0, half * half - yy * yy));
        spans.push(Math.round(half - w), Math.round(half + w));
      }
      var codes = key ? (stats[key].codes || (stats[key].codes = bytesOf(stats[key].v))) : null;
      var order = orderOf(key), ox = cw / 2 - view.cx * s - half, oy = ch / 2 - view.cy * s - half;
      for (var k = 0; k < n; k++) {
        var j = order[k], x0 = Math.round(ox + ux[j] * s), y0 = Math.round(oy + uy[j] * s);
        if (x0 + size <= 0 || y0 + size <= 0 || x0 >= cw || y0 >= ch) continue;
        var colour = codes ? MAP_LUT[codes[j]] : MAP_PLAIN;
        for (r = Math.max(0, -y0); r < size && y0 + r < ch; r++) {
          var xa = Math.max(0, x0 + spans[2 * r]), xb = Math.min(cw, x0 + spans[2 * r + 1]);
          if (xa < xb) px.fill(colour, (y0 + r) * cw + xa, (y0 + r) * cw + xb);
        }
      }
      ctx.putImageData(image, 0, 0);
      var ink = getComputedStyle(document.body).color;
      [target, hover].forEach(function (j) {
        if (j < 0) return;
        var p = screenOf(j);
        ctx.beginPath();
        ctx.arc(p.x * dpr, p.y * dpr, (half + 4 * dpr), 0, 2 * Math.PI);
        ctx.lineWidth = 2 * dpr;
        ctx.strokeStyle = ink;
        ctx.stroke();
      });
      box.setAttribute("data-ready", "1");
    }
    function redraw() { if (!pending) { pending = true; requestAnimationFrame(draw); } }

    function showLegend() {
      legend.textContent = "";
      if (!key) return;
      var s = stats[key], bar = el("span", "ramp");
      bar.style.background = "linear-gradient(to right," + [0, 0.25, 0.5, 0.75, 1].map(function (t) {
        return "rgb(" + colourAt(t).join(",") + ")";
      }).join(",") + ")";
      legend.appendChild(document.createTextNode(fmt(s.lo) + " "));
      legend.appendChild(bar);
      legend.appendChild(document.createTextNode(" " + fmt(s.hi) + (s.scale === "log" ? " (log scale)" : "") + "; grey: " +
        (key === "am" ? "no active position in the shown examples" : "dead")));
    }

    /* zoom by `f` keeping the unit point under css position (px, py) in place */
    function zoomAt(px, py, f) {
      var s0 = scale(), z = Math.max(1, Math.min(MAP_ZMAX, view.z * f));
      var ax = view.cx + (px - W / 2) / s0, ay = view.cy + (py - H / 2) / s0;
      view.z = z;
      var s1 = scale();
      view.cx = ax - (px - W / 2) / s1;
      view.cy = ay - (py - H / 2) / s1;
      clampView();
      redraw();
    }
    function clampView() {
      view.cx = Math.max(0, Math.min(1, view.cx));
      view.cy = Math.max(0, Math.min(1, view.cy));
    }

    /* the point nearest css position (px, py) within MAP_HIT pixels, or -1 */
    function hit(px, py) {
      var s = scale(), ax = view.cx + (px - W / 2) / s, ay = view.cy + (py - H / 2) / s, r = MAP_HIT / s;
      var c0 = Math.max(0, Math.floor((ax - r) * G)), c1 = Math.min(G - 1, Math.floor((ax + r) * G));
      var r0 = Math.max(0, Math.floor((ay - r) * G)), r1 = Math.min(G - 1, Math.floor((ay + r) * G));
      var best = -1, bestD = r * r;
      for (var row = r0; row <= r1; row++) {
        for (var col = c0; col <= c1; col++) {
          for (var k = start[row * G + col]; k < start[row * G + col + 1]; k++) {
            var j = ids[k], dx = ux[j] - ax, dy = uy[j] - ay, dd = dx * dx + dy * dy;
            if (dd < bestD || (dd === bestD && j < best)) { best = j; bestD = dd; }
          }
        }
      }
      return best;
    }

    function labelTip(j) {
      var p = screenOf(j), r = canvas.getBoundingClientRect();
      var at = { left: r.left + p.x - 6, right: r.left + p.x + 6, top: r.top + p.y - 6, bottom: r.top + p.y + 6 };
      placeTip("#" + j, at);
      if (!manifest) return;
      rowsOf([j]).then(function (rows) {
        if (hover !== j) return;
        var row = rows[0], ex = row[col("e")], top = row[col("t")];
        placeTip("#" + j + "  density " + pct(row[col("d")]) + "\n" +
          (ex || (top ? "top tokens: " + top : "never fired")), at);
      }, function () { /* the label stays "#id" */ });
    }

    function setHover(j) {
      if (j === hover) return;
      hover = j;
      canvas.style.cursor = j >= 0 ? "pointer" : "grab";
      if (j >= 0) labelTip(j); else hideTip();
      redraw();
    }

    /* pointers: one drags, two pinch; a press that barely moves is a click */
    var pointers = {}, moved = 0, pinch = null;
    function pointerList() { return Object.keys(pointers).map(function (k) { return pointers[k]; }); }
    function local(ev) { var r = canvas.getBoundingClientRect(); return { x: ev.clientX - r.left, y: ev.clientY - r.top }; }
    canvas.addEventListener("pointerdown", function (ev) {
      pointers[ev.pointerId] = local(ev);
      moved = 0;
      pinch = null;
      if (canvas.setPointerCapture) canvas.setPointerCapture(ev.pointerId);
    });
    canvas.addEventListener("pointermove", function (ev) {
      var p = local(ev), before = pointers[ev.pointerId];
      if (!before) { setHover(hit(p.x, p.y)); return; }
      var list = pointerList();
      if (list.length === 2) {
        var other = list[0] === before ? list[1] : list[0];
        var dist = Math.hypot(p.x - other.x, p.y - other.y);
        if (pinch) zoomAt((p.x + other.x) / 2, (p.y + other.y) / 2, dist / pinch);
        pinch = dist;
      } else {
        var s = scale();
        view.cx -= (p.x - before.x) / s;
        view.cy -= (p.y - before.y) / s;
        clampView();
        redraw();
      }
      moved += Math.abs(p.x - before.x) + Math.abs(p.y - before.y);
      pointers[ev.pointerId] = p;
      if (moved > 4) setHover(-1);
    });
    function release(ev, click) {
      if (!pointers[ev.pointerId]) return;
      delete pointers[ev.pointerId];
      pinch = null;
      if (!click || moved > 4 || Object.keys(pointers).length) return;
      var p = local(ev), j = hit(p.x, p.y);
      if (j >= 0) location.href = root + "features/" + j + ".html";
    }
    canvas.addEventListener("pointerup", function (ev) { release(ev, true); });
    canvas.addEventListener("pointercancel", function (ev) { release(ev, false); });
    canvas.addEventListener("pointerleave", function () { if (!pointerList().length) setHover(-1); });
    canvas.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var p = local(ev);
      zoomAt(p.x, p.y, Math.exp(-ev.deltaY * (ev.deltaMode === 1 ? 0.05 : 0.0015)));
    }, { passive: false });
    canvas.addEventListener("keydown", function (ev) {
      var step = 60 / scale(), k = ev.key;
      if (k === "+" || k === "=") zoomAt(W / 2, H / 2, 1.5);
      else if (k === "-") zoomAt(W / 2, H / 2, 1 / 1.5);
      else if (k === "0") reset();
      else if (k.indexOf("Arrow") === 0) {
        view.cx += k === "ArrowLeft" ? -step : k === "ArrowRight" ? step : 0;
        view.cy += k === "ArrowUp" ? -step : k === "ArrowDown" ? step : 0;
        clampView();
        redraw();
      } else return;
      ev.preventDefault();
    });
    function reset() { view.cx = 0.5; view.cy = 0.5; view.z = 1; redraw(); }
    var zooms = document.querySelectorAll("[data-zoom]");
    for (var b = 0; b < zooms.length; b++) {
      zooms[b].addEventListener("click", function (ev) {
        var f = +ev.currentTarget.getAttribute("data-zoom");
        if (f === 0) reset(); else zoomAt(W / 2, H / 2, f > 0 ? 1.5 : 1 / 1.5);
      });
    }
    select.addEventListener("change", function () { key = select.value; showLegend(); redraw(); });
    window.addEventListener("resize", resize);

    showLegend();
    resize();
    var map = {
      n: n, view: view, draw: draw, hit: hit,
      /* css position of latent j relative to the viewport (for tests and focus) */
      screenOf: function (j) { var p = screenOf(j), r = canvas.getBoundingClientRect(); return { x: r.left + p.x, y: r.top + p.y }; },
      focus: function (j) {
        if (!(j >= 0 && j < n)) return;
        target = j;
        view.cx = ux[j]; view.cy = uy[j]; view.z = Math.max(view.z, 8);
        box.scrollIntoView({ block: "center" });
        draw();
      }
    };
    box.fbMap = map;
    return map;
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
    setupMap();
    document.documentElement.classList.add("js");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();

  window.fbSearch = search;
})();
