// The job page's followed log, fed by the same SSE connection htmx opened for the panel; the metrics' points go on
// to the charts (charts.js) as `trainbot:points` events (`trainbot:reset` when the feed starts over).
(function () {
  "use strict";
  var live = document.getElementById("live");
  var logBox = document.getElementById("log");
  var MAX_LOG_LINES = 2000;

  function tell(name, detail) {
    document.dispatchEvent(new CustomEvent(name, { detail: detail }));
  }

  function listen(source) {
    source.addEventListener("reset", function () {
      tell("trainbot:reset", null);
      logBox.textContent = "";
    });
    source.addEventListener("points", function (e) {
      tell("trainbot:points", JSON.parse(e.data));
    });
    source.addEventListener("log", function (e) {
      var follow = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
      logBox.append(JSON.parse(e.data).join("\n") + "\n");  // text, never HTML
      var lines = logBox.textContent.split("\n");
      if (lines.length > MAX_LOG_LINES) { logBox.textContent = lines.slice(-MAX_LOG_LINES).join("\n"); }
      if (follow) { logBox.scrollTop = logBox.scrollHeight; }
    });
    source.addEventListener("gone", function () { source.close(); });
  }

  document.body.addEventListener("htmx:sseOpen", function (e) {
    if (e.target === live) { listen(e.detail.source); }
  });
})();
