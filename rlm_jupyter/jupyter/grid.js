// Live progress grid of RLM.map (anywidget ESM, no build step, no network).
//
// The kernel sends numbered deltas ({kind:"delta", seq, cells: {index: cell}, total}) at most
// ~10 times a second; each cell is {s: state, t: tokens, c: cost, e: elapsed, st: start ts}.
// A view that missed a delta asks for a snapshot; the `snapshot` trait holds every cell once
// the map has ended (reloads, saved widget state). Clicking a cell asks for that item's
// trajectory (render.py's HTML), which the kernel answers when it is idle.

function fmtTokens(n) {
  n = Number(n) || 0;
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + "k";
  return String(n);
}
function fmtCost(c) {
  c = Number(c) || 0;
  return c === 0 ? "$0" : c < 0.01 ? "$" + c.toFixed(4) : "$" + c.toFixed(2);
}
function fmtSecs(s) {
  s = Number(s) || 0;
  if (s < 60) return s.toFixed(1) + "s";
  const m = Math.floor(s / 60);
  return m + "m" + String(Math.round(s % 60)).padStart(2, "0") + "s";
}

function render({ model, el }) {
  const uid = String(model.get("uid") || "");
  const hide = document.createElement("style");
  const sel = `.rlm-map-static-beside[data-rlm-uid="${CSS.escape(uid)}"]`;
  hide.textContent = `${sel}{display:none}.jp-OutputArea-child:has(${sel}){display:none}`;
  document.head.appendChild(hide);

  const root = document.createElement("div");
  root.className = "rlm-map";
  root.innerHTML =
    "<div class='rlm-map-head'><span class='rlm-map-logo'>RLM map</span>" +
    "<span class='rlm-map-total'></span><button class='rlm-map-stop'>Stop</button></div>" +
    "<div class='rlm-map-question'></div><div class='rlm-map-grid'></div>" +
    "<div class='rlm-map-detail' hidden></div>";
  el.appendChild(root);
  const totalEl = root.querySelector(".rlm-map-total");
  const stopBtn = root.querySelector(".rlm-map-stop");
  const gridEl = root.querySelector(".rlm-map-grid");
  const detail = root.querySelector(".rlm-map-detail");
  root.querySelector(".rlm-map-question").textContent = model.get("question") || "";

  let seq = 0;
  let asked = false;
  let selected = -1;
  let lastTotal = null;
  const cells = []; // {data, el}

  function ensureCells() {
    const keys = model.get("item_keys") || [];
    while (cells.length < keys.length) {
      const i = cells.length;
      const c = document.createElement("div");
      c.className = "rlm-map-cell rlm-map-s-queued";
      c.dataset.index = String(i);
      c.innerHTML = "<div class='rlm-map-key'></div><div class='rlm-map-fig'></div>";
      c.querySelector(".rlm-map-key").textContent = keys[i];
      c.title = keys[i];
      gridEl.appendChild(c);
      cells.push({ data: { s: "queued", t: 0, c: 0, e: 0, st: null }, el: c });
    }
  }

  function paint(i) {
    const cell = cells[i];
    if (!cell) return;
    const d = cell.data;
    cell.el.className = "rlm-map-cell rlm-map-s-" + d.s + (i === selected ? " rlm-map-sel" : "");
    let secs = d.e;
    if (d.s === "running" && d.st) secs = Math.max(0, Date.now() / 1000 - d.st);
    const fig = d.s === "queued" ? "queued"
      : `${d.s}${d.r ? " (resumed)" : ""} · ${fmtTokens(d.t)} tok · ${fmtCost(d.c)} · ${fmtSecs(secs)}`;
    cell.el.querySelector(".rlm-map-fig").textContent = fig;
  }

  function paintTotal(t) {
    if (!t) return;
    lastTotal = t;
    const parts = [`${t.done}/${t.n} done`, `${t.ok} ok`, `${t.error} failed`];
    if (t.cancelled) parts.push(`${t.cancelled} cancelled`);
    if (t.running) parts.push(`${t.running} running`);
    parts.push(`${fmtTokens(t.tokens)} tokens`, fmtCost(t.cost), fmtSecs(t.elapsed));
    if (t.eta !== null && t.eta !== undefined) parts.push("ETA " + fmtSecs(t.eta));
    totalEl.textContent = parts.join(" · ");
    const live = model.get("live");
    stopBtn.hidden = !live;
    stopBtn.disabled = !!model.get("stop_requested");
    stopBtn.textContent = model.get("stop_requested") ? "stopping…" : "Stop";
  }

  function apply(cellMap) {
    ensureCells();
    for (const [k, v] of Object.entries(cellMap || {})) {
      const i = Number(k);
      if (!cells[i]) continue;
      cells[i].data = v;
      paint(i);
    }
  }

  function applySnapshot(snap) {
    if (!snap || !snap.cells) return;
    ensureCells();
    snap.cells.forEach((v, i) => { if (cells[i]) { cells[i].data = v; paint(i); } });
    seq = snap.seq || seq;
    paintTotal(snap.total);
  }

  model.on("msg:custom", (msg) => {
    if (!msg) return;
    if (msg.kind === "delta") {
      if (msg.seq > seq + 1 && !asked) {
        asked = true;
        model.send({ kind: "resync" });
      }
      seq = Math.max(seq, msg.seq);
      apply(msg.cells);
      paintTotal(msg.total);
    } else if (msg.kind === "snapshot") {
      asked = false;
      applySnapshot(msg);
    } else if (msg.kind === "trajectory" && msg.index === selected) {
      detail.innerHTML = msg.html;
    }
  });
  model.on("change:item_keys", () => { ensureCells(); });
  model.on("change:question", () => {
    root.querySelector(".rlm-map-question").textContent = model.get("question") || "";
  });
  model.on("change:snapshot", () => applySnapshot(model.get("snapshot")));
  model.on("change:live", () => paintTotal(lastTotal));
  model.on("change:stop_requested", () => paintTotal(lastTotal));

  stopBtn.addEventListener("click", () => {
    stopBtn.disabled = true;
    stopBtn.textContent = "stopping…";
    model.send({ kind: "stop" });
  });
  gridEl.addEventListener("click", (e) => {
    const c = e.target.closest(".rlm-map-cell");
    if (!c) return;
    const i = Number(c.dataset.index);
    const before = selected;
    if (selected === i) {
      selected = -1;
      detail.hidden = true;
    } else {
      selected = i;
      detail.hidden = false;
      detail.innerHTML = "<div class='rlm-map-loading'>loading the trajectory…</div>";
      model.send({ kind: "open", index: i });
    }
    if (before >= 0) paint(before);
    if (selected >= 0) paint(selected);
  });

  // Running cells' clocks tick in the browser; the kernel sends nothing for that.
  const ticker = setInterval(() => {
    if (!model.get("live")) return;
    cells.forEach((cell, i) => { if (cell.data.s === "running") paint(i); });
  }, 1000);

  ensureCells();
  applySnapshot(model.get("snapshot"));
  if (!model.get("snapshot") || !model.get("snapshot").cells) {
    if (model.get("live") || (model.get("item_keys") || []).length) model.send({ kind: "resync" });
  }
  return () => { clearInterval(ticker); hide.remove(); };
}

export default { render };
