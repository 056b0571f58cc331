// The job page's loss curve (uPlot) and followed log, fed by live.js (`live:points`, `live:log` on #live): each
// message carries only what the page lacks, or `reset` with a fresh start (another run's file).
(function () {
  "use strict";
  var live = document.getElementById("live");
  var chartBox = document.getElementById("chart");
  var logBox = document.getElementById("log");
  var MAX_LOG_LINES = 2000;
  var byStep = new Map();
  var plot = null;

  function data() {
    var steps = Array.from(byStep.keys()).sort(function (a, b) { return a - b; });
    return [steps, steps.map(function (s) { return byStep.get(s).train ?? null; }),
            steps.map(function (s) { return byStep.get(s).eval ?? null; })];
  }

  function draw() {
    if (byStep.size === 0) { return; }
    if (plot === null) {
      chartBox.textContent = "";
      plot = new uPlot({
        width: Math.max(280, chartBox.clientWidth), height: 240,
        scales: { x: { time: false } },
        series: [{ label: "step" }, { label: "train loss", stroke: "#2563eb", spanGaps: true },
                 { label: "eval loss", stroke: "#dc2626", spanGaps: true, points: { show: true } }],
      }, data(), chartBox);
      window.addEventListener("resize", function () {
        plot.setSize({ width: Math.max(280, chartBox.clientWidth), height: 240 });
      });
    } else {
      plot.setData(data());
    }
    chartBox.dataset.points = String(byStep.size);
    chartBox.dataset.lastStep = String(Math.max.apply(null, Array.from(byStep.keys())));
  }

  live.addEventListener("live:points", function (e) {
    if (e.detail.reset) { byStep.clear(); }
    e.detail.points.forEach(function (p) {
      var at = byStep.get(p.step) || {};
      if (p.train !== undefined) { at.train = p.train; }
      if (p.eval !== undefined) { at.eval = p.eval; }
      byStep.set(p.step, at);
    });
    draw();
  });

  live.addEventListener("live:log", function (e) {
    if (e.detail.reset) { logBox.textContent = ""; }
    if (e.detail.lines.length === 0) { return; }
    var follow = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
    logBox.append(e.detail.lines.join("\n") + "\n");  // text, never HTML
    var lines = logBox.textContent.split("\n");
    if (lines.length > MAX_LOG_LINES) { logBox.textContent = lines.slice(-MAX_LOG_LINES).join("\n"); }
    if (follow) { logBox.scrollTop = logBox.scrollHeight; }
  });
})();
