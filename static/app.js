/* feature-browser client, the glue: a latent page's copy buttons and card mode, and init(), which
   starts every feature of the page (charts.js, examples.js, table.js, search.js, map.js). Loaded
   last (templates/base.html): needs util.js and the feature scripts. */
(function (fb) {
  "use strict";

  var el = fb.util.el;

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
        /* the viewer's permalink is its anchor (latent.html#<id>) */
        var here = fb.util.packed ? location.href : location.href.split("#")[0];
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

  /* ---------------- card mode ------------------------------------------------------------ */

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

  /* the packed site's viewer (viewer.js) adds the copy buttons to each latent it draws */
  fb.app = { setupCopy: setupCopy };

  /* each feature looks for its part of the page and does nothing where there is none */
  function init() {
    setupCard();
    fb.charts.setup();
    fb.examples.setup();
    setupCopy();
    /* the packed site's viewer page loads none of these (templates/latent.html) */
    if (fb.table) fb.table.setup();
    if (fb.search) fb.search.setup();
    if (fb.map) fb.map.setup();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})(window.fb);
