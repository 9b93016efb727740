/* feature-browser client, a latent page's examples (templates/feature.html): token tooltips, the
   arrow-key cursor, and expansion of a window to its whole sequence (seqs/*.js, which call
   fbSeqTable and fbSeqs). The per-page data #fb-data and the example codes are described in
   generator/site/codec.py. Needs util.js and charts.js. */
(function (fb) {
  "use strict";

  var u = fb.util, el = u.el, fmt = u.fmt, load = u.load, varints = u.varints;
  var placeTip = u.placeTip, hideTip = u.hideTip, root = u.root;
  var LEVELS = u.LEVELS, ACT_LEVELS = u.ACT_LEVELS, MARK = 10, NEWLINE = "\u23ce";
  /* sequences per seqs/<k>.js (generator/site/writer.py SEQ_SHARD; a packed site's own) */
  var seqShard = 64;
  /* BOS / document-boundary positions: 0 in seqs/<k>.js, a muted marker on the page
     (generator/site/contexts.py BOS_MARK, BOS_TITLE). */
  var BOS = 0, BOS_MARK = "\u27e8bos\u27e9", BOS_TITLE = "BOS / document boundary: excluded from statistics";

  /* the corpus sequences loaded so far (seq -> code, then its token ids once expanded) and the
     symbol table (token id -> display) */
  var store = { seqs: {}, symbols: null };
  window.fbSeqs = function (k, seqs) { for (var s in seqs) store.seqs[s] = seqs[s]; };
  window.fbSeqTable = function (symbols) { store.symbols = symbols; };

  var data = null;
  var dataEl = document.getElementById("fb-data");
  if (dataEl) data = JSON.parse(dataEl.textContent);

  /* ---------------- tokens: classes and elements, mirroring generator/site/codec.py -------- */

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

  /* ---------------- example codes ---------------------------------------------------------- */

  /**
   * One example, decoded from its code data.e[n] (the <li id=ex-n>; the format is
   * generator/site/codec.py, whose decode_example is the reference). Positions are token
   * positions in the sequence.
   * @typedef {Object} Example
   * @property {number} seq  the corpus sequence (seqs/<floor(seq / SEQ_SHARD)>.js holds it)
   * @property {number} start  the first position of the server-rendered window
   * @property {number} end  one past the window's last position
   * @property {number} peak  the position of the example's max activation (the boxed token)
   * @property {number} cut  outside the window: the largest |Δloss| (milli-nats) left out of
   *   `dl`, 0 when none was
   * @property {Object<number, number>} acts  inside the window: position -> activation level
   *   1..ACT_LEVELS of the latent's max (data.m); nonzero activations only
   * @property {Object<number, number>} colours  outside the window: position -> colour class
   *   1..LEVELS; nonzero activations only
   * @property {Object<number, number>} dl  position -> Δloss in milli-nats of predicting that
   *   token when the latent is ablated (> 0: the latent helped), |Δloss| >= 0.01 only
   * @property {number[]} pos  ascending: the positions of the window's <i> elements other than
   *   .bos, i.e. sorted(acts ∪ dl ∪ {peak}) within [start, end)
   */

  /* the varints of a code, read in order */
  function reader(code) {
    var v = varints(code), k = 0;
    return {
      next: function () { return v[k++]; },
      left: function () { return v.length - k; }
    };
  }

  var examples = [];  /* n -> Example, decoded on first use */
  /** @returns {Example} the example of window tx (an .exs > li) */
  function exampleOf(tx) { return exampleAt(+tx.id.slice(3)); }

  /** @returns {Example} example n (data.e[n]) */
  function exampleAt(n) {
    if (examples[n]) return examples[n];
    if (typeof data.e === "string") data.e = data.e.split(" ");
    var r = reader(data.e[n]);
    var seq = r.next(), start = r.next(), width = r.next(), peak = r.next(), cut = r.next();
    var e = { seq: seq, start: start, end: start + width, peak: start + peak, cut: cut,
      acts: {}, colours: {}, dl: {} };
    /* n_in x (gap, level) inside the window, gaps counted from start - 1 */
    var nIn = r.next(), inside = start - 1;
    for (var a = 0; a < nIn; a++) {
      inside += r.next() + 1;
      e.acts[inside] = r.next();
    }
    /* n_out x (gap * LEVELS + colour - 1) outside it, gaps counted from -1 */
    var nOut = r.next(), outside = -1;
    for (var c = 0; c < nOut; c++) {
      var packed = r.next();
      outside += Math.floor(packed / LEVELS) + 1;
      e.colours[outside] = packed % LEVELS + 1;
    }
    /* (gap, zigzag Δloss milli) pairs to the end, gaps counted from -1 */
    var predicted = -1;
    while (r.left() >= 2) {
      predicted += r.next() + 1;
      var z = r.next();
      e.dl[predicted] = z % 2 ? -(z + 1) / 2 : z / 2;
    }
    var seen = {}, pos = [];
    [e.peak].concat(Object.keys(e.acts), Object.keys(e.dl)).forEach(function (q) {
      q = +q;
      if (q >= e.start && q < e.end && !seen[q]) { seen[q] = 1; pos.push(q); }
    });
    e.pos = pos.sort(function (x, y) { return x - y; });
    examples[n] = e;
    return e;
  }

  /* ---------------- tooltips ---------------------------------------------------------------- */

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

  function showTip(tok) {
    if (data) placeTip(tipText(tok), tok.getBoundingClientRect());
  }

  function isToken(t) { return t && t.tagName === "I" && t.parentNode && t.parentNode.classList && t.parentNode.classList.contains("tx"); }

  function tokenTarget(t) {
    while (t && t !== document.body) { if (isToken(t)) return t; t = t.parentNode; }
    return null;
  }

  /* ---------------- expansion and the cursor ------------------------------------------------ */

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
    /* the corpus view of this sequence (generator/site/views.py), its peak token selected and
       this latent lit */
    var art = document.querySelector("article[data-corpus]");
    if (art) {
      var a = el("a", "pvl", "corpus view \u2192");
      a.href = root + "corpus/" + e.seq + ".html#t=" + e.peak + "&l=" + art.getAttribute("data-corpus");
      a.title = "Every latent on every token of this sequence";
      tx.appendChild(a);
    }
  }

  /* loads the shard of sequence `seq` (and the symbol table): classic scripts, or on a packed
     site its zlib'd JSON (generator/site/writer.py write_sequences) */
  function sequenceOf(seq) {
    var k = Math.floor(seq / seqShard);
    if (!u.packed) return load("seqs/t.js").then(function () { return load("seqs/" + k + ".js"); });
    return u.fetchPacked("seqs/" + k + ".bin").then(function (seqs) {
      if (!(seq in store.seqs)) window.fbSeqs(k, seqs);
    });
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
    return sequenceOf(e.seq).then(function () {
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

  var listening = false;
  function setup() {
    if (!data) return;
    prepareLines();
    if (listening) return;
    listening = true;
    addListeners();
  }

  function prepareLines() {
    var lines = document.querySelectorAll(".exs > li");
    /* a class-less <i> of a window is a helped-only token (generator/site/builder.py HELPED_ONLY) */
    var bare = document.querySelectorAll(".exs > li > i:not([class])");
    for (var b = 0; b < bare.length; b++) bare[b].className = "p";
    for (var n = 0; n < lines.length; n++) {
      lines[n].classList.add("tx");
      lines[n].tabIndex = 0;
      lines[n].setAttribute("aria-expanded", "false");
      lines[n].setAttribute("aria-label", "Example " + lines[n].id.slice(3) +
        ": Enter shows the whole sequence, arrow keys step through tokens");
    }
  }

  function addListeners() {
    document.addEventListener("mouseover", function (ev) {
      var t = tokenTarget(ev.target);
      /* over a chart, charts.js owns the tooltip */
      if (t) showTip(t); else if (!fb.charts.target(ev.target)) hideTip();
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

  /* The packed site's viewer (viewer.js) hands over each latent's data as it draws it. */
  function use(d, shardSize, symbols) {
    data = d;
    examples = [];
    seqShard = shardSize;
    store.symbols = symbols;
  }

  fb.examples = { setup: setup, exampleOf: exampleOf, exampleAt: exampleAt, toggle: toggle,
    tokenClasses: tokenClasses, use: use };
})(window.fb);
