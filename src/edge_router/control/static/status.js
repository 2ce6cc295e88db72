// edge-router status page. No build step, no third-party code. Every value from the router is
// rendered as text (textContent / createElement / createElementNS), never as HTML.
"use strict";
(function () {
  var STORE = "edge-router.admin-key";
  var SVG = "http://www.w3.org/2000/svg";
  var WINDOWS = [["1m", 1], ["5m", 5], ["1h", 60]];
  var timer = null;
  var $ = function (id) { return document.getElementById(id); };

  function key() { return sessionStorage.getItem(STORE); }

  function el(tag, cls) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    for (var i = 2; i < arguments.length; i++) {
      var kid = arguments[i];
      if (kid === null || kid === undefined) kid = "\u2014";
      node.append(typeof kid === "object" ? kid : String(kid));
    }
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, String(attrs[name])); });
    return node;
  }

  function replace(parent, kids) { parent.replaceChildren.apply(parent, kids); }

  function banner(text) { var b = $("banner"); b.textContent = text || ""; b.hidden = !text; }

  function say(id, text, bad) { var m = $(id); m.textContent = text; m.className = bad ? "msg err" : "msg"; }

  function api(method, path, body) {
    var headers = { "X-Admin-Key": key() || "" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, {
      method: method, headers: headers, cache: "no-store", credentials: "omit",
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (resp) {
      return resp.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        return { ok: resp.ok, status: resp.status, data: data };
      });
    });
  }

  function failure(r) {
    var m = r.data && r.data.message ? r.data.message : "";
    return "HTTP " + r.status + (m ? ": " + m : "");
  }

  function showLogin(message) {
    $("login").hidden = false; $("dash").hidden = true; $("signout").hidden = true;
    say("login-msg", message || "", !!message);
    if (timer) { clearInterval(timer); timer = null; }
  }

  function showDash() {
    $("login").hidden = true; $("dash").hidden = false; $("signout").hidden = false;
    if (!timer) timer = setInterval(refresh, 3000);
    refresh();
  }

  function refresh() {
    if (!key()) return showLogin();
    api("GET", "/admin/status").then(function (r) {
      banner("");
      if (r.status === 401 || r.status === 403) {
        sessionStorage.removeItem(STORE);
        return showLogin("The admin key was refused (" + failure(r) + ").");
      }
      if (!r.ok || !r.data) return banner("The router answered " + failure(r));
      render(r.data);
    }, function () {
      banner("Cannot reach the router; retrying every 3 s.");
    });
  }

  // keep keyboard focus on a control across re-renders (its data-focus names it)
  function rerender(parent, kids) {
    var active = document.activeElement;
    var focus = active && parent.contains(active) ? active.getAttribute("data-focus") : null;
    replace(parent, kids);
    if (focus) {
      var again = Array.prototype.find.call(parent.querySelectorAll("[data-focus]"), function (n) {
        return n.getAttribute("data-focus") === focus;
      });
      if (again) again.focus();
    }
  }

  function fact(dl, name, value) { dl.push(el("dt", "", name), el("dd", "", value)); }

  function pct(n) { return typeof n === "number" ? (n * 100).toFixed(1) + " %" : null; }

  function ms(n) { return typeof n === "number" ? n + " ms" : null; }

  function render(data) {
    $("updated").textContent = new Date().toLocaleTimeString();
    var c = data.config || {}, facts = [];
    fact(facts, "Source", c.source); fact(facts, "Format", c.format);
    fact(facts, "Version", c.version); fact(facts, "Loaded at", c.loaded_at);
    if (c.fleet_version !== null && c.fleet_version !== undefined) {
      fact(facts, "Fleet signal", "version " + c.fleet_version + (c.fleet_version === c.version ? " (this instance serves it)" : " (this instance follows within seconds)"));
    }
    fact(facts, "Last error", c.last_error || "none");
    var cache = data.cache || {};
    fact(facts, "Response cache", (cache.entries || 0) + " entries, " + (cache.bytes || 0) + " bytes, hit rate " +
      pct(cache.hit_rate));
    replace($("config"), facts);
    renderTraffic(data.metrics || {});
    renderRoutes(data.routes || [], data.metrics || {});
    renderBackends(data.backends || []);
    renderErrors(data.recent_errors || []);
  }

  function renderErrors(errors) {
    var items = errors.map(function (e) {
      var when = new Date(e.time * 1000).toLocaleTimeString();
      return el("li", "", when + "  " + e.status + "  " + e.method + " " + e.path +
        (e.backend ? "  \u2192 " + e.backend : "") + (e.error ? "  " + e.error : ""));
    });
    replace($("errors"), items.length ? items : [el("li", "", "none recently")]);
  }

  function renderTraffic(metrics) {
    var rows = [["Requests", function (w) { return w.requests; }],
      ["Error rate (5xx)", function (w) { return w.requests ? pct(errors(w) / w.requests) : "0.0 %"; }],
      ["p50", function (w) { return ms(w.latency_ms && w.latency_ms.p50); }],
      ["p95", function (w) { return ms(w.latency_ms && w.latency_ms.p95); }],
      ["p99", function (w) { return ms(w.latency_ms && w.latency_ms.p99); }],
      ["Cache hit rate", function (w) { return pct(w.cache && w.cache.hit_rate); }],
      ["Rate-limited", function (w) { return w.rate_limited; }],
      ["Upstream errors", function (w) { return w.upstream_errors; }]];
    var head = el("tr", "", el("th", "", "Window"));
    WINDOWS.forEach(function (w) { var th = el("th", "", w[0]); th.scope = "col"; head.append(th); });
    var kids = [el("thead", "", head)], body = el("tbody", "");
    rows.forEach(function (row) {
      var th = el("th", "", row[0]); th.scope = "row";
      var tr = el("tr", "", th);
      WINDOWS.forEach(function (w) { tr.append(el("td", "", row[1](metrics[w[0]] || {}))); });
      body.append(tr);
    });
    kids.push(body);
    replace($("traffic"), kids);
  }

  function errors(w) {
    var n = 0, by = w.by_status || {};
    Object.keys(by).forEach(function (s) { if (Number(s) >= 500) n += by[s]; });
    return n;
  }

  // requests and 5xx per minute in each window, as bars: comparable across 1m, 5m and 1h
  function chart(prefix, metrics) {
    var per = WINDOWS.map(function (w) {
      var r = ((metrics[w[0]] || {}).by_route || {})[prefix] || { requests: 0, errors: 0 };
      return { name: w[0], req: r.requests / w[1], err: r.errors / w[1], raw: r };
    });
    var top = Math.max(1, Math.max.apply(null, per.map(function (p) { return p.req; })));
    var box = svg("svg", { viewBox: "0 0 240 70", width: 240, height: 70, role: "img" });
    var label = per.map(function (p) {
      return p.name + ": " + p.raw.requests + " requests, " + p.raw.errors + " errors";
    }).join("; ");
    box.setAttribute("aria-label", "Requests per minute for " + prefix + ". " + label);
    var title = svg("title"); title.textContent = label; box.append(title);
    per.forEach(function (p, i) {
      var x = 15 + i * 80, h = Math.round(50 * p.req / top), he = Math.round(50 * p.err / top);
      box.append(svg("rect", { x: x, y: 52 - h, width: 50, height: Math.max(h, 1), "class": "bar" }));
      if (he) box.append(svg("rect", { x: x, y: 52 - he, width: 50, height: he, "class": "bar-err" }));
      var t = svg("text", { x: x + 25, y: 66, "text-anchor": "middle", "class": "axis" });
      t.textContent = p.name + " " + (Math.round(p.req * 10) / 10) + "/min";
      box.append(t);
    });
    return box;
  }

  function renderRoutes(routes, metrics) {
    rerender($("routes"), routes.map(function (r) {
      var list = el("ol", "");
      (r.candidates || []).forEach(function (cand) {
        list.append(el("li", "", cand.backend + " \u2192 " + cand.url));
      });
      var card = el("article", "card", el("h3", "route-name", r.prefix),
        el("div", "muted", "Strategy: " + r.strategy + (r.outcome && r.outcome !== "proxied" ? " (" + r.outcome + ")" : "")));
      card.append(el("div", "", "Candidates in try order:"), list, chart(r.prefix, metrics));
      return card;
    }));
  }

  function renderBackends(backends) {
    rerender($("backends"), backends.map(function (b) {
      var facts = [];
      fact(facts, "Name", b.name); fact(facts, "URL", b.url);
      facts.push(el("dt", "", "Health"), el("dd", "", el("span", "badge health " + safeClass(b.health), b.health)));
      facts.push(el("dt", "", "Circuit"), el("dd", "", el("span", "badge circuit " + safeClass(b.circuit), b.circuit)));
      fact(facts, "Latency", ms(b.latency_ms)); fact(facts, "Last check", b.last_check);
      if (b.reason) fact(facts, "Reason", b.reason);
      var dl = el("dl", "facts"); replace(dl, facts);
      var reset = el("button", "", "Reset circuit");
      reset.type = "button";
      reset.setAttribute("data-focus", "reset:" + b.id);
      reset.setAttribute("aria-label", "Reset circuit of " + b.id);
      reset.addEventListener("click", function () {
        act("POST", "/admin/circuit-breaker-reset?backend=" + encodeURIComponent(b.id), undefined,
          function (d) { return "Circuit of " + d.backend + " is " + d.state + "."; });
      });
      var card = el("article", "card backend", el("h3", "backend-id", b.id), dl, reset);
      card.setAttribute("data-backend", b.id);
      return card;
    }));
  }

  function safeClass(v) { return ["healthy", "unhealthy", "unknown", "CLOSED", "OPEN", "HALF_OPEN"].indexOf(v) >= 0 ? v : ""; }

  function act(method, path, body, done) {
    say("action-msg", "Working\u2026");
    return api(method, path, body).then(function (r) {
      if (r.ok) say("action-msg", done(r.data || {})); else say("action-msg", "Refused: " + failure(r), true);
      refresh();
    }, function () { say("action-msg", "Cannot reach the router.", true); });
  }

  function init() {
    $("login-form").addEventListener("submit", function (e) {
      e.preventDefault();
      sessionStorage.setItem(STORE, $("key").value);
      $("key").value = "";
      showDash();
    });
    $("signout").addEventListener("click", function () {
      sessionStorage.removeItem(STORE);
      showLogin("Signed out.");
    });
    $("flush").addEventListener("click", function () {
      act("POST", "/admin/cache-flush", undefined, function (d) {
        return "Config read again from " + d.source + " (" + d.routes + " routes).";
      });
    });
    $("invalidate").addEventListener("submit", function (e) {
      e.preventDefault();
      act("POST", "/admin/cache-invalidate?prefix=" + encodeURIComponent($("prefix").value), undefined,
        function (d) { return d.invalidated + " cached answers dropped."; });
    });
    $("flip").addEventListener("submit", function (e) {
      e.preventDefault();
      act("POST", "/admin/flip", { app: $("flip-app").value, priority: $("flip-priority").value }, function (d) {
        return "Flipped " + d.app + " to " + d.priority + "; order: " + (d.order || []).join(", ") + ".";
      });
    });
    if (key()) showDash(); else showLogin();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
