/* feature-browser prompt view (templates/prompt.html; the data blob #fb-prompt is described in
   generator/site/views.py): hover or select a token to list its most active latents, hover or
   click a latent to colour the tokens by its activation, sort the prompt's latent table. A
   classic script that loads nothing, so it works from file://; needs util.js. Token and label
   text always goes through textContent, never innerHTML. */
(function (fb) {
  "use strict";

  var el = fb.util.el, fmt = fb.util.fmt, LEVELS = fb.util.LEVELS;
  var dataEl = document.getElementById("fb-prompt");
  var box = document.getElementById("ptoks"), panel = document.getElementById("ptok");
  if (!dataEl || !box || !panel) return;
  var d = JSON.parse(dataEl.textContent);
  var root = fb.util.root;
  var noun = box.getAttribute("data-noun") || "prompt";
  var toks = [];
  for (var t = box.firstElementChild; t; t = t.nextElementSibling) if (t.tagName === "I") toks.push(t);
  var selected = -1, hovered = -1, pinned = null, lit = null;
  /* corpus view: the latent whose example linked here (#t=P&l=I), listed at every token where
     it is active even outside the token's top */
  var origin = null;

  function signed(x) { return (x > 0 ? "+" : "") + fmt(x); }
  function isBos(p) { return toks[p].classList.contains("bos"); }
  function label(i) { return d.n[i] ? d.n[i][0] : ""; }
  function peak(i) { return d.n[i] ? d.n[i][1] : 0; }

  function latentLink(i) {
    var a = el("a", null, "#" + i);
    a.href = fb.util.latentHref(i);
    return a;
  }

  /* ---------------- one token's latents ---------------------------------------------------- */

  function showToken(p) {
    panel.textContent = "";
    if (p < 0) {
      panel.appendChild(el("p", "note", "Hover or select a token to see its top latents."));
      return;
    }
    var h = el("h3");
    h.appendChild(document.createTextNode("Position " + p + " "));
    h.appendChild(el("q", null, toks[p].textContent));
    panel.appendChild(h);
    if (isBos(p)) {
      panel.appendChild(el("p", "note", "BOS / document boundary: excluded from statistics; no latent is read or removed here."));
      return;
    }
    var next = p + 1 < toks.length ? p + 1 : -1, info;
    if (next < 0) info = "Last token: there is no next token to predict, so no \u0394loss.";
    else if (isBos(next)) info = "The next token is a BOS, whose prediction is not scored: no \u0394loss.";
    else info = "Next token \u201c" + toks[next].textContent + "\u201d, predicted with loss " + fmt(d.l[p]) + " nats.";
    panel.appendChild(el("p", "note", info));
    var top = d.t[p].slice();
    if (origin != null && !top.some(function (e) { return String(e[0]) === origin; })) {
      var here = valueAt(d.a[origin], p);
      if (here != null) top.push([+origin, here, valueAt(d.x && d.x[origin], p)]);
    }
    if (!top.length) {
      panel.appendChild(el("p", "note", "No latent is active on this token."));
      return;
    }
    var table = el("table", "tt"), head = el("tr"), body = el("tbody");
    ["latent", "label", "activation", "\u0394loss (next token)"].forEach(function (text, k) { head.appendChild(el("th", k > 1 ? "num" : null, text)); });
    table.appendChild(el("thead")).appendChild(head);
    top.forEach(function (e, k) {
      var tr = el("tr", k >= d.t[p].length ? "origin" : null), cell = el("td"), act = el("td", "num"), bar = el("span", "ab");
      tr.setAttribute("data-l", e[0]);
      cell.appendChild(latentLink(e[0]));
      tr.appendChild(cell);
      tr.appendChild(el("td", null, label(e[0])));
      bar.style.width = (2.5 * Math.min(1, peak(e[0]) > 0 ? e[1] / peak(e[0]) : 1)).toFixed(2) + "em";
      act.appendChild(bar);
      act.appendChild(document.createTextNode(fmt(e[1])));
      tr.appendChild(act);
      tr.appendChild(el("td", "num" + (e[2] > 0 ? " help" : e[2] < 0 ? " hurt" : ""), e[2] == null ? "n/a" : signed(e[2])));
      body.appendChild(tr);
    });
    table.appendChild(body);
    panel.appendChild(table);
    if (top.length > d.t[p].length) panel.appendChild(el("p", "note", "Last row: latent #" + origin + ", whose example you came from (not among the " + d.t[p].length + " most active here)."));
    panel.appendChild(el("p", "note", "The " + d.t[p].length + " most active latents here (bar: activation / the latent's max over the corpus). " +
      "\u0394loss: change in the loss of predicting the next token when the latent is removed at every non-BOS position of the " + noun + "; " +
      "> 0 (blue) the latent helped, < 0 (red) it hurt" +
      (noun === "sequence" ? "; n/a: computed only for the latents whose page shows this sequence, and undefined at the last token." : ".")));
  }

  /* the value at position p of a [position, value, ...] list, or null */
  function valueAt(list, p) {
    for (var j = 0; list && j + 1 < list.length; j += 2) if (list[j] === p) return list[j + 1];
    return null;
  }

  function mark(cls, p, on) { if (p >= 0) toks[p].classList.toggle(cls, on); }

  /* The panel shows the hovered token; when the pointer leaves the tokens, the selected one,
     or (none selected) still the last one hovered, so that its links can be reached. */
  function hover(p) {
    mark("hov", hovered, false);
    hovered = p;
    mark("hov", hovered, true);
    if (p >= 0 || selected >= 0) showToken(p >= 0 ? p : selected);
  }

  function select(p) {
    mark("cur", selected, false);
    selected = p;
    mark("cur", selected, true);
    showToken(hovered >= 0 ? hovered : selected);
  }

  function tokenAt(target) {
    for (var n = target; n && n !== box; n = n.parentNode) {
      if (n.tagName === "I" && n.parentNode === box) return toks.indexOf(n);
    }
    return -1;
  }

  function step(from, dir) {
    for (var p = from + dir; p >= 0 && p < toks.length; p += dir) if (!isBos(p)) return p;
    return from;
  }

  box.addEventListener("mouseover", function (ev) { var p = tokenAt(ev.target); if (p >= 0 && p !== hovered) hover(p); });
  box.addEventListener("mouseleave", function () { hover(-1); });
  box.addEventListener("click", function (ev) {
    var p = tokenAt(ev.target);
    if (p < 0) return;
    select(p === selected ? -1 : p);
    /* narrow screens put the panel under the tokens: bring it into view */
    var r = panel.getBoundingClientRect();
    if (selected >= 0 && r.top > box.getBoundingClientRect().bottom - 1 && r.top > window.innerHeight * 0.6) {
      panel.scrollIntoView({ block: "nearest" });
    }
  });
  box.addEventListener("focus", function () {
    if (selected < 0 && box.matches(":focus-visible")) select(step(-1, 1));
  });
  box.addEventListener("keydown", function (ev) {
    var p = selected;
    if (ev.key === "ArrowRight") p = step(selected, 1);
    else if (ev.key === "ArrowLeft") p = selected < 0 ? step(toks.length, -1) : step(selected, -1);
    else if (ev.key === "Home") p = step(-1, 1);
    else if (ev.key === "End") p = step(toks.length, -1);
    else if (ev.key === "Escape") p = -1;
    else return;
    ev.preventDefault();
    select(p);
    if (p >= 0) toks[p].scrollIntoView({ block: "nearest" });
  });

  /* #t=P (the corpus view's links from examples): select position P, on load and when the
     hash changes (back / forward) */
  function fromHash() {
    var from = /(?:^#|&)l=(\d+)/.exec(location.hash);
    origin = from && d.a[from[1]] ? from[1] : null;
    pinned = origin;
    light(origin);
    var wanted = /(?:^#|&)t=(\d+)/.exec(location.hash);
    if (wanted && +wanted[1] < toks.length && !isBos(+wanted[1])) {
      select(+wanted[1]);
      toks[selected].scrollIntoView({ block: "center" });
    }
  }
  fromHash();
  window.addEventListener("hashchange", fromHash);

  /* ---------------- one latent over the prompt ------------------------------------------- */

  /* colour class of activation a of latent i: a / (its max over the corpus), in LEVELS steps */
  function level(a, i) {
    var m = peak(i);
    return m > 0 ? Math.max(1, Math.min(LEVELS, Math.ceil(LEVELS * a / m))) : LEVELS;
  }

  /* [position, activation, ...] of latent i: d.a, or (a corpus page's latent outside its
     table) the positions where the token lists name it */
  function activations(i) {
    if (i == null) return [];
    if (d.a[i]) return d.a[i];
    var out = [];
    d.t.forEach(function (top, p) { top.forEach(function (e) { if (String(e[0]) === i) out.push(p, e[1]); }); });
    return d.a[i] = out;
  }

  function light(i) {
    if (i === lit) return;
    var old = activations(lit);
    for (var j = 0; j < old.length; j += 2) toks[old[j]].classList.remove("a" + level(old[j + 1], lit));
    lit = i;
    var acts = activations(i);
    for (var k = 0; k < acts.length; k += 2) toks[acts[k]].classList.add("a" + level(acts[k + 1], i));
    var rows = document.querySelectorAll(".pl tbody tr");
    for (var n = 0; n < rows.length; n++) rows[n].classList.toggle("on", i != null && rows[n].getAttribute("data-l") === i);
  }

  function rowLatent(target) {
    var tr = target && target.closest ? target.closest("tr[data-l]") : null;
    return tr ? tr.getAttribute("data-l") : null;
  }

  [panel, document.getElementById("pl")].forEach(function (area) {
    if (!area) return;
    area.addEventListener("mouseover", function (ev) { var i = rowLatent(ev.target); if (i != null) light(i); });
    area.addEventListener("mouseleave", function () { light(pinned); });
    area.addEventListener("focusin", function (ev) { var i = rowLatent(ev.target); if (i != null) light(i); });
    area.addEventListener("focusout", function () { light(pinned); });
    area.addEventListener("click", function (ev) {
      if (ev.target.closest && ev.target.closest("a, button")) return;
      var i = rowLatent(ev.target);
      if (i == null) return;
      pinned = pinned === i ? null : i;
      light(pinned);
    });
  });

  /* ---------------- the prompt's latent table -------------------------------------------- */

  var table = document.getElementById("pl");
  if (table) {
    var rows = Array.prototype.slice.call(table.querySelectorAll("tbody tr"));
    var heads = table.querySelectorAll("thead th");
    var buttons = table.querySelectorAll("button[data-sort]");
    var order = document.getElementById("plk");
    for (var b = 0; b < buttons.length; b++) {
      buttons[b].addEventListener("click", function (ev) {
        var k = +ev.currentTarget.getAttribute("data-sort"), body = table.tBodies[0];
        var ranked = rows.map(function (row, j) { return [d.r[j][k], row]; });
        ranked.sort(function (x, y) { return x[0] - y[0]; });
        ranked.forEach(function (x) { x[1].hidden = x[0] >= d.k; body.appendChild(x[1]); });
        for (var n = 0; n < heads.length; n++) heads[n].removeAttribute("aria-sort");
        ev.currentTarget.parentNode.setAttribute("aria-sort", "descending");
        if (order) order.textContent = ev.currentTarget.textContent;
      });
    }
  }
})(window.fb);
