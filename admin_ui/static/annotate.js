// The annotator's item page (templates/annotate/item.html): keys 1-9 pick a label
// (single-label and image items: the answer is sent at once), toggle it (multi-label)
// or mark the selected text with it (text spans); Enter sends a multi-label or span
// answer; S skips. The seconds the item was on screen go in a hidden field.
(function () {
  "use strict";

  function codePoints(text) {
    // Offsets count characters as the server does, not UTF-16 units.
    return Array.from(text).length;
  }

  function spanMarker(form, text, input, list) {
    var spans = [];

    function show() {
      input.value = spans.length ? JSON.stringify(spans) : "";
      list.textContent = "";
      spans.forEach(function (span, index) {
        var item = document.createElement("li");
        item.setAttribute("data-span-start", span.start);
        item.setAttribute("data-span-end", span.end);
        item.setAttribute("data-span-label", span.label);
        var chars = Array.from(text.textContent).slice(span.start, span.end).join("");
        item.appendChild(document.createTextNode(span.label + ": \u201c" + chars + "\u201d "));
        var remove = document.createElement("button");
        remove.type = "button";
        remove.className = "link";
        remove.textContent = "remove";
        remove.addEventListener("click", function () {
          spans.splice(index, 1);
          show();
        });
        item.appendChild(remove);
        list.appendChild(item);
      });
    }

    return function mark(label) {
      var selection = window.getSelection();
      if (!selection || selection.rangeCount === 0 || selection.isCollapsed) { return; }
      var range = selection.getRangeAt(0);
      if (!text.contains(range.startContainer) || !text.contains(range.endContainer)) { return; }
      var before = document.createRange();
      before.selectNodeContents(text);
      before.setEnd(range.startContainer, range.startOffset);
      var start = codePoints(before.toString());
      var end = start + codePoints(range.toString());
      if (end > start) {
        spans.push({ start: start, end: end, label: label });
        show();
      }
      selection.removeAllRanges();
    };
  }

  function send(form) {
    if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("annotate-form");
    if (!form) { return; }
    var shown = performance.now();
    var kind = form.getAttribute("data-annotate-kind");
    var seconds = document.getElementById("annotate-seconds");
    form.addEventListener("submit", function () {
      seconds.value = ((performance.now() - shown) / 1000).toFixed(3);
    });
    var mark = null;
    if (kind === "text_spans") {
      mark = spanMarker(
        form,
        document.getElementById("annotate-text"),
        document.getElementById("annotate-spans"),
        document.getElementById("annotate-span-list")
      );
      form.querySelectorAll("button[data-annotate-label]").forEach(function (button) {
        button.addEventListener("click", function () {
          mark(button.getAttribute("data-annotate-label"));
        });
      });
    }
    var skip = document.getElementById("annotate-skip-form");

    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) { return; }
      var target = event.target;
      if (target && /^(TEXTAREA|SELECT)$/.test(target.tagName)) { return; }
      if (target && target.tagName === "INPUT" && target.type !== "checkbox") { return; }
      if (event.key === "Enter") {
        if (kind === "multi_label" || kind === "text_spans") {
          event.preventDefault();
          send(form);
        }
        return;
      }
      if ((event.key === "s" || event.key === "S") && skip) {
        event.preventDefault();
        skip.submit();
        return;
      }
      if (!/^[1-9]$/.test(event.key)) { return; }
      var control = form.querySelector('[data-annotate-key="' + event.key + '"]');
      if (!control) { return; }
      event.preventDefault();
      if (kind === "multi_label") {
        control.checked = !control.checked;
      } else if (kind === "text_spans") {
        mark(control.getAttribute("data-annotate-label"));
      } else {
        control.click();
      }
    });
    // Keys pressed before this point would be lost: say when they are heard.
    form.setAttribute("data-annotate-ready", "true");
  });
})();
