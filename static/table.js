/* feature-browser client, the index's latent table: sorting, the quality-flag filters and
   pagination (templates/index.html #lt). Its rows also label search results and the map's
   hover tooltips (fb.table.rowsOf). Needs util.js. */
(function (fb) {
  "use strict";

  var u = fb.util, el = u.el, fmt = u.fmt, load = u.load, root = u.root, B64 = u.B64;

  /* The table ships as one file per page per sort key, search/<key>/<c>.js (format in
     generator/site/search.py), calling fbRows; the manifest is inline (#fb-table). Nothing is
     loaded up front. */
  var manifestEl = document.getElementById("fb-table");
  var manifest = manifestEl ? JSON.parse(manifestEl.textContent) : null;
  var table = { key: "id", dir: 1, page: 0, seq: 0 };
  /* the flags filter (generator/site/quality.py): rows with none of the `hide` bits and all of
     the `only` bits; `passing` holds the file positions that pass, in display order (null: none) */
  var filter = { hide: 0, only: 0, passing: null };
  /* the loaded files: key -> c -> rows, and key -> flags per file position */
  var store = { rows: {}, flags: {}, order: {} };

  window.fbRows = function (key, c, rows) { (store.rows[key] = store.rows[key] || {})[c] = rows; };
  window.fbOrder = function (key, c, digits) { (store.order[key] = store.order[key] || {})[c] = digits; };
  /* search/<key>/q.js: the flags of every row of key's file order, one B64 digit each */
  window.fbFlags = function (key, digits) {
    var q = new Uint8Array(digits.length);
    for (var k = 0; k < digits.length; k++) q[k] = B64.indexOf(digits.charAt(k));
    store.flags[key] = q;
  };

  /* the index of column `name` in a row (0: the latent id), 0 when the build has no such column */
  function col(name) { return manifest.cols.indexOf(name) + 1; }

  /* rows at positions `pos` of key's file order (loading the files they lie in) */
  function rowsAt(key, pos) {
    var pk = manifest.packed;
    if (!pk) return fileRows(key, pos, manifest.rows);
    return key === "id" ? fileRows("id", pos, pk.file) : packedRows(key, pos, pk);
  }

  /* rows at positions `pos` of key's files, R rows a file (the packed table's id files are
     zlib'd JSON, read as the packed site's shards) */
  function loadRows(key, c) {
    if (!(manifest.packed && key === "id")) return load("search/" + key + "/" + c + ".js");
    return u.fetchPacked("search/id/" + c + ".bin").then(function (rows) { window.fbRows("id", +c, rows); });
  }
  function fileRows(key, pos, R) {
    var files = {};
    pos.forEach(function (p) { files[Math.floor(p / R)] = 1; });
    return Promise.all(Object.keys(files).map(function (c) { return loadRows(key, c); }))
      .then(function () { return pos.map(function (p) { return store.rows[key][Math.floor(p / R)][p % R]; }); });
  }

  /* The packed table (generator/site/search.py PACKED_TABLE): a sort's first and last `head`
     valid positions have their rows in <key>/h.js; the others are looked up by id, through the
     order files <key>/o<c>.js (4 B64 digits an id), in the id files. */
  function packedRows(key, pos, pk) {
    var valid = manifest.sorts[key], H = pk.head, lo = Math.max(H, valid - H), first = Math.min(H, manifest.n);
    var inHead = pos.map(function (p) { return p < H ? p : p >= lo && p < valid ? first + p - lo : -1; });
    var deep = pos.filter(function (p, k) { return inHead[k] < 0; }), files = {}, loads = [];
    deep.forEach(function (p) { files[Math.floor(p / pk.order)] = 1; });
    Object.keys(files).forEach(function (c) { loads.push(load("search/" + key + "/o" + c + ".js")); });
    if (deep.length < pos.length) loads.push(load("search/" + key + "/h.js"));
    return Promise.all(loads).then(function () {
      return fileRows("id", deep.map(function (p) { return idAt(key, p, pk.order); }), pk.file);
    }).then(function (deepRows) {
      var k = 0;
      return pos.map(function (p, j) { return inHead[j] >= 0 ? store.rows[key].h[inHead[j]] : deepRows[k++]; });
    });
  }

  function idAt(key, p, per) {
    var digits = store.order[key][Math.floor(p / per)], at = (p % per) * 4, id = 0;
    for (var k = 0; k < 4; k++) id = id * 64 + B64.indexOf(digits.charAt(at + k));
    return id;
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
      a.href = fb.util.latentHref(i);
      td.appendChild(a);
      tr.appendChild(td);
      tr.appendChild(el("td", "num", pct(row[d])));
      tr.appendChild(el("td", "num", fmt(row[x])));
      tr.appendChild(el("td", null, row[t]));
      tr.appendChild(el("td", null, row[e]));
      ["sd", "sf"].forEach(function (k) {  /* explanation scores */
        if (col(k)) tr.appendChild(el("td", "num", row[col(k)] == null ? "" : row[col(k)].toFixed(2)));
      });
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

  function setup() {
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

  /* `manifest`: the inline #fb-table (null on pages without the table) */
  fb.table = { setup: setup, manifest: manifest, col: col, rowsOf: rowsOf, pct: pct };
})(window.fb);
