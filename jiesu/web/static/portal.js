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
      if (files[i].size > bytes) wrong = "第 " + (i + 1) + " 张照片超过 2 MB，请压缩后再上传";
    }
    if (wrong) { photos.value = ""; hint.textContent = wrong; hint.classList.add("hint-error"); }
  });
})();
