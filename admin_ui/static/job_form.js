// The job form: a preview stands for the values it was made from. Once any field
// changes, Submit is turned off (and says why) until the next preview, so what is
// submitted is always what was previewed. Without JavaScript the server's checks,
// the same as the preview's, still refuse a bad submission. A field typed into
// before this script ran (a slow load) already differs from the value the page
// was rendered with, so that counts as a change too.
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("form[data-job-form]");
    var submit = form && form.querySelector("button[data-submit]");
    var stale = document.getElementById("submit-stale");
    if (!submit || !stale) { return; }
    function changed() {
      submit.disabled = true;
      submit.classList.remove("primary");
      submit.setAttribute("aria-describedby", "submit-stale");
      stale.hidden = false;
      var preview = form.querySelector("button[value=preview]");
      if (preview) { preview.classList.add("primary"); }
    }
    function differsFromRendered(field) {
      if (field.type === "checkbox" || field.type === "radio") {
        return field.checked !== field.defaultChecked;
      }
      if (field.tagName === "SELECT") {
        return Array.prototype.some.call(field.options, function (option) {
          return option.selected !== option.defaultSelected;
        });
      }
      return "defaultValue" in field && field.value !== field.defaultValue;
    }
    if (Array.prototype.some.call(form.elements, differsFromRendered)) {
      changed();
      return;
    }
    form.addEventListener("input", changed, { once: true });
    form.addEventListener("change", changed, { once: true });
  });
})();
