// Live parts of pages: elements with data-live-url are refreshed from that JSON
// endpoint every few seconds (data-live-every, in ms). Elements that name the same
// URL share one request per tick. data-live-field names the field an element shows:
// as text, or, with data-live-html, as markup the server rendered and escaped (the
// job page's timeline). A data-live-stop list of values ends the polling (a job that
// has finished); data-live-reload on any of its elements then reloads the page.
(function () {
  "use strict";

  function show(element, body) {
    var field = element.getAttribute("data-live-field");
    var value = field ? body[field] : body;
    if (value === undefined || value === null) { return; }
    if (typeof value !== "string") { value = JSON.stringify(value); }
    if (element.hasAttribute("data-live-html")) {
      // Compared with what the server last sent, not with innerHTML (which the
      // browser rewrites), so an unchanged timeline is left alone.
      if (element.getAttribute("data-live-last") !== value) {
        element.setAttribute("data-live-last", value);
        element.innerHTML = value;
      }
      return;
    }
    if (element.textContent !== value) {
      element.textContent = value;
      if (element.getAttribute("data-live-scroll") === "end") {
        element.scrollTop = element.scrollHeight;
      }
    }
  }

  function poll(url, elements) {
    var stop = [];
    var every = 3000;
    var reload = false;
    elements.forEach(function (element) {
      stop = stop.concat((element.getAttribute("data-live-stop") || "").split(",").filter(Boolean));
      every = Math.min(every, parseInt(element.getAttribute("data-live-every") || "3000", 10));
      reload = reload || element.getAttribute("data-live-reload") === "true";
    });
    function tick() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (body) {
          if (!body) { return; }
          elements.forEach(function (element) { show(element, body); });
          if (body.state && stop.indexOf(body.state) >= 0) {
            if (reload) { window.location.reload(); }
            return;
          }
          window.setTimeout(tick, every);
        })
        .catch(function () { window.setTimeout(tick, every * 2); });
    }
    window.setTimeout(tick, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var groups = {};
    document.querySelectorAll("[data-live-url]").forEach(function (element) {
      var url = element.getAttribute("data-live-url");
      (groups[url] = groups[url] || []).push(element);
    });
    Object.keys(groups).forEach(function (url) { poll(url, groups[url]); });
  });
})();
