// qoper8's dashboard. No library, no build step: it reads /v1/events with fetch() and a
// stream reader (EventSource cannot send the Authorization header), and draws what it reads.
// Text from the daemon (error messages, action types) only ever goes in through textContent.
"use strict";

(function () {
  const TOKEN_KEY = "qoper8-token";
  const WINDOW_SECONDS = 300; // the daemon keeps five minutes of points
  const MIN_WINDOW_SECONDS = 60; // a young daemon's charts span a minute, then grow to five
  const RETRY_MIN_MS = 1000;
  const RETRY_MAX_MS = 10000;
  const SVG = "http://www.w3.org/2000/svg";
  const TOTALS = ["submitted", "completed", "failed", "invalid", "timed_out", "died",
    "cancelled", "rejected", "recycled"];

  const state = { status: null, points: [], errors: [], retryMs: RETRY_MIN_MS, controller: null };

  const $ = (id) => document.getElementById(id);

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function seconds(value) {
    if (typeof value !== "number") return "–";
    if (value < 1) return (value * 1000).toFixed(1) + " ms";
    if (value < 120) return value.toFixed(1) + " s";
    if (value < 7200) return (value / 60).toFixed(1) + " min";
    return (value / 3600).toFixed(1) + " h";
  }

  function bytes(value) {
    if (typeof value !== "number") return "–";
    return (value / 1048576).toFixed(1) + " MiB";
  }

  function number(value) {
    return typeof value === "number" ? value.toLocaleString("en") : "–";
  }

  // ------------------------------------------------------------------ the stream

  function setConn(text) {
    $("conn").textContent = text;
  }

  function askToken(message) {
    const form = $("token-form");
    form.hidden = false;
    setConn(message);
    $("token-input").focus();
  }

  function connect() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { Accept: "text/event-stream" };
    if (token) headers.Authorization = "Bearer " + token;
    const controller = new AbortController();
    state.controller = controller;
    setConn("connecting…");
    fetch("/v1/events", { headers: headers, cache: "no-store", signal: controller.signal })
      .then((response) => {
        if (response.status === 401) {
          askToken(token ? "the token was refused" : "token needed");
          return null;
        }
        if (!response.ok || !response.body) {
          throw new Error("HTTP " + response.status);
        }
        $("token-form").hidden = true;
        setConn("live");
        state.retryMs = RETRY_MIN_MS;
        return read(response.body.getReader());
      })
      .then((ended) => {
        if (ended !== null) retry(ended === "bye" ? "the daemon is stopping" : "stream ended");
      })
      .catch((error) => {
        if (error.name !== "AbortError") retry(String(error.message || error));
      });
  }

  function retry(why) {
    const wait = state.retryMs;
    state.retryMs = Math.min(state.retryMs * 2, RETRY_MAX_MS);
    setConn(why + "; reconnecting in " + Math.round(wait / 1000) + " s");
    setTimeout(connect, wait);
  }

  async function read(reader) {
    const decoder = new TextDecoder();
    let buffer = "";
    let last = "";
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) return last;
      buffer += decoder.decode(chunk.value, { stream: true });
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
        const event = parse(block);
        if (event) {
          last = event.name;
          receive(event.name, event.data);
        }
      }
    }
  }

  function parse(block) {
    let name = "message";
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return null;
    return { name: name, data: JSON.parse(data.join("\n")) };
  }

  function receive(name, data) {
    if (name === "snapshot") {
      state.points = data.points || [];
      state.errors = data.errors || [];
    } else if (name === "update") {
      state.points = state.points.concat(data.points || []);
      state.errors = state.errors.concat(data.errors || []);
    } else if (name === "bye") {
      if (state.status) {
        $("state").textContent = data.reason === "upgraded" ? "upgrading" : "stopping";
      }
      return;
    } else {
      return;
    }
    state.points = state.points.slice(-WINDOW_SECONDS);
    state.errors = state.errors.slice(-50);
    try {
      render(data.status, state.points, state.errors);
    } catch (error) {
      console.error("qoper8 dashboard: cannot draw an event:", error); // a bug here, not the stream's
    }
  }

  // ------------------------------------------------------------------ drawing

  function render(status, points, errors) {
    state.status = status;
    renderHeader(status);
    renderCards(status, points);
    renderRoles(status);
    renderActors(status.actors || []);
    renderErrors(errors);
    drawCharts(points);
  }

  function renderHeader(s) {
    $("worker").textContent = s.worker || "";
    $("master").textContent = "master pid " + s.pid + " · qoper8 " + s.version +
      " · up " + seconds(s.uptime) + " · generation " + s.generation;
    const badge = $("state");
    let word = "ready";
    if (s.draining) word = "draining";
    else if (s.paused) word = "paused";
    else if (s.degraded) word = "degraded";
    badge.textContent = word;
    badge.className = "badge " + word;
  }

  function renderCards(s, points) {
    $("queue-length").textContent = number(s.queue_length);
    $("running").textContent = number(s.running);
    for (const name of TOTALS) {
      const node = $("total-" + name);
      if (!node) continue;
      node.textContent = number(s[name]);
      node.parentElement.classList.toggle("nonzero", s[name] > 0);
    }
    const last = points.length ? points[points.length - 1] : null;
    $("throughput").textContent = last ? last.throughput.toFixed(1) : "–";
    $("run-p99").textContent = s.run_time && s.run_time.p99 !== null ? seconds(s.run_time.p99) : "–";
    $("totals").textContent = TOTALS.map((n) => n.replace("_", " ") + " " + number(s[n])).join(" · ");
  }

  function renderRoles(s) {
    const byId = new Map((s.children || []).map((c) => [c.id, c]));
    const container = $("roles");
    container.replaceChildren();
    for (const role of s.roles || []) {
      const section = el("section", null, "role");
      section.id = "role-" + role.name;
      const title = el("h2", "role " + role.name);
      const range = role.max_size === null || role.max_size === undefined ? "" :
        " (autoscaling " + role.min_size + "–" + role.max_size + ")";
      const facts = el("span", " " + role.worker + " · target " + role.target_size + range + " · ", "muted");
      facts.append(el("span", number(role.queue_length), "role-queue"), " queued · ",
        el("span", number(role.running), "role-running"), " running" +
        (role.paused ? " · paused" : ""));
      title.append(facts);
      section.append(title);
      const table = el("table");
      const head = el("tr");
      for (const h of ["child", "pid", "gen", "state", "jobs done", "current job", "memory", "age"]) {
        head.append(el("th", h));
      }
      const thead = el("thead");
      thead.append(head);
      table.append(thead);
      const body = el("tbody");
      for (const id of role.children) {
        const c = byId.get(id);
        if (!c) continue;
        const row = el("tr", null, "child " + c.state);
        row.dataset.pid = c.pid === null ? "" : String(c.pid);
        row.dataset.id = String(c.id);
        row.append(el("td", c.id), el("td", c.pid === null ? "–" : c.pid), el("td", c.generation),
          el("td", c.state, "state"), el("td", number(c.jobs_done), "jobs"),
          el("td", c.current_job_age === null ? "" : seconds(c.current_job_age), "job-age"),
          el("td", bytes(c.memory_rss)), el("td", seconds(c.age)));
        body.append(row);
      }
      if (!body.children.length) {
        const row = el("tr", null, "empty");
        const cell = el("td", role.paused || s.paused ? "paused: no children (TTIN brings them back)" : "no children");
        cell.colSpan = 8;
        row.append(cell);
        body.append(row);
      }
      table.append(body);
      section.append(table);
      container.append(section);
    }
  }

  function renderActors(actors) {
    const section = $("actors");
    section.hidden = !actors.length;
    const body = $("actors-body");
    body.replaceChildren();
    for (const a of actors) {
      const row = el("tr", null, "actor");
      row.append(el("td", a.name), el("td", a.type), el("td", a.child ?? "–"),
        el("td", a.pid ?? "–"), el("td", a.state), el("td", number(a.restarts)),
        el("td", number(a.queued)), el("td", number(a.calls)));
      body.append(row);
    }
  }

  function renderErrors(errors) {
    const body = $("errors-body");
    body.replaceChildren();
    for (const e of errors.slice().reverse()) {
      const row = el("tr", null, "error");
      const when = new Date(e.time * 1000).toLocaleTimeString("en-GB");
      row.append(el("td", when), el("td", e.action_type || "–"), el("td", e.error_type, "type"),
        el("td", e.message, "message"));
      body.append(row);
    }
    if (!errors.length) {
      const row = el("tr", null, "empty");
      const cell = el("td", "none");
      cell.colSpan = 4;
      row.append(cell);
      body.append(row);
    }
  }

  // ------------------------------------------------------------------ charts (plain SVG)

  const W = 600;
  const H = 170;
  const PAD = { left: 44, right: 6, top: 8, bottom: 18 };

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (value <= step * power) return step * power;
    }
    return 10 * power;
  }

  function chart(node, points, lines) {
    node.replaceChildren();
    const now = points.length ? points[points.length - 1].time : Date.now() / 1000;
    const span = points.length
      ? Math.min(WINDOW_SECONDS, Math.max(MIN_WINDOW_SECONDS, now - points[0].time))
      : MIN_WINDOW_SECONDS;
    const start = now - span;
    let max = 0;
    for (const line of lines) {
      for (const p of points) {
        const v = p[line.key];
        if (typeof v === "number" && v > max) max = v;
      }
    }
    max = niceMax(max);
    const x = (t) => PAD.left + ((t - start) / span) * (W - PAD.left - PAD.right);
    const y = (v) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
    for (const f of [0, 0.5, 1]) {
      node.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(max * f), y2: y(max * f), class: "grid" }));
      node.append(svg("text", { x: PAD.left - 4, y: y(max * f) + 4, class: "axis", "text-anchor": "end" },
        String(+(max * f).toPrecision(3))));
    }
    const ago = span >= 120 ? Math.round(span / 60) + " min" : Math.round(span) + " s";
    node.append(svg("text", { x: PAD.left, y: H - 3, class: "axis" }, "−" + ago));
    node.append(svg("text", { x: W - PAD.right, y: H - 3, class: "axis", "text-anchor": "end" }, "now"));
    for (const line of lines) {
      const coords = [];
      for (const p of points) {
        const v = p[line.key];
        if (typeof v === "number" && p.time >= start) coords.push(x(p.time).toFixed(1) + "," + y(v).toFixed(1));
      }
      if (coords.length) node.append(svg("polyline", { points: coords.join(" "), class: "line " + line.cls }));
    }
  }

  function drawCharts(points) {
    chart($("chart-throughput"), points, [{ key: "throughput", cls: "throughput" }, { key: "errors", cls: "errors" }]);
    chart($("chart-latency"), points, [{ key: "run_p50_ms", cls: "p50" }, { key: "run_p99_ms", cls: "p99" },
      { key: "wait_p99_ms", cls: "wait" }]);
    chart($("chart-queue"), points, [{ key: "queue", cls: "queue" }, { key: "running", cls: "busy" }]);
  }

  // ------------------------------------------------------------------ start

  document.addEventListener("DOMContentLoaded", () => {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token-input").value.trim();
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
      $("token-input").value = "";
      if (state.controller) state.controller.abort();
      connect();
    });
    drawCharts([]);
    connect();
  });

  // For tests and the curious: draw a snapshot by hand (e.g. one with actors).
  window.qoper8Dashboard = { render: render, state: state };
})();
