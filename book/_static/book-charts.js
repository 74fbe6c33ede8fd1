// Upgrade each static chart (SVG rendered at build time) to an interactive Vega chart.
// The Vega bundle is vendored into _static/vendor; nothing is loaded from a CDN.
(function () {
  function markFailed(container, target, err) {
    // Keep the static SVG, and say so loudly: the browser check fails on console errors.
    if (target) target.remove();
    container.classList.add("book-chart-failed");
    console.error("chart could not be made interactive (static image kept):", err);
  }
  function upgrade(container) {
    // The printed book (tools/print_book.py) keeps the static pictures: they leave out the
    // parts that only mean something interactively (helpers/charts.py, interactive_only).
    if (window.bookChartsStatic) {
      container.classList.add("book-chart-kept-static");
      return;
    }
    var specNode = container.querySelector("script.book-chart-spec");
    if (!specNode || typeof window.vegaEmbed !== "function") return;
    var target = document.createElement("div");
    target.className = "book-chart-live";
    // Parsing inside the promise: a spec that does not parse marks the chart failed too.
    Promise.resolve()
      .then(function () {
        var spec = JSON.parse(specNode.textContent);
        container.appendChild(target);
        return window.vegaEmbed(target, spec, {
          renderer: "svg",
          actions: false,
          tooltip: { theme: "light" },
        });
      })
      .then(function () {
        var fallback = container.querySelector(".book-chart-static");
        if (fallback) fallback.remove();
        container.classList.add("book-chart-interactive");
      })
      .catch(function (err) {
        markFailed(container, target, err);
      });
  }
  function run() {
    document.querySelectorAll(".book-chart").forEach(upgrade);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run);
  else run();
})();
