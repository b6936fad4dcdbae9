// tensorlet console: charts (uPlot) and live refresh. Pages work without
// this script; it draws the curves and keeps the serving page current.
"use strict";
(function () {
  document.documentElement.classList.add("js");
  const charts = (window.tensorletCharts = []);
  const palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

  function toData(d) {
    return [d.x].concat(d.series.map((s) => s.values));
  }

  function drawChart(figure) {
    const holder = figure.querySelector(".plot");
    const script = figure.querySelector("script.chart-data");
    if (!holder || !script || typeof uPlot === "undefined") return;
    const chart = JSON.parse(script.textContent);
    if (!chart.x.length) {
      holder.textContent = "No epochs yet.";
      return;
    }
    const overview = toData(chart);
    const width = () => Math.max(260, holder.clientWidth || figure.clientWidth - 20);
    const opts = {
      width: width(),
      height: 260,
      scales: { x: { time: false } },
      axes: [{ label: "epoch" }, { label: chart.y_label }],
      cursor: { drag: { x: true, y: false }, bind: { dblclick: (u) => () => { u.setData(overview); return null; } } },
      series: [{ label: "epoch" }].concat(
        chart.series.map((s, i) => ({
          label: s.label,
          stroke: palette[i % palette.length],
          width: 1.5,
          spanGaps: true,
          value: (u, v) => (v == null ? "-" : v.toFixed(4)),
        }))
      ),
      hooks: {},
    };
    let pending = null;
    if (chart.detail && chart.downsampled) {
      opts.hooks.setScale = [
        (u, key) => {
          if (key !== "x") return;
          const { min, max } = u.scales.x;
          if (min == null || max == null) return;
          clearTimeout(pending);
          pending = setTimeout(() => {
            const from = Math.max(0, Math.floor(min));
            const to = Math.ceil(max);
            if (from <= overview[0][0] && to >= overview[0][overview[0].length - 1]) return;
            fetch(chart.detail + "&from=" + from + "&to=" + to, { headers: { Accept: "application/json" } })
              .then((r) => (r.ok ? r.json() : null))
              .then((d) => { if (d && d.x.length) u.setData(toData(d), false); })
              .catch(() => {});
          }, 150);
        },
      ];
    }
    const u = new uPlot(opts, overview, holder);
    figure.dataset.points = String(chart.x.length);
    figure.dataset.series = String(chart.series.length);
    charts.push(u);
    window.addEventListener("resize", () => u.setSize({ width: width(), height: 260 }));
  }

  function refreshServing(el) {
    const src = el.dataset.live;
    const fmt = (v, n) => (v == null ? (n ? "> 1 s" : "-") : v < 1 ? (v * 1000).toFixed(0) + " µs" : v.toFixed(2) + " ms");
    const set = (root, field, value) => {
      const cell = root.querySelector('[data-field="' + field + '"]');
      if (cell && cell.textContent !== String(value)) cell.textContent = String(value);
    };
    const tick = () => {
      fetch(src, { headers: { Accept: "application/json" } })
        .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
        .then((s) => {
          set(document, "taken", s.taken);
          set(document, "in_flight", s.in_flight);
          set(document, "shed", s.shed);
          set(document, "unrouted", s.unrouted);
          const rows = document.querySelectorAll("#serving-table tbody tr");
          const deploys = document.querySelectorAll("#deploys-table tbody tr").length;
          if (rows.length !== s.versions.length || deploys !== s.deploys.length) {
            window.location.reload();
            return;
          }
          for (const v of s.versions) {
            const row = document.querySelector('tr[data-key="' + CSS.escape(v.model + "@" + v.version) + '"]');
            if (!row) { window.location.reload(); return; }
            set(row, "requests", v.requests);
            set(row, "rate", v.rate.toFixed(1));
            set(row, "p50", fmt(v.p50_ms, v.requests));
            set(row, "p90", fmt(v.p90_ms, v.requests));
            set(row, "p99", fmt(v.p99_ms, v.requests));
            set(row, "client_errors", v.client_errors);
            set(row, "server_errors", v.server_errors);
            set(row, "drift", v.drift == null ? "-" : v.drift.toFixed(3));
          }
        })
        .catch(() => {})
        .finally(() => setTimeout(tick, 2000));
    };
    setTimeout(tick, 2000);
  }

  function start() {
    document.querySelectorAll("figure.chart").forEach(drawChart);
    const live = document.querySelector("[data-live]");
    if (live) refreshServing(live);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
