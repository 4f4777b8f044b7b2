// jiesu: searchable pickers for units and categories. An <input data-picker="units|streets|
// categories"> keeps showing the name while a hidden field of the same name carries the code:
// type a name, part of it, pinyin initials (东华门 → dhm) or the code, and choose from the list
// (name big, code small, the parent muted). Typed text that was not chosen is sent as it is;
// the server finds the one unit or category it names, or says in Chinese why not. Without this
// script the input itself is sent, with the same answer. Bound by data attributes only (the
// content security policy allows no inline script and no eval).
(function () {
  "use strict";
  var URLS = {
    units: "/console/lookup/units?q=",
    streets: "/console/lookup/units?street=true&q=",
    categories: "/console/lookup/categories?q="
  };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text) e.textContent = text;
    return e;
  }

  function setup(input) {
    if (input.dataset.pickerReady) return;
    input.dataset.pickerReady = "1";
    var url = URLS[input.dataset.picker];
    if (!url || !input.name) return;
    // On a ticket's action form the server offers only the units that action may name
    // (提级: above the lead; 吹哨 and 提级: never the lead itself).
    var on = input.form && /\/console\/tickets\/(\d+)\/actions\/(\w+)/.exec(input.form.getAttribute("action") || "");
    if (on && input.dataset.picker === "units") {
      url = url.replace("?", "?ticket=" + on[1] + "&action=" + on[2] + "&");
    }
    var hidden = el("input");
    hidden.type = "hidden";
    hidden.name = input.name;
    hidden.value = input.dataset.code || input.value;
    input.removeAttribute("name");
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.after(hidden);
    var list = el("ul", "picker-list");
    list.id = (input.id || hidden.name.replace(/\W/g, "-")) + "-options";
    list.setAttribute("role", "listbox");
    list.hidden = true;
    input.setAttribute("aria-controls", list.id);
    hidden.after(list);
    var items = [], active = -1, timer = null, asked = "";

    function close() {
      list.hidden = true;
      input.setAttribute("aria-expanded", "false");
      active = -1;
    }
    function mark(i) {
      var rows = list.children;
      for (var k = 0; k < rows.length; k++) rows[k].classList.toggle("active", k === i);
      active = i;
      if (rows[i]) rows[i].scrollIntoView({block: "nearest"});
    }
    function choose(item) {
      input.value = item.name;
      hidden.value = item.code;
      close();
      input.dispatchEvent(new Event("change", {bubbles: true}));
    }
    function show(found) {
      items = found;
      list.textContent = "";
      if (!found.length) {
        list.appendChild(el("li", "picker-empty", "没有找到，可输入名称、拼音首字母或编码"));
      }
      found.forEach(function (item, i) {
        var li = el("li", "picker-item");
        li.setAttribute("role", "option");
        li.dataset.code = item.code;
        li.appendChild(el("span", "picker-name", item.name));
        li.appendChild(el("small", "code", item.code));
        if (item.context) li.appendChild(el("div", "picker-context muted", item.context));
        li.addEventListener("mousedown", function (e) {
          e.preventDefault();  // keep the focus: blur would close the list first
          choose(items[i]);
        });
        list.appendChild(li);
      });
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
      mark(found.length ? 0 : -1);
    }
    function ask() {
      var q = input.value.trim();
      if (!q) { close(); return; }
      asked = q;
      fetch(url + encodeURIComponent(q), {credentials: "same-origin", headers: {Accept: "application/json"}})
        .then(function (r) { return r.ok ? r.json() : {items: []}; })
        .then(function (data) { if (asked === q) show(data.items || []); })
        .catch(close);
    }
    input.addEventListener("input", function () {
      hidden.value = input.value;  // until something is chosen, the server reads the text
      clearTimeout(timer);
      timer = setTimeout(ask, 150);
    });
    input.addEventListener("keydown", function (e) {
      if (list.hidden) return;
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        var n = items.length;
        if (n) mark((active + (e.key === "ArrowDown" ? 1 : n - 1)) % n);
      } else if (e.key === "Enter" && !e.ctrlKey && !e.metaKey && items[active]) {
        e.preventDefault();
        choose(items[active]);
      } else if (e.key === "Escape") {
        close();
      }
    });
    input.addEventListener("blur", function () { setTimeout(close, 100); });
    // A form sent back with a code in the box (a refused form keeps what was sent): show the
    // name, keep the code.
    var typed = input.value.trim();
    if (typed && !input.dataset.code && /^[0-9A-Za-z._-]+$/.test(typed)) {
      fetch(url + encodeURIComponent(typed), {credentials: "same-origin", headers: {Accept: "application/json"}})
        .then(function (r) { return r.ok ? r.json() : {items: []}; })
        .then(function (data) {
          var hit = (data.items || [])[0];
          if (hit && hit.code === typed && input.value.trim() === typed) {
            input.value = hit.name;
            hidden.value = hit.code;
          }
        })
        .catch(function () {});
    }
  }

  function scan(root) {
    (root || document).querySelectorAll("input[data-picker]").forEach(setup);
  }
  document.addEventListener("DOMContentLoaded", function () { scan(document); });
  document.addEventListener("htmx:afterSwap", function (e) { scan(e.target); });
})();
