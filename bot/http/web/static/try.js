// The job page's "Try it" box: POST the conversation, read the answer as Server-Sent Events while it is generated
// (bot/http/web/try_feed.py). Whatever the model says is set as text (textContent / text nodes), never as HTML.
(function () {
  "use strict";
  var box = document.getElementById("try");
  if (!box) { return; }
  var form = document.getElementById("try-form");
  var input = document.getElementById("try-question");
  var ask = document.getElementById("try-ask");
  var status = document.getElementById("try-status");
  var turns = document.getElementById("try-turns");
  var history = [];  // the conversation so far: {role, content}

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  function turnView(question) {
    var turn = el("div", "try-turn");
    turn.appendChild(el("p", "q", question === null ? "The recipe's check: who the model says it is" : "› " + question));
    var parts = {};  // "index/side" -> {pre, line}
    turn.answerPart = function (index, side, label, asked) {  // (not `part`: a DOM property of every element)
      var key = index + "/" + side;
      if (parts[key]) { return parts[key]; }
      var holder = turn;
      if (question === null) {  // the check: per question, the two models side by side
        var block = turn.querySelector('[data-index="' + index + '"]');
        if (!block) {
          block = el("div", "try-question");
          block.dataset.index = String(index);
          block.appendChild(el("p", "q", asked));
          block.appendChild(el("div", "try-sides"));
          turn.appendChild(block);
        }
        holder = el("div", "try-side");
        holder.dataset.side = side;
        holder.appendChild(el("p", "try-line", label));
        block.querySelector(".try-sides").appendChild(holder);
      }
      var pre = el("pre", "a");
      pre.dataset.index = String(index);
      pre.dataset.side = side;
      holder.appendChild(pre);
      var line = el("p", "try-line");
      holder.appendChild(line);
      parts[key] = { pre: pre, line: line };
      return parts[key];
    };
    turns.appendChild(turn);
    return turn;
  }

  function handle(turn, event, data) {
    if (event === "status") {
      status.textContent = data;
    } else if (event === "asking") {
      turn.answerPart(data.index, data.side, data.label, data.question);
    } else if (event === "token") {
      turn.answerPart(data.index, data.side, "", "").pre.append(data.text);
    } else if (event === "answer") {
      var part = turn.answerPart(data.index, data.side, "", "");
      part.pre.textContent = data.text;
      part.line.textContent = data.line;
      turn.lastAnswer = data.text;
    } else if (event === "done") {
      status.textContent = data;
      turn.dataset.done = "1";
    } else if (event === "error") {
      status.textContent = "⚠️ " + data;
      turn.dataset.error = "1";
    }
  }

  async function send(messages, question) {
    var turn = turnView(question);
    status.textContent = "asking…";
    ask.disabled = true;
    try {
      var reply = await fetch("/web/try/jobs/" + encodeURIComponent(box.dataset.job), {
        method: "POST", headers: { "Content-Type": "application/json" }, credentials: "same-origin",
        body: JSON.stringify({ csrf: box.dataset.csrf, messages: messages }),
      });
      if (!reply.ok) {
        var said = await reply.json().catch(function () { return { error: reply.statusText }; });
        handle(turn, "error", said.error || reply.statusText);
        return;
      }
      var reader = reply.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      for (;;) {
        var chunk = await reader.read();
        if (chunk.done) { break; }
        buffer += decoder.decode(chunk.value, { stream: true });
        var at;
        while ((at = buffer.indexOf("\n\n")) >= 0) {
          var message = buffer.slice(0, at);
          buffer = buffer.slice(at + 2);
          var event = "message", data = "";
          message.split("\n").forEach(function (line) {
            if (line.indexOf("event: ") === 0) { event = line.slice(7); }
            else if (line.indexOf("data: ") === 0) { data += line.slice(6); }
          });
          if (data) { handle(turn, event, JSON.parse(data)); }
        }
      }
      if (question !== null && turn.dataset.done) {
        history = messages.concat([{ role: "assistant", content: turn.lastAnswer || "" }]);
      }
    } catch (err) {
      handle(turn, "error", String(err));
    } finally {
      ask.disabled = false;
    }
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var question = input.value.trim();
    if (question) {
      input.value = "";
      send(history.concat([{ role: "user", content: question }]), question);
    } else {
      send([], null);
    }
  });
  document.getElementById("try-new").addEventListener("click", function () {
    history = [];
    turns.textContent = "";
    status.textContent = "";
  });
})();
