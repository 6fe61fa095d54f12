// hookrelay status page: keeps the parts marked data-live current without a reload, and
// asks before a form marked data-confirm is sent. Without this script the page works,
// and is current as of its loading.
(function () {
  "use strict";
  var EVERY_MS = 3000;
  var busy = false;

  function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store",
                                  headers: { "x-hookrelay-live": "1" } })
      .then(function (resp) {
        if (resp.status === 401) { window.location.reload(); return null; }
        return resp.ok ? resp.text() : null;
      })
      .then(function (text) {
        if (text === null) return;
        var fresh = new DOMParser().parseFromString(text, "text/html");
        var parts = document.querySelectorAll("[data-live][id]");
        for (var i = 0; i < parts.length; i++) {
          var part = parts[i];
          var next = fresh.getElementById(part.id);
          if (!next || next.innerHTML === part.innerHTML) continue;
          // Never pull the element someone is using out from under them.
          if (part.contains(document.activeElement) && document.activeElement !== document.body) continue;
          var open = part.querySelectorAll("details[open]");
          var opened = {};
          for (var j = 0; j < open.length; j++) {
            var card = open[j].closest("[aria-labelledby]");
            if (card) opened[card.getAttribute("aria-labelledby")] = true;
          }
          part.innerHTML = next.innerHTML;
          for (var key in opened) {
            var again = part.querySelector("[aria-labelledby='" + key + "'] details");
            if (again) again.open = true;
          }
        }
      })
      .catch(function () { /* the next tick tries again */ })
      .then(function () { busy = false; });
  }

  document.addEventListener("submit", function (e) {
    var form = e.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) e.preventDefault();
  });
  document.addEventListener("visibilitychange", refresh);
  window.setInterval(refresh, EVERY_MS);
})();
