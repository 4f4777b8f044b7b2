// jiesu: live deadline countdowns and keyboard shortcuts. No other script but htmx.
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
