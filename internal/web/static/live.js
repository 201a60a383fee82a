// Live progress for the running page and a running scan's page: listens
// to /events (server-sent events) and moves the progress bars. No
// framework; served from this server only (the CSP allows no other).
"use strict";
(function () {
  var bars = document.querySelectorAll("progress.live");
  if (!bars.length || !window.EventSource) { return; }
  var es = new EventSource("/events");
  es.onmessage = function (ev) {
    var list;
    try { list = JSON.parse(ev.data) || []; } catch (e) { return; }
    list.forEach(function (p) {
      document.querySelectorAll('[data-scan="' + CSS.escape(p.id) + '"]').forEach(function (el) {
        if (el.tagName === "PROGRESS") {
          el.value = p.percent;
          el.textContent = Math.round(p.percent) + "%";
        } else if (el.classList.contains("pct")) {
          el.textContent = Math.round(p.percent) + "%";
        } else if (el.classList.contains("msg")) {
          el.textContent = p.message;
        }
      });
    });
  };
})();
