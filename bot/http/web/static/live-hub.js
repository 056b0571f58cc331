// One live stream for all of this browser's trainbot tabs (bot/http/web/live.py says what it carries).
// Runs as a SharedWorker, or inside the page where the browser has none (then each tab has its own stream).
// A tab `watch`es its view with its cursor; the hub POSTs /web/live with every view's cursor, hands each message
// to its tab, moves that view's cursor on, and starts the stream again from the cursors (so nothing comes twice
// and nothing is missed) when a tab comes or goes, or when the connection drops or goes quiet.
(function (scope) {
  "use strict";
  var QUIET_MS = 15000;  // three keep-alives missed: the server is away
  var PING_MS = 20000, GONE_MS = 65000;  // a tab that answers no ping for this long was closed without a word

  // A view's cursor after one of its messages (the tab keeps its own copy the same way, to watch again).
  function advance(spec, event, data) {
    if (event === "rows") {
      var versions = new Map(spec.have);
      (data.set || []).forEach(function (s) { versions.set(s[0], s[1]); });
      var order = data.order || spec.have.map(function (h) { return h[0]; });
      spec.have = order.map(function (key) { return [key, versions.get(key) || ""]; });
    } else if (event === "parts") {
      (data.set || []).forEach(function (s) { spec.parts[s[0]] = s[1]; });
    } else if (event === "log" || event === "points") {
      spec[event] = { file: data.file, at: data.at };
    }
    return spec;
  }

  // The hub: its views, its ports (tabs) and its one stream; returns how a tab's port joins it.
  function startHub() {
    var views = new Map();  // view id -> {port, spec}
    var ports = new Map();  // port -> when it last answered
    var controller = null, state = "connecting", lastAt = 0, clock = null;
    var startTimer = null, retryTimer = null, failures = 0;

    function tell(port, msg) { try { port.postMessage(msg); } catch (e) { /* a closed tab */ } }
    function everyone(msg) { ports.forEach(function (_, port) { tell(port, msg); }); }
    function status() { return { type: "status", state: state, lastAt: lastAt }; }

    function setState(next) {
      if (next !== state) { state = next; everyone(status()); }
    }

    function soon() {  // views changed: a new stream with everyone's cursors (unless one is already due)
      if (retryTimer !== null) { return; }
      clearTimeout(startTimer);
      startTimer = setTimeout(connect, 30);
    }

    function retry() {
      clearTimeout(startTimer);
      if (retryTimer === null) {  // soon at first (a restart takes seconds), then every 5 s; signed out: every 30 s
        var most = state === "signedout" ? 30000 : 5000;
        var wait = Math.min(most, 500 * Math.pow(2, failures++)) * (0.8 + 0.4 * Math.random());
        retryTimer = setTimeout(function () { retryTimer = null; connect(); }, wait);
      }
    }

    function stop() {
      if (controller !== null) { var c = controller; controller = null; c.abort(); }
    }

    function connect() {
      stop();
      if (views.size === 0) { return; }
      var mine = new AbortController();
      controller = mine;
      var body = { views: {} };
      views.forEach(function (v, vid) { body.views[vid] = v.spec; });
      fetch("/web/live", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
                           signal: mine.signal, credentials: "same-origin", cache: "no-store" })
        .then(function (reply) {
          if (reply.status === 401) { setState("signedout"); throw new Error("signed out"); }
          if (!reply.ok) { throw new Error("HTTP " + reply.status); }
          return read(reply.body.getReader(), mine);
        })
        .catch(function () {
          if (controller !== mine) { return; }  // replaced or stopped on purpose
          controller = null;
          if (state !== "signedout") { setState("reconnecting"); }
          retry();
        });
    }

    function read(reader, mine) {
      var decoder = new TextDecoder(), buffer = "";
      function next() {
        return reader.read().then(function (r) {
          if (controller !== mine) { reader.cancel(); return; }
          if (r.done) { throw new Error("the stream ended"); }
          lastAt = Date.now();
          buffer += decoder.decode(r.value, { stream: true });
          var cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            dispatch(buffer.slice(0, cut));
            buffer = buffer.slice(cut + 2);
          }
          return next();
        });
      }
      return next();
    }

    function dispatch(block) {
      var event = "message", data = [];
      block.split("\n").forEach(function (line) {
        if (line.startsWith("event: ")) { event = line.slice(7); }
        else if (line.startsWith("data: ")) { data.push(line.slice(6)); }
      });
      if (data.length === 0) { return; }  // a keep-alive
      var msg = JSON.parse(data.join("\n"));
      if (event === "hello") {
        failures = 0;
        clock = msg.now * 1000 - Date.now();
        everyone({ type: "clock", offset: clock });
        setState("live");
        return;
      }
      var view = views.get(msg.view);
      if (!view) { return; }
      advance(view.spec, event, msg);
      tell(view.port, { type: "msg", vid: msg.view, event: event, data: msg });
      if (event === "gone") { views.delete(msg.view); }
    }

    function drop(port) {
      ports.delete(port);
      views.forEach(function (v, vid) { if (v.port === port) { views.delete(vid); } });
      soon();
    }

    function attach(port) {
      ports.set(port, Date.now());
      port.onmessage = function (e) {
        var msg = e.data;
        ports.set(port, Date.now());
        if (msg.type === "watch") {
          views.set(msg.vid, { port: port, spec: msg.spec });
          tell(port, status());
          if (clock !== null) { tell(port, { type: "clock", offset: clock }); }
          soon();
        } else if (msg.type === "unwatch") {
          if (views.delete(msg.vid)) { soon(); }
        } else if (msg.type === "pong") {
          msg.vids.forEach(function (vid) { if (!views.has(vid)) { tell(port, { type: "rewatch", vid: vid }); } });
        }
      };
    }

    setInterval(function () {
      var now = Date.now();
      ports.forEach(function (seen, port) {
        if (now - seen > GONE_MS) { drop(port); } else { tell(port, { type: "ping" }); }
      });
    }, PING_MS);

    setInterval(function () {  // a connection that went quiet (a network that vanished): start again
      if (controller !== null && state === "live" && Date.now() - lastAt > QUIET_MS) {
        stop();
        setState("reconnecting");
        retry();
      }
    }, 2000);

    return attach;
  }

  if (typeof scope.WorkerGlobalScope !== "undefined" && scope instanceof scope.WorkerGlobalScope) {
    var attach = startHub();
    scope.onconnect = function (e) { attach(e.ports[0]); };
  } else {
    scope.TrainbotLive = { advance: advance, startHub: startHub };
  }
})(self);
