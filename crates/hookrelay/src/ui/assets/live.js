// hookrelay status page: keeps the parts marked data-live current without a reload, and
// asks before a form marked data-confirm is sent. Without this script the page works,
// and is current as of its loading.
(function () {
  "use strict";
  var EVERY_MS = 3000;
  var busy = false;
  var paused = false;
  // A page of older deliveries (?before=) stays as it is.
  var still = /[?&]before=/.test(window.location.search);
  var TIME = /<time[^>]*>[^<]*<\/time>/g;
  // Each part's HTML as the server last sent it: what the page did to it since (an open
  // <details>) is no change from the server.
  var served = {};

  function refresh() {
    if (busy || paused || still || document.hidden) return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (resp) {
        if (resp.status === 401) { window.location.reload(); return null; }
        return resp.ok ? resp.text() : null;
      })
      .then(function (text) {
        if (text === null) return;
        var fresh = new DOMParser().parseFromString(text, "text/html");
        var parts = document.querySelectorAll("[data-live][id]");
        for (var i = 0; i < parts.length; i++) {
          update(parts[i], fresh.getElementById(parts[i].id));
        }
      })
      .catch(function () { /* the next tick tries again */ })
      .then(function () { busy = false; });
  }

  function update(part, next) {
    if (!next) return;
    var before = served[part.id];
    if (before === undefined) before = served[part.id] = part.innerHTML;
    if (next.innerHTML === before) return;
    if (next.innerHTML.replace(TIME, "") === before.replace(TIME, "")) {
      // Only ages changed: set their text, and leave everything else where it is (a
      // screen reader's place, a selection, an open <details>).
      var now = part.querySelectorAll("time");
      var then = next.querySelectorAll("time");
      for (var t = 0; t < now.length && t < then.length; t++) {
        if (now[t].textContent !== then[t].textContent) now[t].textContent = then[t].textContent;
      }
      served[part.id] = next.innerHTML;
      return;
    }
    // Never pull the element someone is using out from under them.
    if (part.contains(document.activeElement) && document.activeElement !== document.body) return;
    var opened = {};
    var open = part.querySelectorAll("details[open]");
    for (var j = 0; j < open.length; j++) {
      var card = open[j].closest("[aria-labelledby]");
      if (card) opened[card.getAttribute("aria-labelledby")] = true;
    }
    part.innerHTML = next.innerHTML;
    served[part.id] = next.innerHTML;
    for (var key in opened) {
      var again = part.querySelector("[aria-labelledby='" + key + "'] details");
      if (again) again.open = true;
    }
  }

  function control() {
    var place = document.getElementById("live-control");
    if (!place || still) return;
    var button = document.createElement("button");
    button.type = "button";
    button.className = "quiet";
    button.setAttribute("aria-pressed", "false");
    button.textContent = "Pause live updates";
    var state = document.createElement("span");
    state.textContent = "Live: updates every 3 s. ";
    button.addEventListener("click", function () {
      paused = !paused;
      button.setAttribute("aria-pressed", paused ? "true" : "false");
      state.textContent = paused ? "Live updates paused. " : "Live: updates every 3 s. ";
      if (!paused) refresh();
    });
    place.appendChild(state);
    place.appendChild(button);
  }

  function announce() {
    // A notice present at load is set again so that screen readers announce it.
    var notice = document.getElementById("notice");
    if (!notice || !notice.innerHTML.trim()) return;
    var html = notice.innerHTML;
    notice.innerHTML = "";
    window.setTimeout(function () { notice.innerHTML = html; }, 150);
  }

  document.addEventListener("submit", function (e) {
    var form = e.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) e.preventDefault();
  });
  document.addEventListener("visibilitychange", refresh);
  document.addEventListener("DOMContentLoaded", function () {
    var parts = document.querySelectorAll("[data-live][id]");
    for (var i = 0; i < parts.length; i++) served[parts[i].id] = parts[i].innerHTML;
    control();
    announce();
  });
  window.setInterval(refresh, EVERY_MS);
})();
