// What every page shares: state changes told to screen readers (a polite live region), what an action said taken
// down once the job has moved on, and the jobs picked for a comparison kept across live updates of the table.
(function () {
  "use strict";
  var announcer = document.getElementById("announce");
  var MAX_TOLD = 3;

  function announce(text) {
    if (!announcer || !text) { return; }
    announcer.textContent = "";
    setTimeout(function () { announcer.textContent = text; }, 50);  // a changed text is read, not a repeated one
  }

  // ---- a job page: its state as the panel says it
  var shownState = (document.getElementById("state") || {}).textContent;

  function panelChanged() {
    var state = (document.getElementById("state") || {}).textContent;
    var job = (document.getElementById("live") || {}).dataset || {};
    if (state && state !== shownState) {
      announce("Job " + (job.job || "") + " is now " + state + ".");
      shownState = state;
    }
    document.querySelectorAll(".said[data-while]").forEach(function (said) {
      if (state && said.dataset.while !== state) { said.remove(); }  // "Stopping job…" is over once it stopped
    });
  }

  // ---- the jobs table: each row's state before and after a live update
  var rowStates = null;

  function states() {
    var found = new Map();
    document.querySelectorAll("#rows tr[id^='job-']").forEach(function (row) {
      var cell = row.querySelector("td.state");
      found.set(row.id.slice(4), cell ? cell.firstChild.textContent.trim() : "");
    });
    return found;
  }

  function rowsChanged() {
    var now = states(), told = [];
    if (rowStates !== null) {
      now.forEach(function (state, id) {
        var was = rowStates.get(id);
        if (was !== undefined && was !== state) { told.push("Job " + id + " is now " + state); }
      });
    }
    rowStates = now;
    if (told.length) {
      var more = told.length > MAX_TOLD ? " and " + (told.length - MAX_TOLD) + " more changed" : "";
      announce(told.slice(0, MAX_TOLD).join("; ") + more + ".");
    }
    keepPicks();
  }

  // ---- the jobs picked for a comparison
  var picked = new Set();
  var form = document.getElementById("compare-form");

  function keepPicks() {
    if (!form) { return; }
    document.querySelectorAll("input.pick").forEach(function (box) { box.checked = picked.has(box.value); });
    var count = document.getElementById("picked-count");
    var button = document.getElementById("compare-button");
    var min = Number(form.dataset.min), max = Number(form.dataset.max);
    if (count) { count.textContent = String(picked.size); }
    if (button) { button.setAttribute("aria-disabled", String(picked.size < min || picked.size > max)); }
    form.querySelectorAll("input[type=hidden][name=job]").forEach(function (e) { e.remove(); });
    picked.forEach(function (id) {  // picks whose rows left the page still count
      if (!document.querySelector("input.pick[value='" + id + "']")) {
        var keep = document.createElement("input");
        keep.type = "hidden"; keep.name = "job"; keep.value = id;
        form.appendChild(keep);
      }
    });
  }

  if (form) {
    document.querySelectorAll("input.pick:checked").forEach(function (box) { picked.add(box.value); });
    document.addEventListener("change", function (e) {
      if (!e.target.classList || !e.target.classList.contains("pick")) { return; }
      if (e.target.checked) { picked.add(e.target.value); } else { picked.delete(e.target.value); }
      keepPicks();
    });
    form.addEventListener("submit", function (e) {
      var min = Number(form.dataset.min), max = Number(form.dataset.max);
      if (picked.size < min || picked.size > max) {
        e.preventDefault();
        var hint = document.getElementById("compare-hint");
        hint.textContent = "Tick " + min + " to " + max + " jobs to compare (" + picked.size + " ticked).";
        announce(hint.textContent);
      }
    });
    keepPicks();
  }

  document.addEventListener("live:morphed", function (e) {  // live.js changed a job's panel or the table's rows
    if (e.detail.event === "parts") { panelChanged(); }
    if (e.detail.event === "rows") { rowsChanged(); }
  });
  if (document.getElementById("rows")) { rowStates = states(); }
})();
