// jiesu: the knowledge base on the call (the intake's 知识库 panel, knowledge/_panel.html).
// 用此条目答复 chooses 直接答复, fills its answer with the entry's text (the agent may still edit
// it) and links the entry (answer.entry), showing "已选用：KB-… 第 n 版 [取消]"; 报错 opens the
// entry's small report form. Bound by data attributes (no inline script: the content security
// policy allows only the app's own files). Without JavaScript the intake form works as before
// and answer.entry can be typed.
(function () {
  "use strict";
  var chosenText = ""; // the answer text the last chosen entry filled in

  function field(form, name) {
    return form ? form.querySelector('[name="' + name + '"]') : null;
  }

  function showChosen(form, hit) {
    var box = form.querySelector("[data-kb-chosen]");
    if (!box) return;
    box.textContent = "";
    if (!hit) {
      box.hidden = true;
      return;
    }
    box.appendChild(document.createTextNode(
      "已选用：" + hit.code + " 第 " + hit.version + " 版 《" + hit.title + "》 "));
    var cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "secondary";
    cancel.style.padding = "0 8px";
    cancel.setAttribute("data-kb-cancel", "");
    cancel.textContent = "取消";
    box.appendChild(cancel);
    box.hidden = false;
  }

  function choose(button) {
    var item = button.closest(".kb-hit");
    var form = button.form || document.getElementById("intake-form");
    if (!item || !form) return;
    var hit = {
      code: item.dataset.kbCode,
      version: item.dataset.kbVersion,
      title: item.dataset.kbTitle || "",
    };
    var source = item.querySelector(".kb-answer");
    var text = source ? source.textContent.trim() : "";
    var radio = form.querySelector('input[data-then-choice][value="answer"]');
    if (radio && !radio.checked) {
      radio.checked = true;
      radio.dispatchEvent(new Event("change", { bubbles: true }));
    }
    var answer = field(form, "answer.answer");
    var entry = field(form, "answer.entry");
    if (!answer || !entry) return;
    var typed = answer.value.trim();
    if (typed && typed !== chosenText && typed !== text &&
        !window.confirm("用条目的答复内容替换已填写的答复？")) {
      return;
    }
    answer.value = text;
    chosenText = text;
    entry.value = hit.code;
    showChosen(form, hit);
    document.querySelectorAll(".kb-hit [data-kb-use]").forEach(function (b) {
      b.textContent = b === button ? "已选用" : "用此条目答复";
    });
    answer.focus();
  }

  function cancel(button) {
    var form = button.closest("form");
    if (!form) return;
    var answer = field(form, "answer.answer");
    var entry = field(form, "answer.entry");
    if (entry) entry.value = "";
    if (answer && answer.value.trim() === chosenText) answer.value = "";
    chosenText = "";
    showChosen(form, null);
    document.querySelectorAll(".kb-hit [data-kb-use]").forEach(function (b) {
      b.textContent = "用此条目答复";
    });
    if (answer) answer.focus();
  }

  function toggleFlag(button) {
    var box = document.getElementById(button.getAttribute("aria-controls"));
    if (!box) return;
    box.hidden = !box.hidden;
    button.setAttribute("aria-expanded", box.hidden ? "false" : "true");
    var first = box.querySelector("select, textarea");
    if (!box.hidden && first) first.focus();
  }

  document.addEventListener("click", function (e) {
    if (!e.target.closest) return;
    var b = e.target.closest("button[data-kb-use]");
    if (b) return choose(b);
    b = e.target.closest("button[data-kb-cancel]");
    if (b) return cancel(b);
    b = e.target.closest("button[data-kb-flag]");
    if (b) return toggleFlag(b);
  });

  // A code typed (or cleared) by hand: the "已选用" line no longer describes it.
  document.addEventListener("input", function (e) {
    var entry = e.target;
    if (!entry.matches || !entry.matches("input[data-kb-entry]") || !entry.form) return;
    var box = entry.form.querySelector("[data-kb-chosen]");
    if (box && !box.hidden) {
      box.hidden = true;
      box.textContent = "";
      chosenText = "";
    }
  });
})();
