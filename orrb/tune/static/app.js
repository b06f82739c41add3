// orrb tune: the page. Plain JavaScript, no build step, nothing fetched from elsewhere.
// It talks to the app over one WebSocket (see orrb/tune/app.py, class Connection).
"use strict";

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
};

// What tests and the latency benchmark read: frames shown, and the time from each property
// change (sent) to the first grid that includes it being decoded on the page.
window.tuneStats = { frames: 0, frameSeq: -1, latencies: [], errors: 0,
  pending: () => Object.keys(sentAt).length };  // changes sent and not yet on a grid

let ws = null;
let hello = null;          // component types and their controls, cameras, modalities
let state = null;          // the chain as the app holds it
let nextRef = 1;
const latestRef = {};      // "component/property" -> ref of the latest edit sent
const refKey = {};         // ref -> "component/property"
const sentAt = {};         // ref -> time the change was sent
const seqOfRef = {};       // ref -> the app's edit number once accepted
let structure = "";        // names and types of the chain, to know when to rebuild the panels
const controls = {};       // "component/property" -> {set(value), error element, row}

function send(op, fields = {}) {
  const ref = nextRef++;
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ op, ref, ...fields }));
  return ref;
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${proto}//${location.host}/ws`);
  ws.onopen = () => send("hello");
  ws.onmessage = (event) => receive(JSON.parse(event.data));
  ws.onclose = () => {
    setStatus("disconnected; reconnecting ...", true);
    setTimeout(connect, 1000);
  };
}

function setStatus(text, busy = false) {
  $("status").textContent = text;
  $("status").classList.toggle("busy", busy);
}

function banner(text) {
  $("banner-text").textContent = text;
  $("banner").hidden = false;
  window.tuneStats.errors++;
}

function receive(msg) {
  switch (msg.type) {
    case "hello": return onHello(msg);
    case "state": return onState(msg);
    case "frame": return onFrame(msg);
    case "status": return setStatus(msg.text, !msg.ok);
    case "banner": return banner(msg.message);
    case "error": return onError(msg);
    case "ack": return onAck(msg);
    case "saved": return setStatus(`saved to ${msg.path}`);
    case "download": return download(msg.filename, msg.json);
  }
}

function onHello(msg) {
  hello = msg;
  $("source").textContent = (msg.source || "").split("/").pop();
  $("source").title = msg.source || "";
  const modality = $("modality");
  modality.replaceChildren(...msg.modalities.map((m) => el("option", { value: m }, m)));
  const stateSel = $("state");
  const rows = [el("option", { value: "random" }, "random row")];
  for (let i = 0; i < msg.states; i++) rows.push(el("option", { value: String(i) }, `row ${i}`));
  stateSel.replaceChildren(...rows);
  $("add-type").replaceChildren(...Object.entries(msg.types).map(([t, d]) => el("option", { value: t, title: d.doc }, t)));
  $("save").title = msg.save_path ? `write ${msg.save_path}` : "download the JSON file";
  structure = "";  // rebuild the panels on the next state
}

function onState(msg) {
  state = msg;
  $("json").textContent = msg.json;
  const diff = $("diff");
  diff.replaceChildren(...msg.diff.split("\n").map((line) =>
    el("span", { class: line.startsWith("+") && !line.startsWith("+++") ? "add"
      : line.startsWith("-") && !line.startsWith("---") ? "del" : "" }, line + "\n")));
  if (!msg.diff) diff.textContent = "(no change)";
  $("dirty").textContent = msg.dirty ? "(unsaved edits)" : "";
  $("modality").value = msg.modality;
  $("state").value = String(msg.state_row);
  const shape = msg.components.map((c) => `${c.type}:${c.name}`).join(",");
  if (shape !== structure) {
    structure = shape;
    buildPanels(msg.components);
  } else {
    for (const c of msg.components) updatePanel(c);
  }
}

function onAck(msg) {
  if (msg.seq !== undefined) seqOfRef[msg.ref] = msg.seq;
  const key = refKey[msg.ref];
  if (key && latestRef[key] === msg.ref && controls[key]) showError(key, "");
}

function onError(msg) {
  const key = msg.component && msg.property ? `${msg.component}/${msg.property}` : null;
  window.tuneStats.errors++;
  if (key && controls[key] && (msg.ref === null || latestRef[key] === msg.ref || refKey[msg.ref] === undefined)) {
    showError(key, msg.message);
  } else if (msg.component && document.querySelector(`.panel[data-component="${CSS.escape(msg.component)}"]`)) {
    const panel = document.querySelector(`.panel[data-component="${CSS.escape(msg.component)}"]`);
    panel.querySelector(".panel-error").textContent = msg.message;
  } else {
    banner(msg.message);
  }
  if (msg.ref !== null) delete sentAt[msg.ref];
}

function showError(key, text) {
  const c = controls[key];
  c.error.textContent = text;
  c.row.classList.toggle("bad", !!text);
}

function download(filename, text) {
  const a = el("a", { href: URL.createObjectURL(new Blob([text], { type: "application/json" })), download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setStatus(`downloaded ${filename}`);
}

// -- the grid -----------------------------------------------------------------------------------
let frameToken = 0;
async function onFrame(msg) {
  const token = ++frameToken;
  const grid = $("grid");
  let table = grid.querySelector("table");
  const shape = `${msg.cameras.join(",")}|${msg.columns.length}`;
  if (!table || table.dataset.shape !== shape) {
    table = el("table", { "data-shape": shape });
    const shown = Math.max(hello ? hello.size : 128, 128);  // small renders are shown enlarged (pixelated)
    const head = el("tr", {}, el("th"));
    msg.columns.forEach((_, j) => head.append(el("th", { class: "column" })));
    table.append(head);
    msg.cameras.forEach((cam, i) => {
      const row = el("tr", {}, el("th", { class: "camera", title: cam }, cam));
      msg.columns.forEach((_, j) => {
        const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
        svg.setAttribute("viewBox", "0 0 1 1");
        svg.setAttribute("preserveAspectRatio", "none");
        row.append(el("td", {}, el("div", { class: "cell" },
          el("img", { width: shown, height: shown,
                      alt: `${cam}, column ${j}`, "data-camera": cam, "data-column": j }), svg)));
      });
      table.append(row);
    });
    grid.replaceChildren(table);
  }
  const heads = table.querySelectorAll("th.column");
  msg.columns.forEach((c, j) => { heads[j].textContent = `seed ${c.seed} · row ${c.row}`; });
  const decoded = [];
  const rows = table.querySelectorAll("tr");
  msg.cameras.forEach((cam, i) => {
    const cells = rows[i + 1].querySelectorAll(".cell");
    msg.images[i].forEach((src, j) => {
      const img = cells[j].querySelector("img");
      img.src = src;
      decoded.push(img.decode().catch(() => null));
      drawOverlay(cells[j].querySelector("svg"), msg.overlays[i][j]);
    });
  });
  await Promise.all(decoded);
  if (token !== frameToken) return;  // a newer frame arrived meanwhile
  const now = performance.now();
  for (const [ref, t] of Object.entries(sentAt)) {
    const seq = seqOfRef[ref];
    if (seq !== undefined && seq <= msg.seq) {
      window.tuneStats.latencies.push((now - t) / 1000);
      delete sentAt[ref];
    }
  }
  window.tuneStats.frames++;
  window.tuneStats.frameSeq = msg.seq;
  document.body.dataset.frames = String(window.tuneStats.frames);
  setStatus(`${msg.modality}: rendered in ${(msg.render_s * 1000).toFixed(0)} ms, encoded in ` +
            `${(msg.encode_s * 1000).toFixed(0)} ms (frame ${window.tuneStats.frames})`);
}

function drawOverlay(svg, marks) {
  const ns = "http://www.w3.org/2000/svg";
  const shapes = [];
  for (const [x0, x1, y0, y1] of marks.boxes) {
    const r = document.createElementNS(ns, "rect");
    Object.entries({ x: x0, y: y0, width: Math.max(x1 - x0, 0), height: Math.max(y1 - y0, 0), fill: "none",
      stroke: "#ffe600", "stroke-width": 1.5, "vector-effect": "non-scaling-stroke" })
      .forEach(([k, v]) => r.setAttribute(k, v));
    shapes.push(r);
  }
  for (const [x, y, label] of marks.points) {
    const c = document.createElementNS(ns, "circle");
    Object.entries({ cx: x, cy: y, r: 0.025, fill: "#ff2a6d", stroke: "#fff", "stroke-width": 1,
      "vector-effect": "non-scaling-stroke" }).forEach(([k, v]) => c.setAttribute(k, v));
    const title = document.createElementNS(ns, "title");
    title.textContent = label;
    c.append(title);
    shapes.push(c);
  }
  svg.replaceChildren(...shapes);
  svg.classList.toggle("off", !$("trackers").checked);
}

// -- the component panels -----------------------------------------------------------------------
function buildPanels(components) {
  for (const k of Object.keys(controls)) delete controls[k];
  const root = $("components");
  root.replaceChildren(...components.map((c, index) => buildPanel(c, index, components.length)));
}

function buildPanel(c, index, count) {
  const type = hello.types[c.type];
  const enabled = el("input", { type: "checkbox", title: "enabled" });
  enabled.checked = c.values.enabled;
  enabled.addEventListener("change", () => sendSet(c.name, "enabled", enabled.checked));
  const body = el("div", { class: "body" });
  const panel = el("div", { class: "panel", "data-component": c.name, "data-type": c.type },
    el("div", { class: "head" },
      el("label", { class: "switch" }, enabled, el("span")),
      el("span", { class: "name" }, c.name), el("span", { class: "type", title: type.doc }, c.type),
      el("span", { class: "grow" }),
      el("button", { class: "up", title: "move up", disabled: index === 0,
        onclick: () => send("move", { component: c.name, to: index - 1 }) }, "▲"),
      el("button", { class: "down", title: "move down", disabled: index === count - 1,
        onclick: () => send("move", { component: c.name, to: index + 1 }) }, "▼"),
      el("button", { class: "fold", title: "show or hide the properties",
        onclick: () => { body.hidden = !body.hidden; } }, "▾"),
      el("button", { class: "remove", title: "remove this component",
        onclick: () => send("remove", { component: c.name }) }, "✕")),
    body, el("div", { class: "panel-error" }));
  panel.classList.toggle("disabled", !c.values.enabled);
  controls[`${c.name}/enabled`] = { set: (v) => { enabled.checked = v; panel.classList.toggle("disabled", !v); },
    error: panel.querySelector(".panel-error"), row: panel };
  body.append(textControl(c.name, "path", c.path, "body, camera or light the component acts on (empty: the scene)"));
  for (const p of type.properties) {
    if (p.name === "enabled") continue;
    body.append(propertyControl(c.name, p, c.values[p.name]));
  }
  return panel;
}

function updatePanel(c) {
  const panel = document.querySelector(`.panel[data-component="${CSS.escape(c.name)}"]`);
  if (panel) panel.classList.toggle("disabled", !c.values.enabled);
  for (const [name, value] of Object.entries({ ...c.values, path: c.path })) {
    const control = controls[`${c.name}/${name}`];
    if (control && !control.row.classList.contains("bad")) control.set(value);
  }
}

const throttles = {};
function sendSet(component, property, value, throttleMs = 0) {
  const key = `${component}/${property}`;
  const go = () => {
    throttles[key] = { last: performance.now(), timer: null };
    const ref = send("set", { component, property, value });
    latestRef[key] = ref;
    refKey[ref] = key;
    sentAt[ref] = performance.now();
  };
  const t = throttles[key];
  if (!throttleMs || !t || performance.now() - t.last >= throttleMs) {
    if (t && t.timer) clearTimeout(t.timer);
    go();
  } else {  // latest wins: one trailing send with the newest value
    if (t.timer) clearTimeout(t.timer);
    t.timer = setTimeout(go, throttleMs - (performance.now() - t.last));
  }
}

function row(component, p, inputs) {
  const error = el("div", { class: "error" });
  const r = el("div", { class: "prop", "data-prop": p.name, title: p.doc },
    el("label", { title: `${p.name}: ${p.doc}` }, p.name), el("div", { class: "inputs" }, ...inputs), error);
  return { r, error };
}

function propertyControl(component, p, value) {
  const key = `${component}/${p.name}`;
  let built;
  if (p.kind === "float" || p.kind === "int") {
    const slider = el("input", { type: "range", min: p.min, max: p.max, step: p.step });
    const number = el("input", { type: "number", step: p.kind === "int" ? 1 : "any" });
    const parse = (text) => (p.kind === "int" ? Number(text) : Number(text));
    slider.addEventListener("input", () => {
      number.value = slider.value;
      sendSet(component, p.name, parse(slider.value), 40);
    });
    number.addEventListener("change", () => {
      const text = number.value.trim();
      const v = Number(text);
      slider.value = text;
      // a field that is not a number goes to the app as text, which answers with the error
      sendSet(component, p.name, text === "" || Number.isNaN(v) ? (number.validity.badInput ? "?" : text) : v);
    });
    built = row(component, p, [slider, number]);
    controls[key] = { set: (v) => { if (document.activeElement !== number) number.value = v;
      if (document.activeElement !== slider) slider.value = v; }, error: built.error, row: built.r };
  } else if (p.kind === "bool") {
    const box = el("input", { type: "checkbox" });
    box.addEventListener("change", () => sendSet(component, p.name, box.checked));
    built = row(component, p, [el("label", { class: "switch" }, box, el("span"))]);
    controls[key] = { set: (v) => { box.checked = v; }, error: built.error, row: built.r };
  } else if (p.kind === "enum") {
    const select = el("select", {}, ...p.choices.map((c) => el("option", { value: c }, c)));
    select.addEventListener("change", () => sendSet(component, p.name, select.value));
    built = row(component, p, [select]);
    controls[key] = { set: (v) => { select.value = v; }, error: built.error, row: built.r };
  } else if (p.kind === "string") {
    return textControl(component, p.name, value, p.doc);
  } else if (p.kind === "color") {
    const picker = el("input", { type: "color" });
    const alpha = el("input", { type: "number", min: 0, max: 1, step: 0.05, title: "alpha" });
    const toHex = (v) => "#" + v.slice(0, 3).map((x) => Math.round(Math.min(Math.max(x, 0), 1) * 255)
      .toString(16).padStart(2, "0")).join("");
    const fromHex = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16) / 255);
    const push = () => sendSet(component, p.name, [...fromHex(picker.value), Number(alpha.value)], 40);
    picker.addEventListener("input", push);
    alpha.addEventListener("change", push);
    built = row(component, p, [picker, alpha]);
    controls[key] = { set: (v) => { picker.value = toHex(v); alpha.value = v[3]; }, error: built.error, row: built.r };
  } else {  // vector2, vector3, quaternion (w, x, y, z)
    const axes = { vector2: ["x", "y"], vector3: ["x", "y", "z"], quaternion: ["w", "x", "y", "z"] }[p.kind];
    const fields = axes.map((a) => el("input", { type: "number", step: "any", title: a, "data-axis": a }));
    const push = () => sendSet(component, p.name, fields.map((f) => Number(f.value)));
    fields.forEach((f) => f.addEventListener("change", push));
    built = row(component, p, [el("span", { class: "vec" }, ...fields)]);
    controls[key] = { set: (v) => fields.forEach((f, i) => { if (document.activeElement !== f) f.value = v[i]; }),
      error: built.error, row: built.r };
  }
  controls[key].set(value);
  return built.r;
}

function textControl(component, name, value, doc) {
  const input = el("input", { type: "text", spellcheck: "false" });
  input.addEventListener("change", () => sendSet(component, name, input.value));
  const built = row(component, { name, doc }, [input]);
  controls[`${component}/${name}`] = { set: (v) => { if (document.activeElement !== input) input.value = v; },
    error: built.error, row: built.r };
  controls[`${component}/${name}`].set(value);
  return built.r;
}

// -- the toolbars -------------------------------------------------------------------------------
$("modality").addEventListener("change", () => send("view", { modality: $("modality").value }));
$("state").addEventListener("change", () => {
  const v = $("state").value;
  send("view", { state: v === "random" ? "random" : Number(v) });
});
$("seeds").addEventListener("click", () => send("view", { new_seeds: true }));
$("trackers").addEventListener("change", () =>
  document.querySelectorAll(".cell svg").forEach((s) => s.classList.toggle("off", !$("trackers").checked)));
$("add").addEventListener("click", () => send("add", { type: $("add-type").value }));
$("save").addEventListener("click", () => send("save"));
function clearErrors() {
  for (const key of Object.keys(controls)) showError(key, "");
}
$("reset").addEventListener("click", () => { clearErrors(); send("reset"); });
$("banner-close").addEventListener("click", () => { $("banner").hidden = true; });
$("load").addEventListener("change", () => {
  const file = $("load").files[0];
  if (!file) return;
  if (file.size > 400 * 1024) { banner(`load: ${file.name} is ${file.size} bytes; a renderer config is far smaller`); return; }
  file.text().then((text) => { clearErrors(); send("load", { text, filename: file.name }); });
  $("load").value = "";
});
window.addEventListener("beforeunload", (event) => {
  if (state && state.dirty) { event.preventDefault(); event.returnValue = ""; }
});

connect();
