// The portal's submit form: locate the citizen on request, check the photos before sending.
// A static file (no inline script: the content security policy allows only the app's own files).
(function () {
  "use strict";
  var button = document.getElementById("locate"), status = document.getElementById("locate-status");
  var lat = document.getElementById("lat"), lng = document.getElementById("lng");
  if (button && status && lat && lng) {
    button.addEventListener("click", function () {
      if (!navigator.geolocation) { status.textContent = "当前浏览器不支持定位，请填写地址"; return; }
      status.textContent = "正在定位…";
      navigator.geolocation.getCurrentPosition(function (p) {
        lat.value = p.coords.latitude.toFixed(6);
        lng.value = p.coords.longitude.toFixed(6);
        status.textContent = "已获取位置：北纬 " + lat.value + "，东经 " + lng.value;
      }, function () {
        status.textContent = "无法获取位置，请检查定位权限或直接填写地址";
      }, {enableHighAccuracy: true, timeout: 15000, maximumAge: 60000});
    });
  }
  var photos = document.getElementById("photos"), hint = document.getElementById("photos-hint");
  if (!photos || !hint) return;
  var limit = parseInt(photos.dataset.limit, 10) || 3, bytes = parseInt(photos.dataset.bytes, 10) || 2097152;
  photos.addEventListener("change", function () {
    var files = photos.files, wrong = "";
    if (files.length > limit) wrong = "最多上传 " + limit + " 张照片，请重新选择";
    for (var i = 0; i < files.length && !wrong; i++) {
      if (files[i].size > bytes) wrong = "第 " + (i + 1) + " 张照片超过 " + (photos.dataset.size || "2 MB") + "，请压缩后再上传";
    }
    if (wrong) { photos.value = ""; hint.textContent = wrong; hint.classList.add("hint-error"); }
  });
})();

// The draft of the submit form, kept in this tab's sessionStorage (gone when the tab closes):
// Back to a blank form fills it again, its form id included, so sending it again shows the ticket
// already made instead of making a second; after a ticket is made, the draft is marked sent and
// only Back brings it back (a new visit to the form starts a new draft).
(function () {
  "use strict";
  var KEY = "jiesu.portal.draft", FIELDS = ["request_type", "content", "title", "address", "lat",
    "lng", "name", "phone"];
  var store;
  try { store = window.sessionStorage; } catch (e) { return; }
  if (!store) return;
  function read() { try { return JSON.parse(store.getItem(KEY) || "null"); } catch (e) { return null; } }
  var sent = document.getElementById("sent-form");
  if (sent) {  // the done page: this draft has made its ticket
    var done = read();
    if (done && done.form_id === sent.dataset.formId) { done.sent = true; store.setItem(KEY, JSON.stringify(done)); }
    return;
  }
  var form = document.getElementById("submit-form");
  if (!form) return;
  var mode = form.dataset.draft, id = form.elements.form_id;
  var nav = window.performance && performance.getEntriesByType ? performance.getEntriesByType("navigation")[0] : null;
  var back = nav && nav.type === "back_forward";
  var draft = read();
  if (mode === "new" || (mode === "fresh" && draft && draft.sent && !back)) {
    store.removeItem(KEY);
  } else if (mode === "fresh" && draft && draft.form_id) {
    id.value = draft.form_id;
    FIELDS.forEach(function (name) {
      var el = form.elements[name];
      if (el && typeof draft[name] === "string" && draft[name] !== "") el.value = draft[name];
    });
    if (form.elements.confidential) form.elements.confidential.checked = !!draft.confidential;
    var status = document.getElementById("locate-status");
    if (status && draft.lat && draft.lng) status.textContent = "已获取位置：北纬 " + draft.lat + "，东经 " + draft.lng;
  }
  function save() {
    var now = read(), keep = {form_id: id.value, sent: !!(now && now.sent && now.form_id === id.value)};
    FIELDS.forEach(function (name) { var el = form.elements[name]; if (el) keep[name] = el.value; });
    keep.confidential = !!(form.elements.confidential && form.elements.confidential.checked);
    try { store.setItem(KEY, JSON.stringify(keep)); } catch (e) { /* storage full or off: no draft */ }
  }
  save();
  form.addEventListener("input", save);
  form.addEventListener("change", save);
  form.addEventListener("submit", save);
})();
