// Upgrade each static chart (SVG rendered at build time) to an interactive Vega chart.
// The Vega bundle is vendored into _static/vendor; nothing is loaded from a CDN.
(function () {
  function upgrade(container) {
    var specNode = container.querySelector("script.book-chart-spec");
    if (!specNode || typeof window.vegaEmbed !== "function") return;
    var spec = JSON.parse(specNode.textContent);
    var target = document.createElement("div");
    target.className = "book-chart-live";
    container.appendChild(target);
    window.vegaEmbed(target, spec, { renderer: "svg", actions: false, tooltip: { theme: "light" } })
      .then(function () {
        var fallback = container.querySelector(".book-chart-static");
        if (fallback) fallback.remove();
        container.classList.add("book-chart-interactive");
      })
      .catch(function (err) {
        // Keep the static SVG, and say so loudly: the browser check fails on console errors.
        target.remove();
        container.classList.add("book-chart-failed");
        console.error("chart could not be made interactive (static image kept):", err);
      });
  }
  function run() {
    document.querySelectorAll(".book-chart").forEach(upgrade);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run);
  else run();
})();
