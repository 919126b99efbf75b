// On load: check that every figure decoded (written into #render-check and the title) and
// that BokehJS built the interactive views (written into #interactive-check).
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (im) { return !(im.complete && im.naturalWidth > 0); });
  var ok = imgs.length > 0 && bad.length === 0;
  var el = document.getElementById("render-check");
  el.setAttribute("data-ok", ok ? "true" : "false");
  el.setAttribute("data-images", String(imgs.length));
  el.setAttribute("data-failed", String(bad.length));
  el.textContent = "figures rendered: " + (imgs.length - bad.length) + "/" + imgs.length;
  document.title = document.title + (ok ? " [figures ok]" : " [figures FAILED]");
  var check = document.getElementById("interactive-check");
  var tries = 0;
  (function poll() {
    var docs = window.Bokeh ? window.Bokeh.documents : [];
    var views = window.Bokeh && window.Bokeh.index ? Object.keys(window.Bokeh.index).length : 0;
    if (docs.length > 0 && (views > 0 || (window.Bokeh.index && window.Bokeh.index.size > 0))) {
      check.setAttribute("data-ok", "true");
      check.textContent = "interactive views ready";
    } else if (++tries < 100) {
      setTimeout(poll, 100);
    } else {
      check.setAttribute("data-ok", "false");
      check.textContent = "interactive views FAILED to render";
    }
  })();
});
