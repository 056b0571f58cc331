// The job page's followed log, fed by live.js (`live:points`, `live:log` on #live): each message carries only what
// the page lacks, or `reset` with a fresh start (another run's file). The metrics' points go on to the charts
// (charts.js) as `trainbot:points` events, after a `trainbot:reset` where the points start over.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var logBox = document.getElementById("log");
  var MAX_LOG_LINES = 2000;

  function tell(name, detail) {
    document.dispatchEvent(new CustomEvent(name, { detail: detail }));
  }

  live.addEventListener("live:points", function (e) {
    if (e.detail.reset) { tell("trainbot:reset", null); }
    if (e.detail.points.length) { tell("trainbot:points", e.detail.points); }
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
