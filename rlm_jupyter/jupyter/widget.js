// Live RLM trajectory view (anywidget ESM, no build step, no network).
//
// The kernel folds the run (the engine's Trajectory) and renders every node to HTML
// (rlm_jupyter/jupyter/render.py, live_*); this file only places those fragments. A node is a
// shell created once (so a <details> keeps its open/closed state) with `data-part` elements
// replaced on update and `data-slot` elements that receive child nodes. Deltas are numbered: a
// view that missed one asks for a snapshot. The user's open/closed choices go to the
// `open_state` trait, so a view rebuilt from scratch keeps them. Everything here is per view
// and dropped when the view is removed.

const SUB_PAGE = 100;

// Only to tick the elapsed pill between two updates from the kernel.
function fmtSecs(s) {
  s = Math.max(0, s || 0);
  return s < 60 ? s.toFixed(1) + "s" : Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
}

function div(cls) {
  const el = document.createElement("div");
  el.className = cls;
  return el;
}

function render({ model, el }) {
  const root = div("rlm-w");
  const top = { head: div("rlm-head"), body: div("rlm-body"), end: div("rlm-tail") };
  root.append(top.head, top.body, top.end);
  el.appendChild(root);

  const stopBtn = document.createElement("button");
  stopBtn.className = "rlm-stop";
  stopBtn.textContent = "■ Stop";
  stopBtn.title = "Cancel this run (sub-calls cancelled, partial trajectory kept)";
  let stopClicked = false;
  stopBtn.addEventListener("click", () => {
    stopClicked = true;
    model.send({ kind: "stop" });
    stopBtn.disabled = true;
    stopBtn.textContent = "stopping…";
    const status = root.querySelector(".rlm-status");
    if (status && status.textContent === "running") status.textContent = "stopping";
  });

  // The static view the kernel puts beside this widget (for nbconvert and GitHub) is hidden
  // wherever the widget itself renders.
  const uid = String(model.get("uid") || "");
  const hide = document.createElement("style");
  const sel = `.rlm-static-beside[data-rlm-uid="${CSS.escape(uid)}"]`;
  hide.textContent = `${sel}{display:none}.jp-OutputArea-child:has(${sel}){display:none}`;
  document.head.appendChild(hide);

  let nodes = new Map(); // id -> {data, el, parts, slots, flags}
  let pages = new Map(); // slot element -> {shown, waiting: [], more}
  let seq = -1;
  let asked = false;
  let headAt = Date.now();
  const opened = Object.assign({}, model.get("open_state") || {});

  function remember(key, open) {
    opened[key] = open;
    model.set("open_state", Object.assign({}, model.get("open_state") || {}, { [key]: open }));
    model.save_changes();
  }

  function build(entry) {
    const tpl = document.createElement("template");
    tpl.innerHTML = entry.data.shell;
    const e = tpl.content.firstElementChild;
    entry.el = e;
    entry.parts = new Map();
    entry.slots = new Map();
    entry.flags = new Map();
    for (const x of e.querySelectorAll("[data-part],[data-slot],[data-flag]")) {
      if (x.dataset.part) entry.parts.set(x.dataset.part, x);
      if (x.dataset.slot) entry.slots.set(x.dataset.slot, x);
      if (x.dataset.flag) entry.flags.set(x.dataset.flag, x);
    }
    const all = e.matches("details[data-key]") ? [e] : [];
    for (const d of [...all, ...e.querySelectorAll("details[data-key]")]) {
      const key = d.dataset.key;
      if (key in opened) d.open = opened[key];
      else if (d === e && typeof entry.data.open === "boolean") d.open = entry.data.open;
      const summary = d.querySelector(":scope > summary");
      if (summary) summary.addEventListener("click", () => remember(key, !d.open));
    }
    fill(entry, entry.data.parts || {});
  }

  function fill(entry, parts) {
    for (const [name, value] of Object.entries(parts)) {
      if (name[0] === "@") {
        const x = entry.flags.get(name.slice(1)) || entry.parts.get(name.slice(1));
        if (x) x.setAttribute("data-state", value);
        continue;
      }
      const x = entry.parts.get(name);
      if (!x) continue;
      x.innerHTML = value;
      if (name === "pills") headAt = Date.now();
      if (x.dataset.state === "streaming" || parts["@" + name] === "streaming") x.scrollTop = x.scrollHeight;
    }
  }

  function slotOf(data) {
    if (!data.parent) return top[data.slot] || top.body;
    const parent = nodes.get(data.parent);
    if (!parent) return null;
    if (!parent.el) build(parent);
    return parent.slots.get(data.slot) || null;
  }

  // Long sub-call lists show a page at a time; the rest wait for "show more".
  function place(entry) {
    const slot = slotOf(entry.data);
    if (!slot) return false;
    if (entry.data.slot !== "subs") {
      if (!entry.el) build(entry);
      slot.appendChild(entry.el);
      return true;
    }
    let page = pages.get(slot);
    if (!page) pages.set(slot, (page = { shown: 0, limit: SUB_PAGE, waiting: [], more: null }));
    if (page.shown < page.limit) {
      if (!entry.el) build(entry);
      slot.insertBefore(entry.el, page.more);
      page.shown++;
    } else page.waiting.push(entry);
    moreButton(slot, page);
    return true;
  }

  function moreButton(slot, page) {
    if (!page.waiting.length) {
      if (page.more) page.more.remove();
      page.more = null;
      return;
    }
    if (!page.more) {
      page.more = document.createElement("button");
      page.more.className = "rlm-more";
      page.more.addEventListener("click", () => {
        page.limit += SUB_PAGE * 5;
        const next = page.waiting.splice(0, page.limit - page.shown);
        for (const entry of next) {
          build(entry);
          slot.insertBefore(entry.el, page.more);
          page.shown++;
        }
        moreButton(slot, page);
      });
      slot.appendChild(page.more);
    }
    const hidden = page.waiting.length;
    page.more.textContent = `show ${Math.min(hidden, SUB_PAGE * 5)} more of ${hidden}`;
  }

  // Returns false when the view is out of step with the kernel (it must resync).
  function apply(list) {
    for (const data of list) {
      let entry = nodes.get(data.id);
      if (!entry) {
        if (typeof data.shell !== "string") return false;
        entry = { data: Object.assign({}, data, { parts: Object.assign({}, data.parts) }), el: null };
        nodes.set(data.id, entry);
        if (!place(entry)) return false;
        continue;
      }
      Object.assign(entry.data.parts, data.parts || {});
      if (typeof data.open === "boolean") entry.data.open = data.open;
      if (!entry.el) continue; // waiting for "show more": built from data.parts later
      fill(entry, data.parts || {});
      const key = entry.el.dataset.key;
      if (typeof data.open === "boolean" && key && !(key in opened)) entry.el.open = data.open;
    }
    return true;
  }

  function rebuild(snap) {
    nodes = new Map();
    pages = new Map();
    for (const c of Object.values(top)) c.textContent = "";
    seq = snap.seq;
    if (!apply(snap.nodes || [])) seq = -1;
    refresh();
  }

  function resync() {
    if (asked) return;
    asked = true;
    model.send({ kind: "resync" });
  }

  function refresh() {
    const header = root.querySelector(".rlm-header");
    if (header && stopBtn.parentNode !== header) header.appendChild(stopBtn);
    const status = root.querySelector(".rlm-status");
    const running = status && ["running", "stopping"].includes(status.textContent);
    stopBtn.style.display = model.get("live") && running ? "" : "none";
    if (status && running && (stopClicked || model.get("stop_requested"))) status.textContent = "stopping";
  }

  const onMsg = (msg) => {
    if (!msg) return;
    if (msg.kind === "snapshot") {
      asked = false;
      if (msg.seq > seq) rebuild(msg);
      return;
    }
    if (msg.kind !== "delta" || msg.seq <= seq) return;
    if (msg.seq !== seq + 1 || !apply(msg.nodes || [])) {
      resync();
      return;
    }
    seq = msg.seq;
    refresh();
  };
  const onSnapshot = () => {
    const snap = model.get("snapshot") || {};
    if (typeof snap.seq === "number" && snap.seq > seq) rebuild(snap);
  };
  model.on("msg:custom", onMsg);
  model.on("change:snapshot", onSnapshot);
  model.on("change:live", refresh);
  model.on("change:stop_requested", refresh);

  const snap = model.get("snapshot") || {};
  if (typeof snap.seq === "number" && Array.isArray(snap.nodes)) rebuild(snap);
  else seq = 0;
  if (model.get("live")) resync(); // a view opened mid-run catches up

  const tick = setInterval(() => {
    const pill = root.querySelector('.rlm-c-elapsed[data-ticking="1"]');
    if (pill && model.get("live")) pill.textContent = "⏱ " + fmtSecs(Number(pill.dataset.elapsed) + (Date.now() - headAt) / 1000);
  }, 250);

  return () => {
    clearInterval(tick);
    hide.remove();
    model.off("msg:custom", onMsg);
    model.off("change:snapshot", onSnapshot);
    model.off("change:live", refresh);
    model.off("change:stop_requested", refresh);
    nodes = new Map();
    pages = new Map();
  };
}

export default { render };
