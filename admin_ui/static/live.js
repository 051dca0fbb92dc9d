// Live parts of pages: elements with data-live-url are refreshed from that JSON
// endpoint every few seconds; data-live-field names the field to show, and a
// data-live-stop list of values ends the polling (a job that has finished).
(function () {
  "use strict";

  function refresh(element) {
    var url = element.getAttribute("data-live-url");
    var field = element.getAttribute("data-live-field");
    var stop = (element.getAttribute("data-live-stop") || "").split(",").filter(Boolean);
    var every = parseInt(element.getAttribute("data-live-every") || "3000", 10);
    function tick() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (body) {
          if (!body) { return; }
          var value = field ? body[field] : body;
          if (typeof value !== "string") { value = JSON.stringify(value); }
          if (element.textContent !== value) {
            element.textContent = value;
            if (element.getAttribute("data-live-scroll") === "end") {
              element.scrollTop = element.scrollHeight;
            }
          }
          if (stop.indexOf(value) >= 0 || (body.state && stop.indexOf(body.state) >= 0)) {
            if (element.getAttribute("data-live-reload") === "true") { window.location.reload(); }
            return;
          }
          window.setTimeout(tick, every);
        })
        .catch(function () { window.setTimeout(tick, every * 2); });
    }
    window.setTimeout(tick, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-url]").forEach(refresh);
  });
})();
