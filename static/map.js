/* feature-browser client, the index's latent map (templates/index.html #mapbox; the data format
   is generator/site/mapview.py). map/points.js calls fbMap once it is loaded: when #mapbox
   scrolls into view, or at once for index.html#map=<id> (a latent page's "show on the map").
   One canvas draws every point into an ImageData buffer (no element per latent); a grid over the
   unit square finds the point under the pointer. Needs util.js and table.js (the labels).

   A map is made of parts, each over the ones before it:
     points   the data: positions, the grid, the colourings           mapPoints
     camera   which part of the unit square the canvas shows           mapCamera
     painter  draws the points, the hovered and the focused latent     mapPainter
     legend   the colouring <select> and its colour ramp               mapLegend
     hover    the hovered latent's ring and label                      mapHover
     input    pointers, wheel, keys and the zoom buttons               mapInput
   and makeMap puts them together into the object that #mapbox.fbMap holds. */
(function (fb) {
  "use strict";

  var u = fb.util, el = u.el, fmt = u.fmt, load = u.load, root = u.root, bytesOf = u.bytesOf;
  var placeTip = u.placeTip, hideTip = u.hideTip;

  var MAP_Q = 65535, MAP_GRID = 128, MAP_HIT = 8, MAP_ZMAX = 256;
  var mapData = null;
  window.fbMap = function (d) { mapData = d; };

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

  /* ---------------- points: the data -------------------------------------------------------- */

  /* d: what map/points.js passed to fbMap, {n, xy, stats} */
  function mapPoints(d) {
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

    var stats = {}, orders = {};
    d.stats.forEach(function (s) { stats[s.k] = s; });

    /* colouring k's byte per point (0: no value), decoded on first use; null for k = "" (one
       colour) */
    function codes(k) { return k ? (stats[k].codes || (stats[k].codes = bytesOf(stats[k].v))) : null; }

    /* drawing order for a colouring: by its byte, so that high values lie on top */
    function orderOf(k) {
      if (orders[k]) return orders[k];
      var order = new Int32Array(n);
      if (!k) { for (var j = 0; j < n; j++) order[j] = j; return (orders[k] = order); }
      var v = codes(k), at = new Int32Array(257);
      for (j = 0; j < n; j++) at[v[j] + 1]++;
      for (j = 0; j < 256; j++) at[j + 1] += at[j];
      for (j = 0; j < n; j++) order[at[v[j]]++] = j;
      return (orders[k] = order);
    }

    /* the point nearest unit position (ax, ay) within unit distance r, or -1; ties: lower id */
    function nearest(ax, ay, r) {
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

    return {
      n: n, x: ux, y: uy,  /* latent j lies at (x[j], y[j]) in the unit square */
      stats: d.stats, stat: function (k) { return stats[k]; },
      codes: codes, orderOf: orderOf, nearest: nearest
    };
  }

  /* ---------------- camera: the view over the unit square ---------------------------------- */

  function mapCamera(canvas) {
    /* centre (unit coordinates) and zoom; the map's `view`, read by draw */
    var view = { cx: 0.5, cy: 0.5, z: 1 };
    var cam = { view: view, W: 0, H: 0, dpr: 1 };  /* the canvas's css size and pixel ratio */

    cam.measure = function () {
      cam.dpr = window.devicePixelRatio || 1;
      cam.W = canvas.clientWidth; cam.H = canvas.clientHeight;
    };
    cam.scale = function () { return view.z * Math.min(cam.W, cam.H) * 0.94; };  /* css px per unit */
    /* the css position in the canvas of unit point (x, y) */
    cam.toCanvas = function (x, y) {
      var s = cam.scale();
      return { x: cam.W / 2 + (x - view.cx) * s, y: cam.H / 2 + (y - view.cy) * s };
    };
    /* the unit point at css position (px, py) of the canvas */
    cam.toUnit = function (px, py) {
      var s = cam.scale();
      return { x: view.cx + (px - cam.W / 2) / s, y: view.cy + (py - cam.H / 2) / s };
    };
    cam.clamp = function () {
      view.cx = Math.max(0, Math.min(1, view.cx));
      view.cy = Math.max(0, Math.min(1, view.cy));
    };
    /* move the view by (dx, dy) css pixels */
    cam.move = function (dx, dy) {
      var s = cam.scale();
      view.cx += dx / s;
      view.cy += dy / s;
      cam.clamp();
    };
    /* zoom by `f` keeping the unit point under css position (px, py) in place */
    cam.zoomAt = function (px, py, f) {
      var at = cam.toUnit(px, py);
      view.z = Math.max(1, Math.min(MAP_ZMAX, view.z * f));
      var s1 = cam.scale();
      view.cx = at.x - (px - cam.W / 2) / s1;
      view.cy = at.y - (py - cam.H / 2) / s1;
      cam.clamp();
    };
    cam.reset = function () { view.cx = 0.5; view.cy = 0.5; view.z = 1; };
    /* centre unit point (x, y), zoomed in to at least z */
    cam.centreOn = function (x, y, z) { view.cx = x; view.cy = y; view.z = Math.max(view.z, z); };
    return cam;
  }

  /* ---------------- painter: drawing ------------------------------------------------------- */

  /* `key`: the colouring drawn ("": one colour); `hover`, `target`: the latents ringed (-1: none) */
  function mapPainter(box, canvas, points, camera) {
    var ctx = canvas.getContext("2d"), image = null, pending = false, n = points.n;
    var painter = { key: "", hover: -1, target: -1 };

    /* after the canvas's size changed (and at first): fit its pixels, then draw */
    painter.resize = function () {
      camera.measure();
      canvas.width = Math.max(1, Math.round(camera.W * camera.dpr));
      canvas.height = Math.max(1, Math.round(camera.H * camera.dpr));
      image = null;
      painter.draw();
    };

    painter.draw = function () {
      pending = false;
      var view = camera.view, dpr = camera.dpr, cw = canvas.width, ch = canvas.height;
      if (!image || image.width !== cw || image.height !== ch) image = ctx.createImageData(cw, ch);
      var px = new Uint32Array(image.data.buffer), s = camera.scale() * dpr;
      px.fill(0);
      var base = n > 50000 ? 1.5 : n > 5000 ? 2.5 : n > 500 ? 4 : 7;
      var size = Math.max(1, Math.round(Math.min(12, base * Math.sqrt(view.z)) * dpr)), half = size / 2;
      var spans = [];  /* a dot: per row, its [first, end) pixel; squares up to 3 pixels */
      for (var r = 0; r < size; r++) {
        var yy = r + 0.5 - half, w = size <= 3 ? half : Math.sqrt(Math.max(0, half * half - yy * yy));
        spans.push(Math.round(half - w), Math.round(half + w));
      }
      var codes = points.codes(painter.key), ux = points.x, uy = points.y;
      var order = points.orderOf(painter.key), ox = cw / 2 - view.cx * s - half, oy = ch / 2 - view.cy * s - half;
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
      [painter.target, painter.hover].forEach(function (i) {
        if (i < 0) return;
        var p = camera.toCanvas(ux[i], uy[i]);
        ctx.beginPath();
        ctx.arc(p.x * dpr, p.y * dpr, (half + 4 * dpr), 0, 2 * Math.PI);
        ctx.lineWidth = 2 * dpr;
        ctx.strokeStyle = ink;
        ctx.stroke();
      });
      box.setAttribute("data-ready", "1");
    };

    /* draw on the next frame (once however often asked) */
    painter.redraw = function () { if (!pending) { pending = true; requestAnimationFrame(painter.draw); } };
    return painter;
  }

  /* ---------------- legend: the colouring <select> (#mapc) and its ramp (#mapl) ------------ */

  function mapLegend(points, painter) {
    var select = document.getElementById("mapc"), legend = document.getElementById("mapl");
    points.stats.forEach(function (s) {
      select.appendChild(el("option", null, s.name)).value = s.k;
    });
    select.appendChild(el("option", null, "nothing (one colour)")).value = "";
    painter.key = points.stats.length ? points.stats[0].k : "";
    select.value = painter.key;

    function show() {
      var key = painter.key;
      legend.textContent = "";
      if (!key) return;
      var s = points.stat(key), bar = el("span", "ramp");
      bar.style.background = "linear-gradient(to right," + [0, 0.25, 0.5, 0.75, 1].map(function (t) {
        return "rgb(" + colourAt(t).join(",") + ")";
      }).join(",") + ")";
      legend.appendChild(document.createTextNode(fmt(s.lo) + " "));
      legend.appendChild(bar);
      legend.appendChild(document.createTextNode(" " + fmt(s.hi) + (s.scale === "log" ? " (log scale)" : "") + "; grey: " +
        (key === "am" ? "no active position in the shown examples" : "dead")));
    }

    select.addEventListener("change", function () { painter.key = select.value; show(); painter.redraw(); });
    show();
  }

  /* ---------------- hover: the latent under the pointer ------------------------------------ */

  /* returns set(j): make latent j (-1: none) the hovered one, ringed and labelled in #tip with
     its explanation or top tokens (from the table's id-ordered rows, table.js) */
  function mapHover(canvas, camera, painter, points) {
    var table = fb.table;

    function label(j) {
      var p = camera.toCanvas(points.x[j], points.y[j]), r = canvas.getBoundingClientRect();
      var at = { left: r.left + p.x - 6, right: r.left + p.x + 6, top: r.top + p.y - 6, bottom: r.top + p.y + 6 };
      placeTip("#" + j, at);
      if (!table.manifest) return;
      table.rowsOf([j]).then(function (rows) {
        if (painter.hover !== j) return;
        var row = rows[0], ex = row[table.col("e")], top = row[table.col("t")];
        placeTip("#" + j + "  density " + table.pct(row[table.col("d")]) + "\n" +
          (ex || (top ? "top tokens: " + top : "never fired")), at);
      }, function () { /* the label stays "#id" */ });
    }

    return function set(j) {
      if (j === painter.hover) return;
      painter.hover = j;
      canvas.style.cursor = j >= 0 ? "pointer" : "grab";
      if (j >= 0) label(j); else hideTip();
      painter.redraw();
    };
  }

  /* ---------------- input: pointers, wheel, keys, zoom buttons ----------------------------- */

  /* hit(px, py): the latent at css position (px, py) of the canvas, or -1; setHover: mapHover's */
  function mapInput(canvas, camera, painter, hit, setHover) {
    function zoomAt(px, py, f) { camera.zoomAt(px, py, f); painter.redraw(); }
    function zoomCentre(f) { zoomAt(camera.W / 2, camera.H / 2, f); }
    function reset() { camera.reset(); painter.redraw(); }

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
        camera.move(-(p.x - before.x), -(p.y - before.y));  /* the map follows the pointer */
        painter.redraw();
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
      if (j >= 0) location.href = fb.util.latentHref(j);
    }
    canvas.addEventListener("pointerup", function (ev) { release(ev, true); });
    canvas.addEventListener("pointercancel", function (ev) { release(ev, false); });
    canvas.addEventListener("pointerleave", function () { if (!pointerList().length) setHover(-1); });
    canvas.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var p = local(ev);
      zoomAt(p.x, p.y, Math.exp(-ev.deltaY * (ev.deltaMode === 1 ? 0.05 : 0.0015)));
    }, { passive: false });

    /* keys (the canvas is focusable): + / = and - zoom, 0 resets, arrows pan 60 css px */
    canvas.addEventListener("keydown", function (ev) {
      var k = ev.key;
      if (k === "+" || k === "=") zoomCentre(1.5);
      else if (k === "-") zoomCentre(1 / 1.5);
      else if (k === "0") reset();
      else if (k.indexOf("Arrow") === 0) {
        camera.move(k === "ArrowLeft" ? -60 : k === "ArrowRight" ? 60 : 0,
          k === "ArrowUp" ? -60 : k === "ArrowDown" ? 60 : 0);
        painter.redraw();
      } else return;
      ev.preventDefault();
    });

    /* the bar's buttons: data-zoom 1 in, -1 out, 0 reset */
    var zooms = document.querySelectorAll("[data-zoom]");
    for (var b = 0; b < zooms.length; b++) {
      zooms[b].addEventListener("click", function (ev) {
        var f = +ev.currentTarget.getAttribute("data-zoom");
        if (f === 0) reset(); else zoomCentre(f > 0 ? 1.5 : 1 / 1.5);
      });
    }
  }

  /* ---------------- the map -------------------------------------------------------------- */

  /* the canvas that replaces #mapbox's picture (kept for pages without scripts) */
  function mapCanvas(box, n) {
    var canvas = el("canvas");
    canvas.tabIndex = 0;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", "Map of " + n + " latents: arrow keys pan, + and - zoom");
    var picture = box.querySelector("img");
    if (picture) picture.parentNode.removeChild(picture);
    box.appendChild(canvas);
    return canvas;
  }

  /* The map in #mapbox, from the loaded map/points.js (null if it did not call fbMap): the
     object that box.fbMap holds, {n, view, draw, hit, screenOf, focus} (tests and
     bench/map_canvas.py use them). */
  function makeMap(box) {
    if (!mapData) return null;
    var points = mapPoints(mapData);
    var canvas = mapCanvas(box, points.n);
    var camera = mapCamera(canvas);
    var painter = mapPainter(box, canvas, points, camera);
    mapLegend(points, painter);
    function hit(px, py) {
      var at = camera.toUnit(px, py);
      return points.nearest(at.x, at.y, MAP_HIT / camera.scale());
    }
    mapInput(canvas, camera, painter, hit, mapHover(canvas, camera, painter, points));
    window.addEventListener("resize", painter.resize);
    painter.resize();

    var map = {
      n: points.n, view: camera.view, draw: painter.draw, hit: hit,
      /* css position of latent j relative to the viewport (for tests and focus) */
      screenOf: function (j) {
        var p = camera.toCanvas(points.x[j], points.y[j]), r = canvas.getBoundingClientRect();
        return { x: r.left + p.x, y: r.top + p.y };
      },
      /* centre latent j, zoomed in, ringed, and scroll the map to it */
      focus: function (j) {
        if (!(j >= 0 && j < points.n)) return;
        painter.target = j;
        camera.centreOn(points.x[j], points.y[j], 8);
        box.scrollIntoView({ block: "center" });
        painter.draw();
      }
    };
    box.fbMap = map;
    return map;
  }

  /* the latent of index.html#map=<id>, or null */
  function mapTarget() {
    var m = /^#map=(\d+)$/.exec(location.hash);
    return m ? +m[1] : null;
  }

  function setup() {
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

  fb.map = { setup: setup };
})(window.fb);
