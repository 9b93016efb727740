/* feature-browser client, the packed site's viewer (templates/latent.html): draws latent
   <id> of latent.html#<id> from its shard, data/<k>.bin (generator/site/packed.py describes the
   records), as the same article a latent page is (templates/feature.html: the same ids, classes
   and text), then hands it to charts.js, examples.js and app.js as a page would. Every text
   from the data goes through esc() or textContent. Needs util.js, charts.js, examples.js; app.js
   (fb.app) is used once a latent is drawn. */
(function (fb) {
  "use strict";

  var u = fb.util, root = u.root, B64 = u.B64;
  var info = null, shown = -1;

  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }
  function href(path) { return esc(root + path); }

  /* ---------------- tokens, as generator/site/tokens.py token_html writes them -------------- */

  var NEWLINE = "\u23ce", BOS_HTML = "<i class=bos>\u27e8bos\u27e9</i>";

  function segments(display) { return typeof display === "string" ? [display] : display; }
  function displayHtml(display) {
    var parts = segments(display), out = "";
    for (var k = 0; k < parts.length; k++) {
      if (parts[k]) out += k % 2 ? "<b>" + esc(parts[k]) + "</b>" : esc(parts[k]);
    }
    return out;
  }
  function breaks(display) {
    var parts = segments(display), n = 0;
    for (var k = 1; k < parts.length; k += 2) n += parts[k].split(NEWLINE).length - 1;
    return n;
  }
  /* one token of a window (classes "": bare text) or of a table cell (noBreaks) */
  function tokenHtml(display, cls, noBreaks) {
    var tail = noBreaks ? "" : new Array(breaks(display) + 1).join("<br>");
    if (!cls && !noBreaks) return displayHtml(display) + tail;
    return "<i" + (cls ? ' class="' + cls + '"' : "") + ">" + displayHtml(display) + "</i>" + tail;
  }

  /* ---------------- charts, as generator/site/charts.py bar_chart draws them ---------------- */

  var WIDTH = 600, HEIGHT = 100;

  function pyRound(x) {  /* Python's round(): halves to even */
    var r = Math.round(x);
    if (Math.abs(x - Math.trunc(x)) === 0.5 && r % 2) r -= 1;
    return r;
  }
  function coord(x) { return x.toFixed(1).replace(/0+$/, "").replace(/\.$/, ""); }
  function varintCode(values) {
    var out = "";
    for (var k = 0; k < values.length; k++) {
      var x = values[k];
      while (x >= 32) { out += B64.charAt(32 + (x & 31)); x = Math.floor(x / 32); }
      out += B64.charAt(x);
    }
    return out;
  }

  /* bins: {counts, classes, alphas, labels: [[x 0..1, text]], title, attrs: "data-... "} */
  function chart(c) {
    var counts = c.counts, n = counts.length, barW = WIDTH / Math.max(1, n);
    var top = Math.max(1, Math.max.apply(null, counts.concat([0])));
    var heights = counts.map(function (v) { return v <= 0 ? 0 : Math.max(1, pyRound(HEIGHT * v / top)); });
    var out = '<svg class=chart viewBox="0 -2 ' + WIDTH + " " + (HEIGHT + 16) + '" width=' + WIDTH +
      " height=" + (HEIGHT + 18) + " role=img " + c.attrs + "><title>" + esc(c.title) + "</title>";
    for (var k = 0; k < n;) {
      var end = k;
      while (end + 1 < n && c.classes[end + 1] === c.classes[k] && c.alphas[end + 1] === c.alphas[k]) end++;
      var steps = [];
      for (var b = k; b <= end; b++) {
        var x = "H" + coord((b + 1) * barW);
        if (b > k && heights[b] === heights[b - 1]) steps[steps.length - 1] = steps[steps.length - 1].split("H")[0] + x;
        else steps.push("V" + (HEIGHT - heights[b]) + x);
      }
      out += "<path class=" + c.classes[k] + (c.alphas[k] ? " style=--o:" + c.alphas[k] : "") +
        ' d="M' + coord(k * barW) + " " + HEIGHT + steps.join("") + "V" + HEIGHT + 'Z"/>';
      k = end + 1;
    }
    out += '<path class=axis d="M0 ' + HEIGHT + "H" + WIDTH + '"/>';
    c.labels.forEach(function (l) {
      out += "<text x=" + l[0] * WIDTH + " y=" + (HEIGHT + 13) + " text-anchor=" +
        (l[0] === 0 ? "start" : l[0] === 1 ? "end" : "middle") + ">" + esc(l[1]) + "</text>";
    });
    return out + "</svg>";
  }

  function activationChart(r) {
    var n = r.h.length, ni = info.alphas.length, classes = [], alphas = [];
    for (var k = 0; k < n; k++) {
      classes.push("ai");
      alphas.push(info.alphas[Math.min(ni - 1, Math.floor((k + 0.5) * ni / n))]);
    }
    return chart({ counts: r.h, classes: classes, alphas: alphas, labels: [[0, "0"], [1, r.s[2]]],
      title: "Tokens per activation bin: " + n + " bins over (0, " + r.s[2] + "], coloured by interval",
      attrs: 'data-c="' + varintCode(r.h) + '" data-x="0 ' + esc(r.hx) +
        '" data-t="token|activation|(]]" data-i="' + ni + '"' });
  }

  function logitChart(r) {
    var n = r.lh.length, x = r.lx, classes = [], alphas = [];
    for (var k = 0; k < n; k++) { classes.push(k >= x[4] ? "lp" : "ln"); alphas.push(""); }
    return chart({ counts: r.lh, classes: classes, alphas: alphas, labels: [[0, x[2]], [1, x[3]]],
      title: "Vocabulary tokens per logit-effect bin: " + n + " bins over [" + x[2] + ", " + x[3] + "]",
      attrs: 'data-c="' + varintCode(r.lh) + '" data-x="' + esc(x[0]) + " " + esc(x[1]) +
        '" data-t="vocabulary token|logit effect|[)]"' });
  }

  /* ---------------- examples: the window of example n, as the page writes it ----------------- */

  function windowHtml(e, symbols, table) {
    var out = "";
    for (var p = e.start, k = 0; p < e.end; p++, k++) {
      var sym = symbols[k];
      if (sym === 0) { out += BOS_HTML; continue; }
      var cls = fb.examples.tokenClasses(e.acts[p] || 0, p === e.peak, e.dl[p] || 0);
      out += tokenHtml(table[sym], cls);
    }
    return out;
  }

  function exampleLines(r, ns, symbols) {
    var out = "<ol class=exs>";
    ns.forEach(function (n) {
      var e = fb.examples.exampleAt(n);
      out += "<li id=ex-" + n + "><em>" + esc(r.v[n]) + "</em>" + windowHtml(e, symbols[n], info.symbols) + "";
    });
    return out + "</ol>";
  }

  /* ---------------- the article ------------------------------------------------------------- */

  function neighbours(rows) {
    if (!rows.length) return "<p class=note>None found.</p>";
    return "<ol class=nb>" + rows.map(function (nb) {
      return "<li><a href=" + href("latent.html#" + nb[0]) + ">#" + nb[0] + "</a> <span class=num>" +
        esc(nb[1]) + "</span> " + esc(nb[2]);
    }).join("") + "</ol>";
  }

  function tokenTable(caption, rows) {
    return "<table class=tt><caption>" + caption + "</caption><tbody>" + rows.map(function (row) {
      return "<tr><td>" + tokenHtml(row[0], "", true) + "<td>" + esc(row[1]);
    }).join("") + "</tbody></table>";
  }

  function article(id, r) {
    var s = info.site, show = info.show, h = [];
    var embed = "latent.html?embed#" + id;
    h.push("<nav class=pn aria-label=\"Neighbouring latents\">" +
      (id > 0 ? "<a rel=prev href=\"" + href("latent.html#" + (id - 1)) + "\">\u2190 #" + (id - 1) + "</a>" : "") + " " +
      (id + 1 < info.n ? "<a rel=next href=\"" + href("latent.html#" + (id + 1)) + "\">#" + (id + 1) + " \u2192</a>" : "") + "</nav>");
    h.push("<h1>Latent " + id + "</h1>");
    if (r.x) h.push("<p class=expl>" + esc(r.x) + "</p>");
    if (r.lb) {  /* a generated explanation: its model and scores */
      h.push("<p class=\"note lbl\" id=label>Explanation written by <span class=mdl>" + esc(r.lb[0]) + "</span>");
      r.lb[1].forEach(function (s) { h.push(" \u00b7 <span title=\"" + esc(s[2]) + "\">" + esc(s[0]) + " " + esc(s[1]) + "</span>"); });
      h.push("</p>");
    }
    var names = ["density", "max", "mean when active", "active positions"], vals = [r.s[0], r.s[2], r.s[3], r.s[4]];
    h.push("<dl class=stats>" + names.map(function (name, k) {
      return "<div><dt>" + name + "<dd>" + esc(vals[k]) + "</div>";
    }).join("") + "</dl>");
    if (r.q || r.qf) {
      h.push("<p class=quality id=quality>" + (r.q || []).map(function (b) {
        return "<span class=\"bd b-" + esc(b[0]) + "\" title=\"" + esc(b[2]) + "\">" + esc(b[1]) + "</span> ";
      }).join("") + "<span class=note>" + (r.qf || []).map(function (f) { return esc(f[0]) + " " + esc(f[1]); }).join(" \u00b7 ") + "</span></p>");
    }
    if (r.dead) {
      h.push("<p class=dead id=dead>This latent never activated: it was zero on all " + esc(s.n_tokens) +
        " tokens analysed, so it has no activation histogram and no examples.</p>");
    } else {
      h.push("<section id=acts><h2>Activations</h2>" + activationChart(r) +
        "<p class=note>Nonzero activations; zero on " + esc(r.s[1]) +
        " of tokens (1 \u2212 density). Colours mark the intervals sampled below.</p></section>");
    }
    var nl = show.logits == null ? r.lp.length : show.logits;
    h.push("<section id=logits><h2>Logit effects</h2><p class=note>Direction " + esc(s.logit_direction) +
      " times W_U; LayerNorm " + (s.ln_folded ? "folded into" : "not folded into") + " W_U.</p>" +
      "<div class=cols>" + tokenTable("Promoted", r.lp.slice(0, nl)) + tokenTable("Suppressed", r.ln.slice(0, nl)) +
      "</div>" + (show.logit_chart ? logitChart(r) : "") + "</section>");
    if (!r.dead) {
      h.push("<p class=note id=legend>Colour: activation / max. Underline: \u0394loss of predicting the token when the latent is ablated (removed at every non-BOS position), <span class=\"p k\">blue</span> helped, <span class=\"n k\">red</span> hurt. Boxed: max." +
        (s.has_bos ? " <span class=\"bos k\">\u27e8bos\u27e9</span>: document boundary (BOS), excluded from statistics." : "") +
        " Click or Enter: whole sequence; \u2190/\u2192: tokens.</p>");
      var symbols = (r.w ? r.w.split(" ") : []).map(u.varints);
      h.push("<section id=top><h2>Top examples</h2>" +
        (show.top != null && r.nt > show.top ? "<p class=note>The top " + show.top + " of " + r.nt + ".</p>" : "") +
        exampleLines(r, r.top, symbols) + "</section>");
      var groups = r.g.map(function (g) {
        return "<h3 id=int-" + g[0] + " style=--o:" + esc(g[4]) + ">Interval " + (g[0] + 1) + ": (" + esc(g[1]) + ", " +
          esc(g[2]) + "] \u00b7 " + esc(g[3]) + "</h3>" + (g[5].length ? exampleLines(r, g[5], symbols) : "");
      }).join("");
      h.push("<section id=intervals><h2>Interval samples</h2>" +
        (show.per_interval != null && s.samples_per_interval > show.per_interval ?
          "<p class=note>" + show.per_interval + " of the " + s.samples_per_interval + " samples drawn per interval shown.</p>" : "") +
        groups + "</section>");
    }
    var a = r.a;
    h.push("<section id=ablation><h2>Ablation</h2>" + (!a ? "<p class=note>Ablation not computed for this build.</p>" :
      !a[2] ? "<p class=note>No active positions in the shown examples.</p>" :
        "<p>Mean \u0394loss where active: <b>" + esc(a[0]) + "</b> nats; the latent helped on <b>" + esc(a[1]) +
        "</b> of those positions.</p><p class=note>The latent is removed at every non-BOS position (BOS positions are left untouched) and the model re-run from the hook.</p>") +
      "</section>");
    h.push("<section id=toptokens><h2>Top tokens</h2>" + (!r.tt ? "<p class=note>Top tokens not computed for this build.</p>" :
      !r.tt.length ? "<p class=note>None: the latent never fired.</p>" :
        "<table class=tt><thead><tr><th>token<th>total act<th>count</thead><tbody>" + r.tt.map(function (t) {
          return "<tr><td>" + tokenHtml(t[0], "", true) + "<td>" + esc(t[1]) + "<td>" + esc(t[2]);
        }).join("") + "</tbody></table>") + "</section>");
    h.push("<section id=neighbours><h2>Neighbours</h2><div class=cols><div><h3>Decoder cosine</h3>" +
      (!r.nc ? "<p class=note>Not computed for this build.</p>" : neighbours(r.nc)) +
      "</div><div><h3>Co-activation (Jaccard)</h3>" +
      (!r.na ? "<p class=note>Not computed for this build" + (s.coact_method ? " (" + esc(s.coact_method) + ")" : "") + ".</p>" :
        "<p class=note>Method: " + esc(s.coact_method || "unspecified") + ".</p>" + neighbours(r.na)) +
      "</div></div></section>");
    if (r.mp) {
      var m = r.mp;
      h.push("<section id=mapnb><h2>On the map</h2><div class=mapnb><a class=thumb href=\"" + href("index.html#map=" + id) +
        "\"><img src=\"" + href("map/overview.png") + "\" loading=lazy alt=\"Show on the map of all latents\"><i style=\"left:" +
        esc(m[0]) + "%;top:" + esc(m[1]) + "%\"></i></a><div><p class=note>At (" + esc(m[2]) + ", " + esc(m[3]) +
        ") on the map of decoder directions. Nearest there:</p>" + neighbours(m[4]) + "</div></div></section>");
    }
    return { html: h.join(""), embed: root + embed };
  }

  /* ---------------- loading and drawing ----------------------------------------------------- */

  function message(text) {
    var art = document.getElementById("viewer");
    art.removeAttribute("data-embed");
    art.innerHTML = "";
    var p = u.el("p", "note", text);
    p.id = "vmsg";
    art.appendChild(p);
  }

  function shard(k) {
    /* the shard's columns {key: [value per latent, null: none]} as one record per latent */
    return u.fetchPacked("data/" + k + ".bin").then(function (cols) {
      if (!cols || !Array.isArray(cols.s)) throw new Error("data/" + k + ".bin holds no latents");
      var keys = Object.keys(cols), records = [];
      for (var j = 0; j < cols.s.length; j++) {
        var r = {};
        for (var n = 0; n < keys.length; n++) {
          var v = cols[keys[n]][j];
          if (v !== null && v !== undefined) r[keys[n]] = v;
        }
        records.push(r);
      }
      return records;
    });
  }

  function symbolsLoaded() {
    return u.fetchPacked("seqs/t.bin").then(function (table) { info.symbols = table; });
  }

  function draw(id, r) {
    var art = document.getElementById("viewer");
    fb.examples.use({ m: r.m, e: r.e || "" }, info.seq_shard, info.symbols);
    var made = article(id, r);
    art.innerHTML = made.html;
    art.setAttribute("data-embed", made.embed);
    document.title = r.t;
    fb.charts.setup();
    fb.examples.setup();
    if (fb.app) fb.app.setupCopy();
    if (document.body.classList.contains("card")) {  /* card mode (app.js): link the full view */
      var more = u.el("p", "more"), a = u.el("a", null, "Full page \u2192");
      a.href = root + "latent.html#" + id;
      a.target = "_blank";
      a.rel = "noopener";
      more.appendChild(a);
      art.appendChild(more);
    }
    window.fbDrawnAt = performance.now();  /* for tests and benchmarks: when, and which */
    window.fbShown = id;
  }

  function show() {
    var id = parseInt(location.hash.slice(1), 10);
    if (location.protocol === "file:") {
      message("This packed site needs a web server: run `feature-browser serve SITE` (or publish it, e.g. on GitHub Pages) and open it there.");
      return;
    }
    if (!(id >= 0 && id < info.n) || String(id) !== location.hash.slice(1)) {
      message("No latent \u201c" + location.hash.slice(1) + "\u201d: this SAE has latents 0 to " + (info.n - 1) + "; open latent.html#<id>.");
      return;
    }
    if (id === shown) return;
    var k = Math.floor(id / info.shard);
    Promise.all([shard(k), symbolsLoaded()]).then(function (res) {
      var r = res[0][id - k * info.shard];
      if (!r || !r.s) throw new Error("data/" + k + ".bin has no latent " + id);
      shown = id;
      draw(id, r);
    }).catch(function (err) {
      message("Cannot show latent " + id + ": " + err.message + ". The site's data may be damaged or incomplete: render it again.");
    });
  }

  function setup() {
    var el = document.getElementById("fb-packed");
    if (!el) return;
    info = JSON.parse(el.textContent);
    window.addEventListener("hashchange", show);
    show();
  }

  fb.viewer = { setup: setup };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})(window.fb);
