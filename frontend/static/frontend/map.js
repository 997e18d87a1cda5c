/* Map of results: imagery tasks coloured by label and shaded by confidence over the platform's own overview. */
(function () {
  "use strict";

  function init() {
    const mapEl = document.getElementById("map");
    const config = JSON.parse(document.getElementById("map-config").textContent);
    const map = L.map(mapEl, { attributionControl: false, zoomSnap: 0.25 });
    if (config.bounds) {
      const base = {};
      if (config.overview) base[config.overview_after ? "Before" : "Image"] = L.imageOverlay(config.overview, config.bounds);
      if (config.overview_after) base.After = L.imageOverlay(config.overview_after, config.bounds);
      const names = Object.keys(base);
      if (names.length) base[names[names.length - 1]].addTo(map);
      if (names.length > 1) L.control.layers(base, null, { collapsed: false }).addTo(map);
      map.fitBounds(config.bounds);
    } else {
      map.setView([0, 0], 2);
    }

    const layer = L.geoJSON(null, {
      style: (feature) => {
        const p = feature.properties;
        return { color: p.color, weight: 1, opacity: 0.9, fillColor: p.color, fillOpacity: 0.08 + 0.6 * p.confidence };
      },
      onEachFeature: (feature, path) => {
        const p = feature.properties;
        const tip = document.createElement("span");
        tip.textContent = "#" + p.task_id + " · " + (p.label || "no consensus yet") + " · confidence " +
          p.confidence.toFixed(2) + " · " + p.n_answers + " answers · " + p.status + (p.adjudicated ? " (reviewed)" : "");
        path.bindTooltip(tip, { sticky: true });
        path.on("click", () => window.location.assign(p.url));
      },
    }).addTo(map);

    const labelSelect = document.getElementById("filter-label");
    const statusSelect = document.getElementById("filter-status");
    const confidence = document.getElementById("filter-confidence");
    const confidenceValue = document.getElementById("confidence-value");
    const count = document.getElementById("map-count");
    let features = [];

    function apply() {
      const label = labelSelect.value;
      const status = statusSelect.value;
      const minimum = parseFloat(confidence.value);
      confidenceValue.textContent = minimum.toFixed(2);
      const shown = features.filter((f) => {
        const p = f.properties;
        if (label === "-" ? p.label !== null : label && p.label !== label) return false;
        if (status && p.status !== status) return false;
        return p.confidence >= minimum || (minimum > 0 && p.adjudicated);
      });
      layer.clearLayers();
      layer.addData({ type: "FeatureCollection", features: shown });
      count.textContent = shown.length + " of " + features.length + " tasks shown";
      mapEl.dataset.count = String(shown.length);
      mapEl.dataset.ready = "1";
    }

    [labelSelect, statusSelect, confidence].forEach((input) => input.addEventListener("input", apply));
    fetch(config.geojson, { credentials: "same-origin", headers: { Accept: "application/geo+json" } })
      .then((response) => response.json())
      .then((data) => {
        features = data.features;
        // Tens of thousands of tiles (a global campaign) draw on one canvas, not as one SVG element each.
        if (features.length > 2000) layer.options.renderer = L.canvas({ padding: 0.5 });
        apply();
        if (!config.bounds && features.length) map.fitBounds(layer.getBounds());
      });
  }

  document.addEventListener("DOMContentLoaded", init);
})();
