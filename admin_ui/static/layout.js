// Boxes that scroll sideways on a small screen (a wide table, a chart) take keyboard
// focus while they have more to show, so they can be scrolled with the arrow keys;
// once the screen is wide enough again they leave the tab order. Only boxes this
// script made focusable are changed back.
(function () {
  "use strict";

  var BOXES = "table, .table-wrap, .chart";

  function update() {
    document.querySelectorAll(BOXES).forEach(function (box) {
      var scrolls = /auto|scroll/.test(window.getComputedStyle(box).overflowX) &&
        box.scrollWidth > box.clientWidth + 1;
      var ours = box.hasAttribute("data-scroll-focus");
      if (scrolls && !box.hasAttribute("tabindex")) {
        box.setAttribute("tabindex", "0");
        box.setAttribute("data-scroll-focus", "");
      } else if (!scrolls && ours) {
        box.removeAttribute("tabindex");
        box.removeAttribute("data-scroll-focus");
      }
    });
  }

  document.addEventListener("DOMContentLoaded", update);
  window.addEventListener("resize", update);
})();
