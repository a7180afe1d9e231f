// The flow dashboard's charts (Chart.js): activity per day, the funnel, and A/B variants.
/* global Chart */
(function () {
  "use strict";
  const holder = document.getElementById("charts");
  if (!holder) return;
  const m = JSON.parse(holder.dataset.metrics);
  const colours = { sent: "#2f6fd0", opened: "#1d7a6b", clicked: "#b06a00", replied: "#7a3fb0", converted: "#1d6b3a" };
  Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
  Chart.defaults.color = "#4a5366";
  Chart.defaults.animation = false;

  const days = m.days.map((d) => d.slice(5));
  new Chart(document.getElementById("chart-series"), {
    type: "line",
    data: {
      labels: days,
      datasets: Object.keys(colours).map((k) => ({
        label: k,
        data: m.series[k],
        borderColor: colours[k],
        backgroundColor: colours[k],
        tension: 0.25,
        pointRadius: 0,
        borderWidth: 2,
      })),
    },
    options: { responsive: true, maintainAspectRatio: false, interaction: { mode: "index", intersect: false }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
  });

  new Chart(document.getElementById("chart-funnel"), {
    type: "bar",
    data: {
      labels: m.funnel.map(([name]) => name),
      datasets: [{ label: "leads", data: m.funnel.map(([, n]) => n), backgroundColor: ["#8191ad", "#2f6fd0", "#1d7a6b", "#b06a00", "#1d6b3a"] }],
    },
    options: { indexAxis: "y", responsive: true, maintainAspectRatio: false, plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
  });

  const variants = document.getElementById("chart-variants");
  if (variants && m.variants.length) {
    new Chart(variants, {
      type: "bar",
      data: {
        labels: m.variants.map((v) => `${v.step} · ${v.name}`),
        datasets: [
          { label: "open rate %", data: m.variants.map((v) => (v.open_rate === null ? 0 : +(100 * v.open_rate).toFixed(1))), backgroundColor: "#1d7a6b" },
          { label: "click rate %", data: m.variants.map((v) => (v.click_rate === null ? 0 : +(100 * v.click_rate).toFixed(1))), backgroundColor: "#b06a00" },
        ],
      },
      options: { responsive: true, maintainAspectRatio: false, scales: { y: { beginAtZero: true, max: 100 } } },
    });
  }
})();
