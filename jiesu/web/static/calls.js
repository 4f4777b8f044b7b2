// jiesu: the call centre's pop on the intake page. The agent's own calls arrive as Server-Sent
// Events (GET /console/calls/events, `event: call`); each fills the intake form with the
// caller's number and the call id (a hidden field the order keeps) and lists the caller's
// earlier orders, open ones first (on any other page of an agent's console, a banner links to
// the intake for the call). A draft is never replaced without asking: the agent may keep
// it and take the call later (填入此来电). The address becomes /console/intake?call=…, which the
// server draws the same way, so a reload keeps the call. No inline script (CSP): bound here.
(function () {
  "use strict";
  var pop, form, pending = null;

  function el(id) { return document.getElementById(id); }

  function hasDraft(call) {
    if (!form) return false;
    var phone = el("phone"), callId = el("call_id");
    if (callId && callId.value && callId.value !== call.call_id) return true;
    if (phone && phone.value.trim() && phone.value.replace(/\D/g, "") !== call.caller) return true;
    return ["name", "address", "title", "content", "category_code", "street"].some(function (id) {
      var box = el(id);
      return box && box.value.trim() !== "";
    });
  }

  function cell(row, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    if (text !== undefined) td.textContent = text;
    row.appendChild(td);
    return td;
  }

  // The caller's earlier orders as the server's history box draws them (console/_history.html).
  function showHistory(call) {
    var box = el("history-box");
    if (!box) return;
    box.textContent = "";
    var note = document.createElement("p");
    note.className = "muted";
    var open = call.history.filter(function (h) { return h.open; }).length;
    note.textContent = call.history.length
      ? "此号码的历史工单 " + call.history.length + " 件（未办结 " + open + " 件在前）："
      : "此号码没有历史工单。";
    box.appendChild(note);
    if (!call.history.length) return;
    var table = document.createElement("table");
    table.className = "list";
    table.id = "history";
    var body = document.createElement("tbody");
    call.history.forEach(function (h) {
      var row = document.createElement("tr");
      row.dataset.open = h.open ? "1" : "0";
      var link = document.createElement("a");
      link.href = "/console/tickets/" + h.id;
      link.target = "_blank";
      link.textContent = h.number;
      cell(row, undefined, "num").appendChild(link);
      cell(row, h.title);
      var chip = document.createElement("span");
      chip.className = "chip st-" + h.status;
      chip.textContent = h.status_name;
      cell(row).appendChild(chip);
      cell(row, h.created, "num");
      body.appendChild(row);
    });
    table.appendChild(body);
    box.appendChild(table);
  }

  function announce(call, waiting) {
    el("call-caller").textContent = call.caller;
    el("call-called").textContent = call.called;
    el("call-id").textContent = call.call_id;
    var button = el("call-fill");
    if (button) button.hidden = !waiting;
    pop.hidden = false;
  }

  // On any other page (the layout's banner): show the call with its link; nothing the agent
  // is typing here is touched.
  function elsewhere(call) {
    announce(call, false);
    el("call-open").href = "/console/intake?call=" + encodeURIComponent(call.call_id);
  }

  function fill(call) {
    var phone = el("phone"), channel = el("channel");
    el("call_id").value = call.call_id;
    if (phone) phone.value = call.caller;
    if (channel) channel.value = "phone";
    showHistory(call);
    announce(call, false);
    pending = null;
    if (window.history && window.history.replaceState) {
      window.history.replaceState(null, "", "/console/intake?call=" + encodeURIComponent(call.call_id));
    }
    var name = el("name");
    if (name) name.focus();
  }

  function arrive(call) {
    if (!hasDraft(call)) { fill(call); return; }
    var replace = window.confirm(
      "来电 " + call.caller + "：正在填写的受理单尚未提交。\n" +
      "确定：放弃当前内容，受理这通来电；取消：保留当前内容，稍后点“填入此来电”。"
    );
    if (replace) {
      window.location.assign("/console/intake?call=" + encodeURIComponent(call.call_id));
      return;
    }
    pending = call;
    announce(call, true);
  }

  document.addEventListener("DOMContentLoaded", function () {
    pop = el("call-pop");
    form = el("intake-form");
    if (!pop || !window.EventSource || !pop.dataset.callsEvents) return;
    if (form) el("call-fill").addEventListener("click", function () {
      if (!pending) return;
      if (hasDraft(pending)) {
        window.location.assign("/console/intake?call=" + encodeURIComponent(pending.call_id));
      } else {
        fill(pending);
      }
    });
    var url = pop.dataset.callsEvents + "?after=" + encodeURIComponent(pop.dataset.callsAfter || "0");
    var source = new EventSource(url);
    source.addEventListener("call", function (e) {
      var call;
      try { call = JSON.parse(e.data); } catch (err) { return; }
      pop.dataset.callsAfter = String(call.id);
      if (form) arrive(call); else elsewhere(call);
    });
    source.addEventListener("open", function () { pop.dataset.listening = "1"; });
    window.addEventListener("pagehide", function () { source.close(); });
  });
})();
