// Line charts of logged metrics (uPlot), for the job page (one small chart a metric, fed live) and the compare page
// (the runs' loss and eval loss on one chart). Every chart has axis titles, whole steps on its x axis, named series
// and, as its text alternative, its points as a table (built when that table is opened).
(function () {
  "use strict";
  var FALLBACK = ["#2563eb", "#dc2626", "#15803d", "#9333ea", "#c2410c", "#0e7490", "#be185d", "#854d0e"];
  var STEP_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 25000,
                    50000, 100000, 200000, 250000, 500000, 1000000];
  var MAX_TABLE_ROWS = 500;

  function css(name, fallback) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  function colour(n) {  // web.css's --series-N: the same colour as the run's swatch, light or dark
    return css("--series-" + (n % FALLBACK.length), FALLBACK[n % FALLBACK.length]);
  }

  function number(v) {
    if (v === null || v === undefined) { return ""; }
    var a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(2) : String(+v.toPrecision(4));
  }

  // x: sorted steps; columns: one array of values (or null) per series, aligned with x
  function align(seriesPoints) {
    var steps = new Set();
    seriesPoints.forEach(function (points) { points.forEach(function (p) { steps.add(p[0]); }); });
    var x = Array.from(steps).sort(function (a, b) { return a - b; });
    var at = new Map(x.map(function (s, i) { return [s, i]; }));
    var columns = seriesPoints.map(function (points) {
      var col = new Array(x.length).fill(null);
      points.forEach(function (p) { col[at.get(p[0])] = p[1]; });
      return col;
    });
    return [x].concat(columns);
  }

  // A chart in `box`: spec = {title, y (the y axis's title), series: [{label, color, dash, points}], log}
  function Chart(box, spec) {
    this.box = box;
    this.spec = spec;
    this.data = null;
    this.plot = null;
    this.table = null;
    var self = this;
    window.addEventListener("resize", function () {
      if (self.plot) { self.plot.setSize(self.size()); }
    });
  }

  Chart.prototype.size = function () {
    return { width: Math.max(260, this.box.clientWidth), height: this.spec.height || 200 };
  };

  Chart.prototype.options = function () {
    var fg = css("--fg", "#111"), grid = css("--grid", "#e5e5e5"), box = this.box;
    var axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    return Object.assign(this.size(), {
      scales: { x: { time: false }, y: { distr: this.spec.log ? 3 : 1 } },
      legend: { live: false },  // the series' names, not "--" for a value under no cursor
      axes: [
        Object.assign({}, axis, { label: "step", incrs: STEP_INCRS, values: function (u, splits) {
          var shown = splits.map(function (v) { return Number.isInteger(v) ? String(v) : ""; });
          box.dataset.steps = shown.join(" ").trim();  // the step labels drawn (tests read them)
          return shown;
        } }),
        Object.assign({}, axis, { label: this.spec.y, size: 64,
          values: function (u, splits) { return splits.map(number); } }),
      ],
      series: [{ label: "step" }].concat(this.spec.series.map(function (s) {
        return { label: s.label, stroke: s.color, width: 2, dash: s.dash ? [6, 4] : undefined, spanGaps: true,
                 points: { show: s.points === true ? true : undefined }, value: function (u, v) { return number(v); } };
      })),
    });
  };

  Chart.prototype.set = function (data) {
    if (this.spec.log) {  // a log scale takes no zero or negative value
      data = [data[0]].concat(data.slice(1).map(function (col) {
        return col.map(function (v) { return v !== null && v > 0 ? v : null; });
      }));
    }
    this.data = data;
    if (this.plot === null) {
      this.box.textContent = "";
      this.plot = new uPlot(this.options(), data, this.box);
      var canvas = this.plot.root.querySelector("canvas");
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", this.spec.title + " by step: " + this.spec.series.map(function (s) {
        return s.label; }).join(", ") + ". The points are in the table below the chart.");
      this.box.dataset.axes = this.plot.axes.map(function (a) { return a.label; }).join("|");  // drawn on the canvas
      var legend = this.plot.root.querySelector(".u-legend");
      if (legend) { legend.setAttribute("role", "presentation"); }
    } else {
      this.plot.setData(data);
    }
    this.box.dataset.points = String(data[0].length);
    this.box.dataset.series = String(this.spec.series.length);
    this.box.dataset.lastStep = data[0].length ? String(data[0][data[0].length - 1]) : "";
    if (this.table) { this.table.refresh(); }
  };

  Chart.prototype.rebuild = function (spec, redraw) {  // the log scale toggled; a series added
    this.spec = spec;
    if (this.plot) { this.plot.destroy(); this.plot = null; }
    if (this.data && redraw !== false) { this.set(this.data); }
  };

  // The points as a table under `chart`, inside a <details> (built when opened, kept current while open)
  function PointsTable(details, chart) {
    this.details = details;
    this.chart = chart;
    chart.table = this;
    var self = this;
    details.addEventListener("toggle", function () { self.refresh(); });
  }

  PointsTable.prototype.refresh = function () {
    if (!this.details.open || !this.chart.data) { return; }
    var data = this.chart.data, spec = this.chart.spec, n = data[0].length;
    var every = Math.max(1, Math.ceil(n / MAX_TABLE_ROWS));
    var table = document.createElement("table");
    var caption = table.createCaption();
    caption.textContent = spec.title + " by step" + (every > 1 ? " (every " + every + "th logged step, and the last)" : "");
    var head = table.createTHead().insertRow();
    ["step"].concat(spec.series.map(function (s) { return s.label; })).forEach(function (label) {
      var th = document.createElement("th");
      th.scope = "col";
      th.textContent = label;
      head.appendChild(th);
    });
    var body = table.createTBody();
    for (var i = 0; i < n; i++) {
      if (i % every !== 0 && i !== n - 1) { continue; }
      var row = body.insertRow();
      var th = document.createElement("th");
      th.scope = "row";
      th.textContent = String(data[0][i]);
      row.appendChild(th);
      for (var c = 1; c < data.length; c++) { row.insertCell().textContent = number(data[c][i]); }
    }
    var holder = this.details.querySelector(".points-table");
    holder.replaceChildren(table);
  };

  function figure(parent, id, title) {
    var fig = document.createElement("figure");
    fig.className = "metric";
    var cap = document.createElement("figcaption");
    cap.textContent = title;
    var box = document.createElement("div");
    box.className = "chart";
    if (id) { box.id = id; }
    var details = document.createElement("details");
    details.className = "points";
    var summary = document.createElement("summary");
    summary.textContent = "The points as a table";
    var holder = document.createElement("div");
    holder.className = "points-table scroll";
    holder.tabIndex = 0;  // it scrolls: keyboard users reach it too
    holder.setAttribute("role", "region");
    holder.setAttribute("aria-label", "The " + title.toLowerCase() + " points");
    details.append(summary, holder);
    fig.append(cap, box, details);
    parent.appendChild(fig);
    return { box: box, details: details };
  }

  // ---- the job page: one chart a metric, from the points the live feed sends (job.js re-sends them as events)
  function jobPage(holder) {
    var specs = JSON.parse(document.getElementById("metric-charts").textContent);
    var byStep = new Map();
    var charts = new Map();  // spec id -> Chart
    var pending = false;

    function draw() {
      pending = false;
      var steps = Array.from(byStep.keys()).sort(function (a, b) { return a - b; });
      specs.forEach(function (spec) {
        var series = spec.series.filter(function (s) {  // only what was logged: no legend for a missing series
          return steps.some(function (step) { return byStep.get(step)[s[0]] !== undefined; });
        });
        if (!series.length) { return; }
        var columns = series.map(function (s) {
          return steps.map(function (step) { var v = byStep.get(step)[s[0]]; return v === undefined ? null : v; });
        });
        var keep = steps.map(function (_, i) { return columns.some(function (col) { return col[i] !== null; }); });
        var drawn = { title: spec.title, y: spec.y, series: series.map(function (s) {
          var n = spec.series.indexOf(s);
          return { key: s[0], label: s[1], color: colour(n), dash: n > 0, points: s[0].indexOf("eval_") === 0 };
        }) };
        var chart = charts.get(spec.id);
        if (!chart) {
          var placeholder = document.getElementById(spec.id);
          var made = placeholder ? { box: placeholder, details: placeholder.parentNode.querySelector("details.points") }
                                 : figure(holder, spec.id, spec.title);
          chart = new Chart(made.box, drawn);
          new PointsTable(made.details, chart);
          charts.set(spec.id, chart);
        } else if (chart.spec.series.length !== drawn.series.length) {
          chart.rebuild(drawn, false);  // a series began (the first evaluation): drawn anew below
        }
        var x = steps.filter(function (_, i) { return keep[i]; });
        chart.set([x].concat(columns.map(function (col) { return col.filter(function (_, i) { return keep[i]; }); })));
      });
    }

    document.addEventListener("trainbot:reset", function () { byStep.clear(); });
    document.addEventListener("trainbot:points", function (e) {
      e.detail.forEach(function (p) {
        var at = byStep.get(p.step) || {};
        Object.keys(p).forEach(function (k) { if (k !== "step") { at[k] = p[k]; } });
        byStep.set(p.step, at);
      });
      if (!pending) { pending = true; requestAnimationFrame(draw); }
    });
  }

  // ---- the compare page: every run's loss (solid) and eval loss (dashed, with its points) on one chart
  function comparePage(box) {
    var runs = JSON.parse(document.getElementById("compare-data").textContent);
    var toggle = document.getElementById("log-scale");
    var series = [], points = [];
    runs.forEach(function (run, n) {
      [["loss", "loss", false], ["eval_loss", "eval loss", true]].forEach(function (k) {
        if (run[k[0]].length) {
          series.push({ label: "job " + run.id + " " + k[1], color: colour(n), dash: k[2], points: k[2] });
          points.push(run[k[0]]);
        }
      });
    });
    if (!series.length) { return; }
    var spec = { title: "Loss", y: "loss", series: series, log: toggle.checked, height: 320 };
    var chart = new Chart(box, spec);
    new PointsTable(document.getElementById("compare-points"), chart);
    chart.set(align(points));
    box.dataset.runs = String(runs.filter(function (r) { return r.loss.length || r.eval_loss.length; }).length);
    toggle.addEventListener("change", function () {
      chart.rebuild(Object.assign({}, spec, { log: toggle.checked }));
      box.dataset.log = String(toggle.checked);
    });
  }

  var jobCharts = document.getElementById("charts");
  if (jobCharts) { jobPage(jobCharts); }
  var compareChart = document.getElementById("compare-chart");
  if (compareChart) { comparePage(compareChart); }
})();
