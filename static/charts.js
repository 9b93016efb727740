/* feature-browser client, chart bars: what each bin of a histogram counts, as a tooltip
   (templates/_histogram.svg.html; the attributes are generator/site/charts.py Bins). Needs
   util.js. */
(function (fb) {
  "use strict";

  var u = fb.util, varints = u.varints, sig = u.sig, placeTip = u.placeTip, hideTip = u.hideTip;

  /* the chart (with bins) that t is part of, or null */
  function chartTarget(t) { return t && t.closest ? t.closest("svg.chart[data-c]") : null; }

  /* The tooltip of bin k of a chart: generator/site/charts.py Bins.tip, from the <svg>'s data-c
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

  var listening = false;
  function setup() {
    var charts = document.querySelectorAll("svg.chart[data-c]");
    for (var n = 0; n < charts.length; n++) {
      var title = charts[n].querySelector("title");
      if (title) {  /* the chart's name stays for screen readers; the bins get the tooltips */
        charts[n].setAttribute("aria-label", title.textContent);
        title.parentNode.removeChild(title);
      }
    }
    if (listening) return;
    listening = true;
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

  fb.charts = { setup: setup, target: chartTarget };
})(window.fb);
