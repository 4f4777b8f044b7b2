// jiesu: live deadline countdowns, keyboard shortcuts, the intake's choice of next step and the
// "back" links. No other script but htmx, and none inline: the content security policy allows
// only the app's own files, so behaviour is bound here by data attributes, never by onclick=.
(function () {
  "use strict";
  function text(seconds) {
    var late = seconds < 0, s = Math.abs(Math.floor(seconds));
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    var t = d ? d + "天" + h + "小时" : h ? h + "小时" + m + "分" : Math.max(m, 1) + "分钟";
    return (late ? "超期 " : "剩 ") + t;
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-due]").forEach(function (el) {
      var due = Date.parse(el.getAttribute("data-due"));
      if (isNaN(due) || el.hasAttribute("data-paused")) return;
      var left = (due - now) / 1000, label = el.querySelector(".left");
      if (label) label.textContent = text(left);
      if (left < 0 && !el.classList.contains("dl-over")) {
        el.classList.remove("dl-ok", "dl-mid", "dl-warn");
        el.classList.add("dl-over");
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 30000);
  });
  document.addEventListener("htmx:afterSwap", tick);
  // Intake: the chosen next step shows (and enables) only its own fields.
  document.addEventListener("change", function (e) {
    var choice = e.target;
    if (!choice.matches || !choice.matches("input[data-then-choice]")) return;
    document.querySelectorAll(".then-fields").forEach(function (el) {
      el.hidden = el.disabled = el.dataset.then !== choice.value;
    });
  });
  // Intake suggestions: "采用" takes a suggestion into its form field (and, for the lead unit,
  // chooses 直接派单 so its field shows); a change event refreshes the suggestions.
  document.addEventListener("click", function (e) {
    var b = e.target.closest ? e.target.closest("button[data-take]") : null;
    if (!b || !b.form) return;
    if (b.dataset.then) {
      var radio = b.form.querySelector('input[data-then-choice][value="' + b.dataset.then + '"]');
      if (radio && !radio.checked) {
        radio.checked = true;
        radio.dispatchEvent(new Event("change", { bubbles: true }));
      }
    }
    // By name only (form.elements also matches ids: a picker's box keeps the field's id).
    var field = b.form.querySelector('[name="' + b.dataset.take + '"]');
    if (!field) return;
    field.value = b.dataset.value;
    // A searchable picker (picker.js) shows the name and carries the code in a hidden field.
    var shown = field.type === "hidden" ? field.previousElementSibling : null;
    if (shown && shown.hasAttribute("data-picker")) {
      shown.value = b.dataset.label || b.dataset.value;
      shown.dataset.code = b.dataset.value;
      field = shown;
    }
    field.dispatchEvent(new Event("change", { bubbles: true }));
    b.textContent = "已采用";
  });
  // A "back" link goes back in history when there is one, else to its own address.
  document.addEventListener("click", function (e) {
    var link = e.target.closest ? e.target.closest("a[data-back]") : null;
    if (link && window.history.length > 1) {
      e.preventDefault();
      window.history.back();
    }
  });
  // Ctrl+Enter submits the form being typed in; "/" jumps to the search box.
  document.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && e.target.form) {
      e.preventDefault();
      e.target.form.requestSubmit();
    } else if (e.key === "/" && !/INPUT|TEXTAREA|SELECT/.test(e.target.tagName)) {
      var q = document.querySelector("[data-search]");
      if (q) { e.preventDefault(); q.focus(); }
    }
  });
})();
