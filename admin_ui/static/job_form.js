// The job form: a preview stands for the values it was made from. Once any field
// changes, Submit is turned off (and says why) until the next preview, so what is
// submitted is always what was previewed. Without JavaScript the server's checks,
// the same as the preview's, still refuse a bad submission.
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
    form.addEventListener("input", changed, { once: true });
    form.addEventListener("change", changed, { once: true });
  });
})();
