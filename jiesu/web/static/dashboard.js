/* 数据大屏: fills /console/dashboard from /console/dashboard/data?days=N and refreshes it every
   minute without reloading the page. ECharts comes from /static/vendor/echarts (no CDN).

   Names (units, categories, places) are typed by people. ECharts draws labels on a canvas (text,
   never markup), but a tooltip is HTML: every tooltip is a formatter function that passes each
   name through esc(), and text on the page goes in by textContent, never as markup. */
(function () {
  "use strict";

  var root = document.getElementById("dashboard");
  if (!root || typeof echarts === "undefined") return;

  var MAP_NAME = "jiesu-districts";
  var BLUE = "#2f6fc6", DARK = "#1d4f91", RED = "#c62828", AMBER = "#b26a00", GREY = "#9aa5b1";
  var HEAT = ["#fff1d6", "#f9c77e", "#f08a3c", "#c62828"];
  var PALETTE = ["#2f6fc6", "#26a69a", "#f2a33a", "#c62828", "#7e57c2", "#5c6bc0", "#8d6e63",
    "#43a047", "#ec407a", "#78909c", "#00acc1", "#fbc02d"];
  var state = {
    days: parseInt(root.dataset.days, 10) || 1,
    url: root.dataset.url,
    refresh: (parseInt(root.dataset.refresh, 10) || 60) * 1000,
    charts: {},
    data: null,
    loads: 0,
    mapReady: false,
    pending: null,
    district: null, // the district whose streets the heat view shows (city readers)
  };
  window.jiesuDashboard = state; // for people and tests: what is shown, how often it loaded

  function chart(name) {
    if (!state.charts[name]) {
      var el = root.querySelector('[data-chart="' + name + '"]');
      state.charts[name] = echarts.init(el, null, { renderer: "canvas" });
    }
    return state.charts[name];
  }

  function text(id, value) {
    var el = document.getElementById(id);
    if (el) el.textContent = value;
  }

  // What a tooltip shows is HTML: escape every string that goes into one.
  var ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  function esc(value) {
    return String(value == null ? "" : value).replace(/[&<>"']/g, function (c) { return ESCAPES[c]; });
  }

  // The tooltip of a bar chart: the category, then each series' value (as ECharts would, escaped).
  function axisTip(ps) {
    if (!ps.length) return "";
    return esc(ps[0].name) + ps.map(function (p) {
      return "<br>" + p.marker + (p.seriesName ? esc(p.seriesName) + "：" : "") + count(p.value);
    }).join("");
  }

  function count(n) {
    return n == null ? "—" : Number(n).toLocaleString("zh-CN");
  }

  function pct(v) {
    return v == null ? "—" : (v * 100).toFixed(1) + "%";
  }

  function delta(v) {
    if (v == null) return "上期无数据";
    if (v === 0) return "持平";
    return (v > 0 ? "▲ " : "▼ ") + Math.abs(v * 100).toFixed(1) + "%";
  }

  function empty(rows) {
    return !rows || !rows.length || rows.every(function (r) { return !r.n; });
  }

  function noData(isEmpty) {
    return isEmpty ? { text: "暂无数据", left: "center", top: "middle",
      textStyle: { color: GREY, fontSize: 13, fontWeight: "normal" } } : { show: false };
  }

  // ---- sections ----------------------------------------------------------------------------

  function headline(d) {
    var h = d.headline;
    var label = { 1: "今日诉求总量", 7: "近7日诉求总量", 30: "近30日诉求总量" }[d.days];
    text("fig-requests-label", label || "诉求总量");
    text("fig-requests", count(h.requests));
    text("fig-requests-change", "较上期 " + delta(h.change) + "（上期 " + count(h.previous) + "）");
    text("fig-today", count(h.today));
    ["response", "resolution", "satisfaction"].forEach(function (key) {
      var r = h.rates[key];
      text("fig-" + key, pct(r.value));
      text("fig-" + key + "-sub", r.denominator ? "样本 " + count(r.denominator) + " 件" : "暂无样本");
    });
    text("fig-overdue", count(h.overdue_open));
    text("fig-due-soon", "24小时内到期 " + count(h.due_soon));
    text("fig-warnings", count(h.warnings_open));
  }

  function areasTreemap(d) {
    var rows = d.areas.districts.map(function (x) {
      return { name: x.name, value: x.n, children: x.streets.map(function (s) {
        return { name: s.name, value: s.n };
      }) };
    });
    if (d.areas.unknown) rows.push({ name: "未定位", value: d.areas.unknown });
    var max = rows.reduce(function (m, r) { return Math.max(m, r.value); }, 0);
    return {
      title: noData(!rows.length),
      tooltip: { formatter: function (p) {
        return p.treePathInfo.slice(1).map(function (t) { return esc(t.name); }).join(" / ") +
          "：" + count(p.value) + " 件";
      } },
      series: [{
        type: "treemap", name: "全市", data: rows, roam: false, nodeClick: "zoomToNode",
        leafDepth: 1, breadcrumb: { show: true, bottom: 0 },
        top: 8, left: 4, right: 4, bottom: 30,
        visualMin: 0, visualMax: max || 1, visualDimension: 0,
        label: { show: true, color: "#1f2933",
          formatter: function (p) { return p.name + "\n" + count(p.value); } },
        upperLabel: { show: true, height: 20, color: "#1f2933" },
        // the colour of a district (and of a street within it) goes with its count: a heat view
        levels: [
          { color: HEAT, colorMappingBy: "value",
            itemStyle: { borderColor: "#fff", borderWidth: 2, gapWidth: 2 } },
          { color: HEAT, colorMappingBy: "value",
            itemStyle: { borderColor: "#fff", borderWidth: 1, gapWidth: 1 } },
          { itemStyle: { borderColor: "#fff" } },
        ],
      }],
    };
  }

  // One district's streets (街道、乡镇), ranked as tiles sized and coloured by their counts: the
  // street-level view of a district reader, or of the district clicked on the city's map or
  // treemap (streets have no boundaries in the pack, so tiles stand in for a street map).
  function selectedDistrict(d) {
    var rows = d.areas.districts;
    if (d.scope && rows.length === 1) return rows[0];
    if (!state.district) return null;
    return rows.filter(function (x) { return x.name === state.district; })[0] || null;
  }

  function streetsTreemap(x) {
    var rows = x.streets.map(function (s) { return { name: s.name, value: s.n }; });
    var max = rows.reduce(function (m, r) { return Math.max(m, r.value); }, 0);
    return {
      title: rows.length ? { text: x.name + " · 各街道（乡镇）诉求量", left: 4, top: 0,
        textStyle: { fontSize: 13, fontWeight: "normal", color: "#52606d" } } : noData(true),
      tooltip: { formatter: function (p) { return esc(x.name) + " / " + esc(p.name) + "：" + count(p.value) + " 件"; } },
      series: [{
        type: "treemap", name: x.name, data: rows, roam: false, nodeClick: false,
        breadcrumb: { show: false }, top: 26, left: 4, right: 4, bottom: 4,
        visualMin: 0, visualMax: max || 1, visualDimension: 0,
        label: { show: true, color: "#1f2933",
          formatter: function (p) { return p.name + "\n" + count(p.value); } },
        levels: [{ color: HEAT, colorMappingBy: "value",
          itemStyle: { borderColor: "#fff", borderWidth: 2, gapWidth: 2 } }],
      }],
    };
  }

  function areas(d) {
    var x = selectedDistrict(d);
    var back = document.getElementById("areas-back");
    if (back) back.hidden = !(x && !d.scope);
    if (x) return streetsTreemap(x);
    return d.map.available && state.mapReady ? areasMap(d) : areasTreemap(d);
  }

  function areasMap(d) {
    var rows = d.areas.districts.map(function (x) { return { name: x.name, value: x.n }; });
    var max = rows.reduce(function (m, r) { return Math.max(m, r.value); }, 0);
    return {
      tooltip: { trigger: "item", formatter: function (p) {
        return p.seriesType === "scatter" ? "诉求点位" : esc(p.name) + "：" + count(p.value || 0) + " 件";
      } },
      visualMap: { min: 0, max: max || 1, left: 8, bottom: 8, text: ["多", "少"], calculable: true,
        seriesIndex: 0, inRange: { color: HEAT } },
      geo: { map: MAP_NAME, roam: true, label: { show: true, fontSize: 10 },
        itemStyle: { borderColor: "#fff" } },
      series: [
        { type: "map", geoIndex: 0, name: "诉求量", data: rows },
        { type: "scatter", coordinateSystem: "geo", data: d.points, symbolSize: 3,
          itemStyle: { color: "rgba(29,79,145,0.55)" }, silent: true },
      ],
    };
  }

  function points(d) {
    var panel = document.getElementById("points-panel");
    var show = !d.map.available && d.points.length > 0;
    panel.hidden = !show;
    if (!show) return;
    chart("points").setOption({
      tooltip: { trigger: "item", formatter: function (p) {
        return "经度 " + esc(p.value[0]) + "，纬度 " + esc(p.value[1]);
      } },
      grid: { left: 56, right: 16, top: 16, bottom: 32 },
      xAxis: { type: "value", scale: true, name: "经度", splitLine: { show: false } },
      yAxis: { type: "value", scale: true, name: "纬度", splitLine: { show: false } },
      series: [{ type: "scatter", data: d.points, symbolSize: 4, large: true,
        itemStyle: { color: "rgba(198,40,40,0.35)" } }],
    }, true);
    chart("points").resize();
  }

  function pie(rows) {
    return {
      title: noData(empty(rows)),
      color: PALETTE,
      tooltip: { trigger: "item", formatter: function (p) {
        return p.marker + esc(p.name) + "：" + count(p.value) + " 件（" + esc(p.percent) + "%）";
      } },
      legend: { type: "scroll", bottom: 0 },
      series: [{ type: "pie", radius: ["30%", "52%"], center: ["50%", "45%"],
        minShowLabelAngle: 6, labelLayout: { hideOverlap: true },
        label: { formatter: "{b}\n{d}%", alignTo: "edge", edgeDistance: 6, fontSize: 11,
          lineHeight: 14 },
        labelLine: { length: 10, length2: 0, maxSurfaceAngle: 80 },
        data: rows.map(function (r) { return { name: r.name, value: r.n }; }) }],
    };
  }

  function bars(rows, color, horizontal) {
    var names = rows.map(function (r) { return r.name; });
    var values = rows.map(function (r) { return r.n; });
    var category = { type: "category", data: names, axisLabel: { interval: 0, fontSize: 11 } };
    var value = { type: "value", minInterval: 1 };
    if (horizontal) { category.inverse = true; }
    return {
      title: noData(empty(rows)),
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, formatter: axisTip },
      grid: { left: horizontal ? 110 : 40, right: 24, top: 16, bottom: horizontal ? 24 : 40 },
      xAxis: horizontal ? value : Object.assign(category, { axisLabel: { interval: 0, rotate: 30, fontSize: 11 } }),
      yAxis: horizontal ? category : value,
      series: [{ type: "bar", data: values, itemStyle: { color: color }, barMaxWidth: 28,
        label: { show: true, position: horizontal ? "right" : "top", fontSize: 11 } }],
    };
  }

  function items(d) {
    var rows = d.items;
    chart("items").setOption({
      title: noData(!rows.length),
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, formatter: axisTip },
      legend: { data: ["本期", "上期"], bottom: 0 },
      grid: { left: 110, right: 24, top: 8, bottom: 32 },
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", inverse: true, axisLabel: { fontSize: 11 },
        data: rows.map(function (r) { return r.name; }) },
      series: [
        { name: "本期", type: "bar", data: rows.map(function (r) { return r.n; }),
          itemStyle: { color: BLUE }, barMaxWidth: 14 },
        { name: "上期", type: "bar", data: rows.map(function (r) { return r.previous; }),
          itemStyle: { color: "#b8c7dc" }, barMaxWidth: 14 },
      ],
    }, true);
    var body = document.querySelector("#items-table tbody");
    body.textContent = "";
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      var cells = [r.top_name ? r.name + "（" + r.top_name + "）" : r.name, count(r.n),
        count(r.previous), delta(r.change)];
      cells.forEach(function (value, i) {
        var td = document.createElement("td");
        td.textContent = value;
        if (i) td.className = "num";
        if (i === 3 && r.change != null) td.className += r.change > 0 ? " up" : r.change < 0 ? " down" : "";
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function words(d) {
    // 高频词: the problems the period's requests raise (text only: textContent, never markup)
    var body = document.querySelector("#words-table tbody");
    if (!body) return;
    body.textContent = "";
    (d.words || []).forEach(function (r) {
      var tr = document.createElement("tr");
      [r.name, count(r.n), pct(r.share)].forEach(function (value, i) {
        var td = document.createElement("td");
        td.textContent = value;
        if (i) td.className = "num";
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function trend(d) {
    var t = d.trend, last = t.days.length - 1, p = t.partial;
    // today is not over: its point is drawn apart (dashed from yesterday, hollow, labelled
    // 今日（截至 HH:MM）) so that a partial day never reads as a plunge
    var partial = !!(p && t.days[last] === p.day);
    function axisDay(day) { return partial && day === p.day ? "今日" : day.slice(5); }
    var whole = t.counts.map(function (n, i) { return partial && i === last ? "-" : n; });
    var series = [{ name: "本期", type: "line", smooth: true, data: whole, symbolSize: 4,
      itemStyle: { color: BLUE }, areaStyle: { color: "rgba(47,111,198,0.08)" },
      markArea: d.days < t.days.length ? { silent: true, itemStyle: { color: "rgba(242,163,58,0.12)" },
        data: [[{ xAxis: axisDay(d.period.start) }, { xAxis: axisDay(d.period.end) }]] } : undefined }];
    var legend = ["本期"];
    if (partial) {
      series.push({ name: p.label, type: "line", symbol: "emptyCircle", symbolSize: 7,
        data: t.counts.map(function (n, i) { return i >= last - 1 ? n : "-"; }),
        lineStyle: { type: "dashed", color: BLUE, opacity: 0.6 },
        itemStyle: { color: BLUE, opacity: 0.7 },
        label: { show: true, position: "left", distance: 8, color: "#52606d", fontSize: 11,
          formatter: function (q) { return q.dataIndex === last ? p.label : ""; } } });
      legend.push(p.label);
    }
    if (t.last_year) {
      series.push({ name: "去年同期", type: "line", smooth: true, data: t.last_year, symbolSize: 3,
        lineStyle: { type: "dashed" }, itemStyle: { color: GREY } });
      legend.push("去年同期");
    }
    chart("trend").setOption({
      tooltip: { trigger: "axis", formatter: function (ps) {
        var i = ps[0].dataIndex;
        return ps.filter(function (q) {
          return q.value !== "-" && q.value != null && !(partial && q.seriesIndex === 1 && i !== last);
        }).map(function (q) {
          var day = q.seriesName === "去年同期" ? t.last_year_days[i] : t.days[i];
          if (partial && q.seriesIndex === 1) day = p.label;
          return q.marker + esc(q.seriesName) + " " + esc(day) + "：" + count(q.value) + " 件";
        }).join("<br>");
      } },
      legend: { data: legend, top: 0 },
      grid: { left: 48, right: 24, top: 32, bottom: 28 },
      xAxis: { type: "category", boundaryGap: false,
        data: t.days.map(axisDay) },
      yAxis: { type: "value", minInterval: 1 },
      series: series,
    }, true);
  }

  function alerts(d) {
    var overdue = d.alerts.overdue_by_district.slice(0, 10);
    var warnings = d.alerts.warnings_by_kind;
    chart("alerts").setOption({
      title: [{ text: "在办超期（按区）", left: "2%", top: 0, textStyle: { fontSize: 12 } },
        { text: "待处置预警（按类型）", left: "52%", top: 0, textStyle: { fontSize: 12 } },
        empty(overdue) ? { text: "暂无超期", left: "24%", top: "middle", textAlign: "center",
          textStyle: { color: GREY, fontSize: 13, fontWeight: "normal" } } : { show: false },
        empty(warnings) ? { text: "暂无待处置预警", left: "74%", top: "middle", textAlign: "center",
          textStyle: { color: GREY, fontSize: 13, fontWeight: "normal" } } : { show: false }],
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, formatter: axisTip },
      grid: [{ left: "2%", width: "44%", top: 28, bottom: 8, containLabel: true },
        { left: "52%", width: "44%", top: 28, bottom: 8, containLabel: true }],
      xAxis: [{ type: "value", gridIndex: 0, minInterval: 1 },
        { type: "value", gridIndex: 1, minInterval: 1 }],
      yAxis: [{ type: "category", gridIndex: 0, inverse: true,
        data: overdue.map(function (r) { return r.name; }) },
        { type: "category", gridIndex: 1, inverse: true,
          data: warnings.map(function (r) { return r.name; }) }],
      series: [
        { name: "超期", type: "bar", xAxisIndex: 0, yAxisIndex: 0, itemStyle: { color: RED },
          data: overdue.map(function (r) { return r.n; }), barMaxWidth: 16,
          label: { show: true, position: "right" } },
        { name: "预警", type: "bar", xAxisIndex: 1, yAxisIndex: 1, itemStyle: { color: AMBER },
          data: warnings.map(function (r) { return r.n; }), barMaxWidth: 16,
          label: { show: true, position: "right" } },
      ],
    }, true);
  }

  function render(d) {
    headline(d);
    chart("areas").setOption(areas(d), true);
    points(d);
    chart("type").setOption(pie(d.distribution.type), true);
    chart("channel").setOption(pie(d.distribution.channel), true);
    chart("top").setOption(bars(d.distribution.top.slice(0, 12), DARK, true), true);
    items(d);
    words(d);
    trend(d);
    chart("seven").setOption(bars(d.seven_haves, "#26a69a", false), true);
    chart("five").setOption(bars(d.five_qualities, "#7e57c2", false), true);
    alerts(d);
  }

  // ---- loading -----------------------------------------------------------------------------

  function status(message, bad) {
    var el = document.getElementById("dash-status");
    el.textContent = message;
    el.classList.toggle("dash-error", !!bad);
  }

  function json(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        var type = r.headers.get("content-type") || "";
        if (!r.ok || type.indexOf("application/json") !== 0) {
          var error = new Error(r.redirected || r.status === 401 ? "login" : "http " + r.status);
          throw error;
        }
        return r.json();
      });
  }

  function ensureMap(d) {
    if (!d.map.available || state.mapReady) return Promise.resolve();
    return json(d.map.url).then(function (geo) {
      if (geo.features && geo.features.length) {
        echarts.registerMap(MAP_NAME, geo);
        state.mapReady = true;
      }
    }).catch(function () { /* the treemap stands in */ });
  }

  function load() {
    var days = state.days;
    status("正在更新…");
    var request = json(state.url + "?days=" + days).then(function (d) {
      return ensureMap(d).then(function () { return d; });
    }).then(function (d) {
      if (request !== state.pending || days !== state.days) return; // a newer one is on its way
      state.data = d;
      state.loads += 1;
      render(d);
      status("数据更新于 " + d.generated_at.slice(11, 19) + " · 每分钟自动刷新");
    }).catch(function (e) {
      if (request !== state.pending) return;
      status(e.message === "login" ? "登录已过期，请刷新页面重新登录" : "数据加载失败，稍后自动重试", true);
    });
    state.pending = request;
    return request;
  }

  root.querySelectorAll(".dash-periods button").forEach(function (button) {
    button.addEventListener("click", function () {
      state.days = parseInt(button.dataset.days, 10);
      root.querySelectorAll(".dash-periods button").forEach(function (b) {
        var on = b === button;
        b.classList.toggle("secondary", !on);
        b.setAttribute("aria-pressed", on ? "true" : "false");
      });
      if (window.history && history.replaceState) {
        history.replaceState(null, "", "?days=" + state.days);
      }
      load();
    });
  });

  // a district clicked on the city's map (or its tile in the treemap) opens its streets
  chart("areas").on("click", function (p) {
    var d = state.data;
    if (!d || d.scope || state.district) return;
    var name = p.seriesType === "map" ? p.name
      : (p.seriesType === "treemap" && p.treePathInfo && p.treePathInfo.length === 2 ? p.name : null);
    if (!name || !d.areas.districts.some(function (x) { return x.name === name; })) return;
    state.district = name;
    chart("areas").setOption(areas(d), true);
  });
  var areasBack = document.getElementById("areas-back");
  if (areasBack) areasBack.addEventListener("click", function () {
    state.district = null;
    if (state.data) chart("areas").setOption(areas(state.data), true);
  });

  window.addEventListener("resize", function () {
    Object.keys(state.charts).forEach(function (k) { state.charts[k].resize(); });
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) load();
  });
  setInterval(function () { if (!document.hidden) load(); }, state.refresh);
  load();
})();
