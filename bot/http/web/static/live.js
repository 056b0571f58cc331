// A page's live part (the element with data-live: the jobs table's body, or a job's page), kept current through
// the browser's one shared stream (live-hub.js). What changed is morphed into place: an open <details>, a text
// selection and the keyboard focus stay where they are. While the server is away the page says so.
(function () {
  "use strict";
  var box = document.querySelector("[data-live]");
  if (!box || !window.TrainbotLive) { return; }
  var spec = JSON.parse(box.getAttribute("data-live"));
  var vid = Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
  var loadedAt = Date.now(), lastAt = 0, state = "connecting", clock = null;
  var port = openHub();

  function openHub() {
    var script = document.querySelector("script[src*='/static/live-hub.js']");
    if (typeof SharedWorker === "function" && script) {
      try {
        return new SharedWorker(script.src, { name: "trainbot-live" }).port;
      } catch (e) { /* no shared worker here (a sandboxed page, a browser without them): one stream a tab */ }
    }
    var channel = new MessageChannel();
    window.TrainbotLive.startHub()(channel.port1);
    return channel.port2;
  }

  function watch() { port.postMessage({ type: "watch", vid: vid, spec: spec }); }

  port.onmessage = function (e) {
    var msg = e.data;
    if (msg.type === "msg") {
      apply(msg.event, msg.data);
      window.TrainbotLive.advance(spec, msg.event, msg.data);
      if (clock !== null) { tick(); }
    } else if (msg.type === "status") {
      if (state === "gone") { return; }
      state = msg.state;
      lastAt = msg.lastAt;
      showState();
    } else if (msg.type === "clock") {
      clock = msg.offset;
      tick();
    } else if (msg.type === "ping") {
      port.postMessage({ type: "pong", vids: [vid] });
    } else if (msg.type === "rewatch" && msg.vid === vid) {
      watch();
    }
  };
  watch();
  window.addEventListener("pagehide", function () { port.postMessage({ type: "unwatch", vid: vid }); });
  window.addEventListener("pageshow", function (e) { if (e.persisted) { watch(); } });

  // --- what a message changes ---------------------------------------------------------------------------------

  function parse(html) {
    var t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  function apply(event, data) {
    if (event === "rows") {
      var fresh = new Map();
      (data.set || []).forEach(function (s) {
        var old = document.getElementById(s[0]), neu = parse(s[2]);
        if (old) { morph(old, neu); } else { fresh.set(s[0], neu); }
      });
      if (data.order) { arrange(box, data.order, fresh); }
    } else if (event === "parts") {
      (data.set || []).forEach(function (s) {
        var old = document.getElementById(s[0]);
        if (old) { morph(old, parse(s[2])); }
      });
    } else if (event === "gone") {
      state = "gone";
      showState();
    } else {  // log, points: the job page's script draws them
      box.dispatchEvent(new CustomEvent("live:" + event, { detail: data }));
    }
    if (event === "rows" || event === "parts") {  // morphed: site.js tells screen readers what changed
      box.dispatchEvent(new CustomEvent("live:morphed", { bubbles: true, detail: { event: event } }));
    }
  }

  // Children of `parent` in the order of `keys` (element ids), moving only what is out of place.
  function arrange(parent, keys, fresh) {
    var cur = parent.firstElementChild;
    keys.forEach(function (key) {
      var el = fresh.get(key) || document.getElementById(key);
      if (!el) { return; }
      if (el === cur) { cur = cur.nextElementSibling; } else { parent.insertBefore(el, cur); }
    });
    while (cur) { var next = cur.nextElementSibling; cur.remove(); cur = next; }
  }

  // Make `old` look like `neu` by changing only what differs: the nodes stay, so do focus, selection and the
  // user's open/closed <details>; relative times (<time data-at>) keep the text this page writes.
  function morph(old, neu) {
    if (old.nodeType !== neu.nodeType || old.nodeName !== neu.nodeName) { old.replaceWith(neu); return; }
    if (old.nodeType !== 1) {
      if (old.nodeValue !== neu.nodeValue) { old.nodeValue = neu.nodeValue; }
      return;
    }
    var keepOpen = old.nodeName === "DETAILS";
    Array.from(neu.attributes).forEach(function (a) {
      if (!(keepOpen && a.name === "open") && old.getAttribute(a.name) !== a.value) { old.setAttribute(a.name, a.value); }
    });
    Array.from(old.attributes).forEach(function (a) {
      if (!(keepOpen && a.name === "open") && !neu.hasAttribute(a.name)) { old.removeAttribute(a.name); }
    });
    if (old.nodeName === "TIME" && old.hasAttribute("data-at")) { return; }
    var cur = old.firstChild;
    Array.from(neu.childNodes).forEach(function (kid) {
      var match = null;
      if (kid.nodeType === 1 && kid.id) {
        match = document.getElementById(kid.id);
        if (match && match.parentNode !== old) { match = null; }
      } else if (cur && cur.nodeType === kid.nodeType && cur.nodeName === kid.nodeName && !(cur.nodeType === 1 && cur.id)) {
        match = cur;
      }
      if (match === null) { old.insertBefore(kid, cur); return; }
      if (match === cur) { cur = cur.nextSibling; } else { old.insertBefore(match, cur); }
      morph(match, kid);
    });
    while (cur) { var next = cur.nextSibling; old.removeChild(cur); cur = next; }
  }

  // --- relative times, and whether the page is live --------------------------------------------------------

  function duration(s) {  // bot/words/texts.py duration()
    s = Math.max(0, Math.round(s));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return h ? h + "h " + two(m) + "m" : (m ? m + "m " + two(r) + "s" : r + "s");
  }

  function tick() {
    var now = (Date.now() + clock) / 1000;
    document.querySelectorAll("time[data-at]").forEach(function (t) {
      var text = duration(now - Number(t.getAttribute("data-at"))) + " ago";
      if (t.textContent !== text) { t.textContent = text; }
    });
  }
  setInterval(function () { if (clock !== null) { tick(); } }, 1000);

  var banner = null, bannerTimer = null;

  function showState() {
    document.documentElement.setAttribute("data-live-state", state);
    document.documentElement.classList.toggle("stale", state === "reconnecting" || state === "signedout");
    if (state === "live" || state === "connecting") {
      if (banner) { banner.hidden = true; banner.textContent = ""; }
      clearInterval(bannerTimer);
      bannerTimer = null;
      return;
    }
    if (!banner) {
      banner = document.createElement("div");
      banner.id = "live-status";
      banner.className = "live-status";
      banner.setAttribute("role", "status");
      document.querySelector("main").prepend(banner);
    }
    banner.hidden = false;
    if (state === "reconnecting") {
      banner.textContent = "reconnecting… ";
      var counter = document.createElement("span");
      counter.setAttribute("aria-hidden", "true");  // said once, not every second
      banner.append(counter);
      writeReconnecting();
      if (bannerTimer === null) { bannerTimer = setInterval(writeReconnecting, 1000); }
    } else {
      clearInterval(bannerTimer);
      bannerTimer = null;
      banner.textContent = state === "gone" ? "This job no longer exists. " : "Live updates stopped: your session ended. ";
      var link = document.createElement("a");
      link.href = state === "gone" ? "/" : "/signin?next=" + encodeURIComponent(location.pathname + location.search);
      link.textContent = state === "gone" ? "All jobs" : "Sign in again";
      banner.append(link);
    }
  }

  function writeReconnecting() {
    var since = (Date.now() - Math.max(loadedAt, lastAt)) / 1000;
    banner.lastChild.textContent = "(last update " + duration(since) + " ago)";
  }
})();
