/* feature-browser client, shared helpers: the one global namespace `fb` that the site's scripts
   share (fb.util here; fb.charts, fb.examples, fb.table, fb.search, fb.map from their files;
   app.js starts them). Every script is classic (no modules, no fetch) so that the site works
   from file://: data files are <script src> files that call the global fb* registration
   functions (fbSeqs, fbRows, fbIndex, fbMap, ...) defined by the feature scripts. Load order:
   util.js first, then the features, then app.js (templates/base.html). Token text always goes
   through textContent, never innerHTML. */
window.fb = window.fb || {};
(function (fb) {
  "use strict";

  /* colour classes a1..a9 of activations (generator/site/codec.py LEVELS) and the resolution of
     a shipped activation level (ACT_LEVELS) */
  var LEVELS = 9, ACT_LEVELS = 1000;
  /* digits of the varint codes (generator/site/codec.py B64) */
  var B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  var root = document.body.getAttribute("data-root") || "./";
  /* a packed site (generator/site/packed.py) has one viewer page instead of a page per latent */
  var packed = document.body.hasAttribute("data-packed");
  var loading = {};

  /* the permalink of latent i, relative to the page (generator/site/assets.py latent_path) */
  function latentHref(i) { return root + (packed ? "latent.html#" + i : "features/" + i + ".html"); }

  /* A packed data file (zlib of UTF-8 JSON, relative to the site root), parsed, fetched once
     (as load() runs a script once; a failure is tried again on the next call); a fetch and the
     browser's own inflate, so not from file:// (Chromium refuses fetch there). */
  var fetching = {}, early = window.fbEarly || {};  /* early: asked for by latent.html's head */
  function fetchPacked(path) {
    if (!fetching[path]) {
      var asked = early[path];
      delete early[path];
      fetching[path] = (asked || fetch(root + path)).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status + " for " + path);
        return new Response(r.body.pipeThrough(new DecompressionStream("deflate"))).text();
      }).then(function (text) { return JSON.parse(text); });
      fetching[path].catch(function () { delete fetching[path]; });
    }
    return fetching[path];
  }

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

  /* numbers: 3 significant digits, thousands separators from 1,000 */
  function fmt(x) { return Math.abs(x) >= 1000 ? Math.round(x).toLocaleString("en") : String(+x.toPrecision(3)); }

  /* Python's sig(): 3 significant digits, thousands separators from 1,000 to 1e6, exponents
     as Python writes them (generator/site/charts.py). */
  function sig(x) {
    if (!isFinite(x)) return "n/a";
    if (Math.abs(x) >= 1000 && Math.abs(x) < 1e6) return Math.round(x).toLocaleString("en");
    var m = x.toExponential(2).split("e"), e = +m[1];
    if (x !== 0 && (e < -4 || e >= 3)) {
      return m[0].replace(/\.?0+$/, "") + "e" + (e < 0 ? "-" : "+") + (Math.abs(e) < 10 ? "0" : "") + Math.abs(e);
    }
    return String(+x.toPrecision(3));
  }

  /* Codes: unsigned varints in B64 digits, 5 bits each, least significant first, 32 =
     continuation (generator/site/codec.py varint). */
  function varints(code) {
    var out = [], v = 0, mul = 1;
    for (var k = 0; k < code.length; k++) {
      var d = B64.indexOf(code.charAt(k));
      v += (d & 31) * mul;
      if (d >= 32) mul *= 32; else { out.push(v); v = 0; mul = 1; }
    }
    return out;
  }

  /* the bytes of a base64 string */
  function bytesOf(b64) {
    var bin = atob(b64), out = new Uint8Array(bin.length);
    for (var k = 0; k < bin.length; k++) out[k] = bin.charCodeAt(k);
    return out;
  }

  /* ---------------- the tooltip, #tip: shared by tokens, chart bars and the map ------------- */

  var tip = null;  /* #tip, made on first use (not in the pages: it is script-only) */
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

  fb.util = {
    LEVELS: LEVELS, ACT_LEVELS: ACT_LEVELS, B64: B64, root: root, packed: packed,
    latentHref: latentHref, fetchPacked: fetchPacked, load: load, el: el, fmt: fmt, sig: sig, varints: varints, bytesOf: bytesOf,
    placeTip: placeTip, hideTip: hideTip
  };

  /* the site's scripts run (every page with scripts loads this file): style.css shows the
     script-only controls under html.js */
  document.documentElement.classList.add("js");
})(window.fb);
