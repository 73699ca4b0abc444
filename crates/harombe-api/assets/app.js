// harombe dashboard: a token login, twelve metric tiles, hourly trend charts (uPlot), the
// approvals queue and a live event stream over one WebSocket. Untrusted text is only ever
// set with textContent.
(function () {
  "use strict";
  var TOKEN_KEY = "harombe.token";
  var MAX_EVENTS = 200;
  var SERIES = ["events", "errors", "denials", "tool_calls"];
  var token = sessionStorage.getItem(TOKEN_KEY);
  var ws = null, retry = 0, charts = {}, stopped = false;

  function $(id) { return document.getElementById(id); }
  function el(tag, text, attrs) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  function api(path, opts) {
    opts = opts || {};
    opts.headers = Object.assign({ "Authorization": "Bearer " + token }, opts.headers || {});
    return fetch(path, opts).then(function (r) {
      if (r.status === 401) { logout("Your token was refused; sign in again."); throw new Error("unauthorized"); }
      return r.json().then(function (body) {
        if (!r.ok) throw new Error((body.error && body.error.message) || ("HTTP " + r.status));
        return body;
      });
    });
  }
  function fmtLatency(us) {
    if (us === null || us === undefined) return "–";
    return us >= 1000 ? (us / 1000).toFixed(1) + " ms" : Math.round(us) + " µs";
  }
  function fmtTime(t) { return t ? t.replace("T", " ").replace(/\.\d+/, "").replace("Z", "") : ""; }

  // --- login ---------------------------------------------------------------------------
  function showLogin(msg) {
    $("app").hidden = true; $("logout").hidden = true; $("login").hidden = false;
    var e = $("login-error");
    e.textContent = msg || ""; e.hidden = !msg;
    $("token-input").focus();
  }
  function logout(msg) {
    stopped = true; token = null; sessionStorage.removeItem(TOKEN_KEY);
    if (ws) { ws.close(); ws = null; }
    setStatus("offline");
    showLogin(msg);
  }
  $("login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var t = $("token-input").value.trim();
    fetch("/api/metrics", { headers: { "Authorization": "Bearer " + t } }).then(function (r) {
      if (!r.ok) { showLogin(r.status === 401 ? "Unknown token." : "Sign-in failed (HTTP " + r.status + ")."); return; }
      token = t; sessionStorage.setItem(TOKEN_KEY, t); $("token-input").value = "";
      start();
    }, function () { showLogin("The server cannot be reached."); });
  });
  $("logout").addEventListener("click", function () { logout(); });

  // --- metrics and trends --------------------------------------------------------------
  function renderMetrics(m) {
    document.querySelectorAll("[data-metric]").forEach(function (e) {
      var k = e.getAttribute("data-metric"), v = m[k];
      if (k === "threat_levels_24h") {
        e.textContent = "";
        ["none", "low", "medium", "high", "critical"].forEach(function (l) {
          var s = el("span", l + " " + (v ? v[l] : 0), { "class": "lvl", "data-threat": l });
          e.appendChild(s);
        });
      } else if (k.indexOf("latency") === 0) {
        e.textContent = fmtLatency(v);
      } else {
        e.textContent = v === undefined ? "–" : String(v);
      }
      e.setAttribute("data-value", v === null || v === undefined ? "" : JSON.stringify(v));
    });
  }
  function renderTrend(t) {
    SERIES.forEach(function (name) {
      var data = [t.hours, t[name]];
      var box = $("chart-" + name);
      box.setAttribute("data-points", String(t.hours.length));
      if (typeof uPlot === "undefined") return;
      if (charts[name]) { charts[name].setData(data); return; }
      charts[name] = new uPlot({
        width: Math.max(300, box.clientWidth - 10), height: 160,
        series: [{}, { label: name, stroke: name === "events" || name === "tool_calls" ? "#4aa3ff" : "#ff6b6b", fill: "rgba(74,163,255,0.08)" }],
        axes: [{ stroke: "#8a96a3" }, { stroke: "#8a96a3" }],
        legend: { show: false },
      }, data, box);
    });
  }

  // --- approvals -----------------------------------------------------------------------
  function renderApprovals(list) {
    var body = document.querySelector("#approvals tbody");
    body.textContent = "";
    list.forEach(function (a) {
      var tr = el("tr", null, { "data-approval-id": a.id, "data-agent": a.agent, "data-tool": a.tool });
      tr.appendChild(el("td", fmtTime(a.created)));
      tr.appendChild(el("td", a.agent));
      tr.appendChild(el("td", a.tool));
      tr.appendChild(el("td", (a.reasons || []).join("; ")));
      tr.appendChild(el("td", fmtTime(a.deadline)));
      var rc = el("td");
      rc.appendChild(el("input", null, { "type": "text", "maxlength": "1024", "data-reason-for": a.id, "aria-label": "reason" }));
      tr.appendChild(rc);
      var bc = el("td");
      ["approve", "deny"].forEach(function (action) {
        var b = el("button", action === "approve" ? "Approve" : "Deny",
          { "type": "button", "data-action": action, "data-approval-id": a.id });
        b.addEventListener("click", function () { decide(a.id, action, b); });
        bc.appendChild(b);
      });
      tr.appendChild(bc);
      body.appendChild(tr);
    });
    var c = $("approvals-count");
    c.textContent = String(list.length); c.setAttribute("data-count", String(list.length));
  }
  function decide(id, action, button) {
    var input = document.querySelector('input[data-reason-for="' + id + '"]');
    var reason = input && input.value.trim();
    var status = $("approval-status");
    button.disabled = true;
    api("/api/approvals/" + encodeURIComponent(id) + "/" + action, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(reason ? { reason: reason } : {}),
    }).then(function (a) {
      status.textContent = "Approval " + a.id + " " + a.state + ".";
      status.setAttribute("data-state", a.state); status.setAttribute("data-approval-id", a.id);
      var row = document.querySelector('#approvals tr[data-approval-id="' + id + '"]');
      if (row) row.remove();
    }, function (e) {
      status.textContent = e.message; status.setAttribute("data-state", "error");
      status.setAttribute("data-approval-id", id);
      button.disabled = false;
    });
  }

  // --- agents --------------------------------------------------------------------------
  function loadAgents() {
    api("/api/agents").then(function (r) {
      var ul = $("agents"); ul.textContent = "";
      (r.agents || []).forEach(function (a) {
        var li = el("li");
        var link = el("a", a.agent, { "href": "#agent/" + encodeURIComponent(a.agent), "data-agent": a.agent });
        link.addEventListener("click", function (ev) { ev.preventDefault(); showAgent(a.agent); });
        li.appendChild(link); ul.appendChild(li);
      });
    }, function () {});
  }
  function showAgent(name) {
    api("/api/agents/" + encodeURIComponent(name)).then(function (a) {
      var d = $("agent-detail"); d.hidden = false; d.setAttribute("data-agent", name);
      $("agent-detail-name").textContent = name;
      var body = $("agent-detail-body"); body.textContent = "";
      Object.keys(a).forEach(function (k) {
        var tr = el("tr", null, { "data-field": k });
        tr.appendChild(el("td", k));
        var v = a[k], td = el("td");
        if (v !== null && typeof v === "object") td.appendChild(el("pre", JSON.stringify(v, null, 2)));
        else td.textContent = String(v);
        tr.appendChild(td); body.appendChild(tr);
      });
    }, function (e) { $("agent-detail").hidden = false; $("agent-detail-body").textContent = e.message; });
  }

  // --- live events ---------------------------------------------------------------------
  function addEvent(e) {
    var body = document.querySelector("#events tbody");
    var tr = el("tr", null, { "data-seq": String(e.seq), "data-kind": e.kind, "data-outcome": e.outcome });
    [e.seq, fmtTime(e.timestamp), e.kind, e.outcome, e.agent || "", e.target || "", e.threat_level || ""]
      .forEach(function (v) { tr.appendChild(el("td", v)); });
    body.insertBefore(tr, body.firstChild);
    while (body.children.length > MAX_EVENTS) body.removeChild(body.lastChild);
  }
  function setStatus(s) { var e = $("ws-status"); e.textContent = s; e.setAttribute("data-state", s); }
  function connect() {
    if (stopped) return;
    setStatus("connecting");
    var proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(proto + "//" + location.host + "/api/ws");
    ws.onopen = function () { ws.send(JSON.stringify({ type: "auth", token: token })); };
    ws.onmessage = function (m) {
      var msg; try { msg = JSON.parse(m.data); } catch (_) { return; }
      if (msg.type === "snapshot") {
        retry = 0; setStatus("live");
        renderMetrics(msg.metrics); renderTrend(msg.trend); renderApprovals(msg.approvals || []);
      } else if (msg.type === "event") {
        addEvent(msg.event);
      } else if (msg.type === "error" && msg.error && msg.error.code === "unauthorized") {
        logout("Your token was refused; sign in again.");
      }
    };
    ws.onclose = function () {
      ws = null;
      if (stopped) return;
      setStatus("offline");
      retry = Math.min(retry + 1, 5);
      setTimeout(connect, 500 * retry);
    };
  }

  function start() {
    stopped = false;
    $("login").hidden = true; $("app").hidden = false; $("logout").hidden = false;
    api("/api/metrics").then(renderMetrics, function () {});
    api("/api/trends?hours=24").then(renderTrend, function () {});
    api("/api/events?limit=50").then(function (p) { p.events.slice().reverse().forEach(addEvent); }, function () {});
    loadAgents();
    setInterval(function () { if (!stopped) loadAgents(); }, 30000);
    connect();
  }

  if (token) start(); else showLogin();
})();
