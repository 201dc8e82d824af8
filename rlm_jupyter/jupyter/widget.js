// Live RLM trajectory view (anywidget ESM, no build step, no network).
//
// The kernel sends the run as an append-only event list in batches ({kind:"batch", start,
// events}); this file folds events into a tree (runs -> turns -> code / sub-calls / child runs)
// like the engine's Trajectory (rlm_jupyter/engine/trajectory.py) does in Python, and patches the DOM incrementally so a run with
// thousands of sub-calls stays responsive. When the run ends the whole list is also synced once
// as the `final_events` trait, so reloaded pages and saved widget state show the full run.

// anywidget hands initialize() and each render() a different proxy of the same model, so the
// shared store is keyed by the widget's own `uid` trait, not by the model object. It also keeps
// the open/closed state the user chose per node, so views rebuilt from scratch (the final sync,
// a re-displayed output) keep the user's place.
const STORES = new Map();

function storeFor(model) {
  const key = model.get("uid") || "default";
  let store = STORES.get(key);
  if (!store) {
    store = { events: [], listeners: new Set(), lastRecv: Date.now(), open: new Map() };
    STORES.set(key, store);
  }
  return store;
}

function notify(store) {
  store.lastRecv = Date.now();
  for (const fn of store.listeners) fn();
}

function adoptFinal(model, store) {
  const fin = model.get("final_events") || [];
  if (fin.length > store.events.length) {
    store.events = fin.slice();
    store.replaced = (store.replaced || 0) + 1;
    notify(store);
  }
}

function initialize({ model }) {
  const store = storeFor(model);
  const onMsg = (msg) => {
    if (!msg || msg.kind !== "batch") return;
    const have = store.events.length;
    if (msg.start > have) {
      model.send({ kind: "resync", have });
      return;
    }
    const fresh = msg.events.slice(have - msg.start);
    if (fresh.length) {
      for (const ev of fresh) store.events.push(ev);
      notify(store);
    }
  };
  const onFinal = () => adoptFinal(model, store);
  model.on("msg:custom", onMsg);
  model.on("change:final_events", onFinal);
  model.on("change:live", () => notify(store));
  model.on("change:stop_requested", () => notify(store));
  adoptFinal(model, store);
  return () => {
    model.off("msg:custom", onMsg);
    model.off("change:final_events", onFinal);
  };
}

// ---------------------------------------------------------------------------------------- utils
function h(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined && text !== null) el.textContent = String(text);
  return el;
}

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function fmtTokens(n) {
  n = Math.round(n || 0);
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e4) return Math.round(n / 1e3) + "k";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + "k";
  return String(n);
}

function fmtCost(usd) {
  if (!usd || usd <= 0) return "$0";
  return usd < 0.01 ? "$" + usd.toFixed(4) : "$" + usd.toFixed(2);
}

// Every model call came from the response cache (a re-run of an unchanged cell).
function isReplayed(usage) {
  const rows = Object.values(usage || {}).filter((u) => u && typeof u === "object");
  const calls = rows.reduce((n, u) => n + (u.calls || 0), 0);
  return calls > 0 && rows.every((u) => (u.cached_calls || 0) === (u.calls || 0));
}

function fmtRetries(n) {
  return n ? `${n} retr${n === 1 ? "y" : "ies"}` : "";
}

function fmtSecs(s) {
  s = Math.max(0, s || 0);
  if (s < 60) return s.toFixed(1) + "s";
  return Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
}

function oneLine(text, limit) {
  const flat = String(text ?? "").replace(/\s+/g, " ").trim();
  return flat.length <= limit ? flat : flat.slice(0, limit - 1) + "…";
}

const PY_TOKEN = new RegExp(
  [
    "(#[^\\n]*)",
    "(\"\"\"[\\s\\S]*?\"\"\"|'''[\\s\\S]*?'''|[rbfu]{0,2}\"(?:\\\\.|[^\"\\\\\\n])*\"|[rbfu]{0,2}'(?:\\\\.|[^'\\\\\\n])*')",
    "\\b(def|class|return|if|elif|else|for|while|in|not|and|or|import|from|as|with|try|except|finally|raise|lambda|yield|pass|break|continue|None|True|False|is|global|nonlocal|assert|del|async|await)\\b",
    "\\b(\\d+(?:\\.\\d+)?)\\b",
    "\\b(print|len|range|sorted|enumerate|zip|llm_query|llm_query_batched|rlm_query|rlm_query_batched|FINAL|FINAL_VAR|SHOW_VARS|context|answer)\\b",
  ].join("|"),
  "g"
);

function highlightPython(code) {
  let out = "";
  let last = 0;
  code = String(code ?? "");
  for (const m of code.matchAll(PY_TOKEN)) {
    out += esc(code.slice(last, m.index));
    const cls = m[1] ? "c" : m[2] ? "s" : m[3] ? "k" : m[4] ? "n" : "b";
    out += `<span class="rlm-hl-${cls}">${esc(m[0])}</span>`;
    last = m.index + m[0].length;
  }
  return out + esc(code.slice(last));
}

function inlineMd(text) {
  let s = esc(text);
  s = s.replace(/`([^`]+)`/g, "<code>$1</code>");
  s = s.replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>");
  s = s.replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>");
  s = s.replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, '<a href="$2" target="_blank" rel="noopener">$1</a>');
  return s;
}

// A small, safe Markdown subset: headings, fenced code, lists, quotes, paragraphs, inline marks.
function renderMarkdown(src) {
  const lines = String(src ?? "").split("\n");
  const out = [];
  let i = 0;
  let para = [];
  const flush = () => {
    if (para.length) out.push("<p>" + inlineMd(para.join(" ")) + "</p>");
    para = [];
  };
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*```(\w*)/);
    if (fence) {
      flush();
      const body = [];
      i++;
      while (i < lines.length && !/^\s*```/.test(lines[i])) body.push(lines[i++]);
      i++;
      const code = body.join("\n");
      out.push("<pre>" + (fence[1] === "python" || fence[1] === "repl" ? highlightPython(code) : esc(code)) + "</pre>");
      continue;
    }
    const head = line.match(/^(#{1,6})\s+(.*)$/);
    if (head) {
      flush();
      const lvl = Math.min(6, head[1].length + 2);
      out.push(`<h${lvl}>${inlineMd(head[2])}</h${lvl}>`);
      i++;
      continue;
    }
    if (/^\s*([-*+]|\d+[.)])\s+/.test(line)) {
      flush();
      const ordered = /^\s*\d/.test(line);
      const items = [];
      while (i < lines.length && /^\s*([-*+]|\d+[.)])\s+/.test(lines[i])) {
        items.push("<li>" + inlineMd(lines[i].replace(/^\s*([-*+]|\d+[.)])\s+/, "")) + "</li>");
        i++;
      }
      out.push((ordered ? "<ol>" : "<ul>") + items.join("") + (ordered ? "</ol>" : "</ul>"));
      continue;
    }
    if (/^\s*>/.test(line)) {
      flush();
      out.push("<blockquote>" + inlineMd(line.replace(/^\s*>\s?/, "")) + "</blockquote>");
      i++;
      continue;
    }
    if (!line.trim()) flush();
    else para.push(line);
    i++;
  }
  flush();
  return out.join("");
}

// Once a reply is complete its ```repl blocks are shown as code cells below, so the model text
// shows a short marker instead of the same code twice.
function collapseFences(text) {
  let n = 0;
  return String(text ?? "").replace(/```repl[^\n]*\n[\s\S]*?```/g, () => `⟨code #${++n} below⟩`).trim();
}

// ----------------------------------------------------------------------------------------- fold
class Tree {
  constructor() {
    this.runs = new Map();
    this.roots = [];
    this.subcalls = new Map();
    this.turnSpans = new Map();
    this.totals = { turns: 0, subcalls: 0, running: 0, tokens: 0, cost: 0, failed: 0, retries: 0 };
    this.firstTs = null;
    this.lastTs = null;
    this.dirty = new Set();
  }

  run(d) {
    const id = d.run_id || "run";
    let run = this.runs.get(id);
    if (!run) {
      run = {
        kind: "run", id, parent: d.parent_run_id || null, parentSpan: d.parent_span_id || null,
        depth: d.depth || 0, question: "", model: "", subModel: "", sandbox: "", context: "",
        limits: {}, startTs: d.ts || 0, status: "running", answer: null, error: null,
        errorType: null, elapsed: null, turns: [], turnByN: new Map(), warnings: [], errors: [],
      };
      this.runs.set(id, run);
      const parent = run.parent ? this.runs.get(run.parent) : null;
      if (!parent) this.roots.push(run);
      else {
        run.fromSub = this.subcalls.get(run.parentSpan) || null;
        const t = (run.fromSub && run.fromSub.turn) || this.turnSpans.get(run.parentSpan)
          || (parent.turns.length ? parent.turns[parent.turns.length - 1] : this.turn(parent, 0));
        t.children.push(run);
        this.dirty.add(t);
      }
    }
    return run;
  }

  turn(run, n) {
    let t = run.turnByN.get(n);
    if (!t) {
      t = {
        kind: "turn", run, n, text: "", streaming: false, responded: false, tokens: 0, cost: 0,
        latency: 0, cached: false, model: "", codes: [], subs: [], subsDone: 0, subsFailed: 0,
        subsCached: 0, subsRetries: 0, children: [], retries: 0, retryError: "",
      };
      run.turnByN.set(n, t);
      run.turns.push(t);
      this.dirty.add(run);
    }
    return t;
  }

  feed(d) {
    const ts = d.ts;
    if (typeof ts === "number") {
      this.firstTs = this.firstTs === null ? ts : Math.min(this.firstTs, ts);
      this.lastTs = this.lastTs === null ? ts : Math.max(this.lastTs, ts);
    }
    const run = this.run(d);
    const T = this.totals;
    switch (d.type) {
      case "run_started":
        run.question = d.question || run.question;
        run.model = d.model || run.model;
        run.subModel = d.sub_model || "";
        run.sandbox = d.sandbox || "";
        run.context = d.context_summary || "";
        run.limits = d.limits || {};
        run.startTs = d.ts || run.startTs;
        this.dirty.add(run);
        break;
      case "turn_started":
        if (d.span_id) this.turnSpans.set(d.span_id, this.turn(run, d.turn || 0));
        else this.turn(run, d.turn || 0);
        T.turns++;
        break;
      case "model_chunk": {
        const t = this.turn(run, d.turn || 0);
        if (!t.responded) {
          t.text += d.delta || "";
          t.streaming = true;
          this.dirty.add(t);
        }
        break;
      }
      case "model_response": {
        const t = this.turn(run, d.turn || 0);
        t.text = d.text || t.text;
        t.streaming = false;
        t.responded = true;
        t.model = d.model || "";
        t.tokens = (d.prompt_tokens || 0) + (d.completion_tokens || 0);
        t.cost = d.cost_usd || 0;
        t.latency = d.latency_s || 0;
        t.cached = !!d.cached;
        T.tokens += t.tokens;
        T.cost += t.cost;
        this.dirty.add(t);
        break;
      }
      case "code_executed": {
        const t = this.turn(run, d.turn || 0);
        t.codes.push(d);
        this.dirty.add(t);
        break;
      }
      case "subcall_started": {
        const t = this.turn(run, d.turn || 0);
        const s = { span: d.span_id, turn: t, model: d.model || "", prompt: d.prompt_preview || "", promptChars: d.prompt_chars || 0, done: false, response: "", tokens: 0, cost: 0, latency: 0, cached: false, error: null, index: t.subs.length, retries: 0, retryError: "" };
        this.subcalls.set(s.span, s);
        t.subs.push(s);
        T.subcalls++;
        T.running++;
        this.dirty.add(t);
        break;
      }
      case "subcall_finished": {
        let s = this.subcalls.get(d.span_id);
        if (!s) {
          const t = this.turn(run, d.turn || 0);
          s = { span: d.span_id, turn: t, model: "", prompt: "", promptChars: 0, done: false, index: t.subs.length };
          t.subs.push(s);
          this.subcalls.set(s.span, s);
          T.subcalls++;
          T.running++;
        }
        if (!s.done) {
          T.running--;
          s.turn.subsDone++;
        }
        s.done = true;
        s.model = d.model || s.model;
        s.response = d.response_preview || "";
        s.tokens = (d.prompt_tokens || 0) + (d.completion_tokens || 0);
        s.cost = d.cost_usd || 0;
        s.latency = d.latency_s || 0;
        s.cached = !!d.cached;
        s.error = d.error || null;
        if (s.error) { s.turn.subsFailed++; T.failed++; }
        if (s.cached) s.turn.subsCached++;
        T.tokens += s.tokens;
        T.cost += s.cost;
        s.dirty = true;
        this.dirty.add(s.turn);
        break;
      }
      case "llm_retry": {
        // A failed attempt that is tried again: on the sub-call (its span is the parent) or
        // on the turn whose root call it was.
        const s = d.call === "sub" ? this.subcalls.get(d.parent_span_id) : null;
        const t = s ? s.turn : this.turn(run, d.turn || 0);
        const node = s || t;
        node.retries = (node.retries || 0) + 1;
        node.retryError = d.error || "";
        if (s) { t.subsRetries++; s.dirty = true; }
        T.retries++;
        this.dirty.add(t);
        break;
      }
      case "budget_warning":
      case "budget_exceeded":
        run.warnings.push(d);
        break;
      case "error":
        run.errors.push(d);
        this.dirty.add(run);
        break;
      case "run_finished":
        run.status = d.status || "ok";
        run.answer = d.answer ?? null;
        run.error = d.error || null;
        run.errorType = d.error_type || null;
        run.elapsed = d.elapsed_s ?? null;
        run.replayed = isReplayed(d.usage);
        for (const t of run.turns) { t.streaming = false; this.dirty.add(t); }
        this.dirty.add(run);
        break;
    }
  }
}

// --------------------------------------------------------------------------------------- render
const SUB_PAGE = 100;

function render({ model, el }) {
  const store = storeFor(model);
  let tree = new Tree();
  let applied = 0;
  let replacedSeen = store.replaced || 0;
  let scheduled = false;
  let stopClicked = false;

  const root = h("div", "rlm-w");
  el.appendChild(root);
  const header = h("div", "rlm-header");
  const question = h("div", "rlm-question");
  const meta = h("div", "rlm-meta");
  const body = h("div", "rlm-body");
  const notes = h("div", "rlm-notes");
  const answer = h("div", "rlm-answer");
  root.append(header, question, meta, body, notes, answer);

  const pills = {};
  const status = h("span", "rlm-pill rlm-status", "waiting");
  header.appendChild(h("span", "rlm-logo", "RLM"));
  header.appendChild(status);
  for (const key of ["elapsed", "turns", "subcalls", "tokens", "cost", "retries", "replayed"]) {
    pills[key] = h("span", "rlm-pill rlm-c-" + key);
    header.appendChild(pills[key]);
  }
  const bars = h("span", "rlm-bars");
  header.appendChild(bars);
  const stopBtn = h("button", "rlm-stop", "■ Stop");
  stopBtn.title = "Cancel this run (sub-calls cancelled, partial trajectory kept)";
  stopBtn.addEventListener("click", () => {
    stopClicked = true;
    model.send({ kind: "stop" });
    stopBtn.disabled = true;
    stopBtn.textContent = "stopping…";
  });
  header.appendChild(stopBtn);

  const runEls = new Map();
  const turnEls = new Map();

  // A <details> the user opened or closed stays so through rebuilds; one never touched keeps
  // its default (and may still be folded by the view). `key` is the node's run / span id.
  function keepOpen(details, summary, key) {
    if (store.open.has(key)) details.open = store.open.get(key);
    summary.addEventListener("click", () => store.open.set(key, !details.open));
  }

  const turnKey = (t) => `turn:${t.run.id}:${t.n}`;

  function liveRunning() {
    const r = tree.roots[0];
    return !!model.get("live") && (!r || r.status === "running");
  }

  function elapsed() {
    const r = tree.roots[0];
    if (!r) return 0;
    if (r.elapsed !== null && r.elapsed !== undefined) return r.elapsed;
    const base = (tree.lastTs || r.startTs) - (r.startTs || tree.firstTs || 0);
    return liveRunning() ? base + (Date.now() - store.lastRecv) / 1000 : base;
  }

  function renderHeader() {
    const r = tree.roots[0];
    const T = tree.totals;
    let st = r ? r.status : "waiting";
    if (st === "running" && !model.get("live")) st = "incomplete";
    if (st === "running" && (model.get("stop_requested") || stopClicked)) st = "stopping";
    status.textContent = st;
    status.className = "rlm-pill rlm-status rlm-st-" + st;
    pills.elapsed.textContent = "⏱ " + fmtSecs(elapsed());
    pills.turns.textContent = T.turns + " turns";
    pills.subcalls.textContent = T.subcalls + " sub-calls" + (T.running > 0 ? ` (${T.running} running)` : "") + (T.failed ? ` · ${T.failed} failed` : "");
    pills.tokens.textContent = fmtTokens(T.tokens) + " tokens";
    pills.cost.textContent = fmtCost(T.cost);
    pills.retries.textContent = fmtRetries(T.retries);
    pills.retries.style.display = T.retries ? "" : "none";
    pills.retries.title = "failed model attempts that were tried again";
    pills.replayed.textContent = "replayed from cache";
    pills.replayed.style.display = r && r.replayed ? "" : "none";
    pills.replayed.title = "no model was called and nothing was paid; --no-cache asks the model again";
    stopBtn.style.display = liveRunning() ? "" : "none";
    if (r) {
      question.textContent = r.question ? "Q: " + oneLine(r.question, 400) : "";
      const bits = [];
      if (r.model) bits.push("model " + r.model);
      if (r.subModel && r.subModel !== r.model) bits.push("sub-model " + r.subModel);
      if (r.sandbox) bits.push("sandbox " + r.sandbox);
      if (r.context) bits.push("context " + oneLine(r.context, 140));
      meta.textContent = bits.join(" · ");
      renderBars(r);
    }
  }

  function renderBars(r) {
    const L = r.limits || {};
    const pick = (...names) => {
      for (const n of names) if (typeof L[n] === "number" && L[n] > 0) return L[n];
      return null;
    };
    const T = tree.totals;
    const list = [
      ["turns", pick("max_iterations", "turns", "max_turns"), r.turns.filter((t) => t.n > 0).length || r.turns.length],
      ["sub-calls", pick("max_subcalls", "subcalls"), T.subcalls],
      ["tokens", pick("max_tokens", "tokens"), T.tokens],
      ["cost", pick("budget_usd", "usd", "max_usd"), T.cost],
      ["time", pick("timeout_s", "time", "max_time_s"), elapsed()],
    ];
    bars.textContent = "";
    for (const [label, allowed, used] of list) {
      if (!allowed) continue;
      const pct = Math.max(0, Math.min(100, (100 * used) / allowed));
      const bar = h("span", "rlm-bar" + (pct >= 100 ? " full" : pct >= 80 ? " warn" : ""));
      bar.title = `${label}: ${Number(used.toPrecision(4))} of ${allowed}`;
      const fill = h("i");
      fill.style.width = pct.toFixed(0) + "%";
      const track = h("span", "rlm-track");
      track.appendChild(fill);
      bar.append(h("span", "rlm-bar-label", label), track);
      bars.appendChild(bar);
    }
  }

  function runEl(run) {
    let r = runEls.get(run);
    if (r) return r;
    const isRoot = tree.roots[0] === run;
    const wrap = isRoot ? h("div", "rlm-run") : h("details", "rlm-run rlm-child");
    const turnsEl = h("div", "rlm-turns");
    let summary = null;
    if (!isRoot) {
      summary = h("summary");
      wrap.appendChild(summary);
      wrap.open = true;
      keepOpen(wrap, summary, "run:" + run.id);
    }
    const ans = h("div", "rlm-child-answer");
    wrap.append(turnsEl, ans);
    r = { wrap, turnsEl, summary, ans, turnsRendered: 0 };
    runEls.set(run, r);
    return r;
  }

  function updateRun(run) {
    const r = runEl(run);
    if (r.summary) {
      r.summary.innerHTML = `<span class="rlm-tag">child RLM</span> ${esc(oneLine(run.question, 90))} <span class="rlm-dim">${esc(run.status)}${run.fromSub ? " · from sub-call #" + (run.fromSub.index + 1) : ""}</span>`;
      if (run.answer !== null && run.answer !== undefined) r.ans.textContent = "↳ " + oneLine(run.answer, 300);
      else if (run.error) r.ans.textContent = "↳ " + (run.errorType || "error") + ": " + oneLine(run.error, 300);
    }
    while (r.turnsRendered < run.turns.length) {
      // A new turn folds the previous ones the user has not touched, keeping the view short.
      for (const prev of run.turns.slice(0, r.turnsRendered)) {
        const pe = turnEls.get(prev);
        if (pe && !store.open.has(turnKey(prev))) pe.wrap.open = false;
      }
      const t = run.turns[r.turnsRendered++];
      r.turnsEl.appendChild(turnEl(t).wrap);
      updateTurn(t);
    }
  }

  function turnEl(t) {
    let te = turnEls.get(t);
    if (te) return te;
    const wrap = h("details", "rlm-turn");
    wrap.open = true;
    const summary = h("summary");
    const text = h("pre", "rlm-text");
    const codes = h("div", "rlm-codes");
    const subs = h("details", "rlm-subs");
    const subsSummary = h("summary");
    const subsBody = h("div", "rlm-subs-body");
    subs.append(subsSummary, subsBody);
    subs.style.display = "none";
    const kids = h("div", "rlm-kids");
    wrap.append(summary, text, codes, subs, kids);
    te = { wrap, summary, text, codes, subs, subsSummary, subsBody, kids, codesRendered: 0, subsRendered: 0, kidsRendered: 0, subLimit: SUB_PAGE, rows: new Map(), more: null };
    subs.addEventListener("toggle", () => { if (subs.open) renderSubRows(t, te); });
    keepOpen(wrap, summary, turnKey(t));
    keepOpen(subs, subsSummary, "subs:" + turnKey(t));
    turnEls.set(t, te);
    return te;
  }

  function updateTurn(t) {
    const te = turnEl(t);
    const bits = [];
    if (t.responded) bits.push(fmtTokens(t.tokens) + " tok", fmtSecs(t.latency));
    if (t.cached) bits.push("cached");
    if (t.streaming) bits.push("streaming…");
    if (t.codes.length) bits.push(t.codes.length + " code");
    if (t.subs.length) bits.push(t.subs.length + " sub-calls");
    if (t.retries) bits.push(fmtRetries(t.retries) + " (last: " + oneLine(t.retryError, 80) + ")");
    te.summary.innerHTML = `<b>Turn ${t.n}</b> <span class="rlm-dim">${esc(bits.join(" · "))}</span>`;
    const shown = t.streaming ? t.text : collapseFences(t.text);
    if (te.textSrc !== shown) {
      te.text.textContent = shown;
      te.textSrc = shown;
      if (t.streaming) te.text.scrollTop = te.text.scrollHeight;
    }
    te.text.style.display = t.text ? "" : "none";
    te.text.classList.toggle("rlm-streaming", !!t.streaming);
    while (te.codesRendered < t.codes.length) {
      const c = t.codes[te.codesRendered++];
      const box = h("div", "rlm-code");
      const pre = h("pre", "rlm-src");
      pre.innerHTML = highlightPython(c.code);
      const status = c.timed_out ? "timed out" : c.error ? "error" : "ok";
      const label = h("div", "rlm-dim", `code #${(c.index || 0) + 1} · ${status} · ${fmtSecs(c.duration_s)}${c.restarted ? " · sandbox restarted" : ""}`);
      box.append(label, pre);
      if (c.stdout) box.appendChild(h("pre", "rlm-out", c.stdout));
      if (c.error) box.appendChild(h("pre", "rlm-err", c.error));
      te.codes.appendChild(box);
    }
    if (t.subs.length) {
      te.subs.style.display = "";
      const extra = (t.subsFailed ? ` · ${t.subsFailed} failed` : "") + (t.subsCached ? ` · ${t.subsCached} cached` : "") + (t.subsRetries ? ` · ${fmtRetries(t.subsRetries)}` : "");
      te.subsSummary.textContent = `${t.subs.length} sub-calls · ${t.subsDone} done${extra}`;
      if (te.subs.open) renderSubRows(t, te);
    }
    while (te.kidsRendered < t.children.length) {
      const child = t.children[te.kidsRendered++];
      te.kids.appendChild(runEl(child).wrap);
      updateRun(child);
    }
  }

  function subRow(s) {
    const row = h("details", "rlm-sub");
    const sum = h("summary");
    const bodyEl = h("div");
    row.append(sum, bodyEl);
    row.addEventListener("toggle", () => { if (row.open) fillSub(s, bodyEl); });
    keepOpen(row, sum, "sub:" + s.span);
    return { row, sum, bodyEl };
  }

  function fillSub(s, bodyEl) {
    bodyEl.textContent = "";
    bodyEl.append(h("div", "rlm-dim", `prompt (${(s.promptChars || 0).toLocaleString()} chars)${s.model ? " · " + s.model : ""}`), h("pre", "rlm-out", s.prompt));
    if (s.retries) bodyEl.append(h("div", "rlm-dim", `${fmtRetries(s.retries)} · last error: ${s.retryError}`));
    bodyEl.append(h("div", "rlm-dim", "response"), h("pre", s.error ? "rlm-err" : "rlm-out", s.error || s.response || (s.done ? "" : "…")));
  }

  function updateSubRow(s, r) {
    const state = s.error ? "error" : s.done ? (s.cached ? "cached" : "done") : "running";
    r.sum.innerHTML = `<span class="rlm-sub-n">#${s.index + 1}</span> ${esc(oneLine(s.prompt, 80))} <span class="rlm-dim">${s.done ? esc(fmtTokens(s.tokens) + " tok · " + fmtSecs(s.latency)) : ""}${s.retries ? esc(" · " + fmtRetries(s.retries)) : ""}</span> <span class="rlm-state rlm-${state}">${state}</span>` + (s.done && s.response ? ` <span class="rlm-dim">→ ${esc(oneLine(s.response, 60))}</span>` : "");
    if (r.row.open) fillSub(s, r.bodyEl);
  }

  function renderSubRows(t, te) {
    const limit = Math.min(t.subs.length, te.subLimit);
    while (te.subsRendered < limit) {
      const s = t.subs[te.subsRendered++];
      const r = subRow(s);
      te.rows.set(s, r);
      te.subsBody.appendChild(r.row);
      updateSubRow(s, r);
      s.dirty = false;
    }
    for (const [s, r] of te.rows) {
      if (s.dirty) { updateSubRow(s, r); s.dirty = false; }
    }
    const hidden = t.subs.length - te.subsRendered;
    if (hidden > 0) {
      if (!te.more) {
        te.more = h("button", "rlm-more");
        te.more.addEventListener("click", () => { te.subLimit += SUB_PAGE * 5; renderSubRows(t, te); });
      }
      te.more.textContent = `show ${Math.min(hidden, SUB_PAGE * 5)} more of ${hidden}`;
      te.subsBody.appendChild(te.more);
    } else if (te.more) {
      te.more.remove();
    }
  }

  function renderAnswer() {
    const r = tree.roots[0];
    answer.textContent = "";
    notes.textContent = "";
    if (!r) return;
    for (const w of r.warnings.slice(-3)) notes.appendChild(h("div", "rlm-warn", `⚠ ${w.type === "budget_exceeded" ? "exceeded" : "near"} ${w.limit} limit: ${Number((w.used || 0).toPrecision(4))} of ${w.allowed}`));
    for (const e of r.errors.slice(-3)) if (e.message !== r.error) notes.appendChild(h("div", "rlm-err-line", `${e.kind || "error"}: ${oneLine(e.message, 300)}`));
    if (r.answer !== null && r.answer !== undefined) {
      answer.className = "rlm-answer rlm-final";
      const md = h("div", "rlm-md");
      md.innerHTML = renderMarkdown(r.answer);
      answer.append(h("div", "rlm-answer-label", r.status === "ok" ? "Answer" : "Partial answer"), md);
    }
    if (r.error) {
      answer.className = "rlm-answer rlm-final rlm-failed";
      answer.appendChild(h("div", "rlm-err-line", `${r.errorType || r.status}: ${r.error}`));
    }
  }

  function apply() {
    scheduled = false;
    if ((store.replaced || 0) !== replacedSeen) {
      // The full list arrived (final sync or a late view): rebuild from scratch once.
      replacedSeen = store.replaced || 0;
      tree = new Tree();
      applied = 0;
      runEls.clear();
      turnEls.clear();
      body.textContent = "";
    }
    const evs = store.events;
    for (; applied < evs.length; applied++) tree.feed(evs[applied]);
    for (const run of tree.roots) {
      const r = runEl(run);
      if (!r.wrap.parentNode) body.appendChild(r.wrap);
    }
    for (const node of tree.dirty) {
      if (node.kind === "run") updateRun(node);
      else if (node.kind === "turn") { if (turnEls.has(node)) updateTurn(node); else updateRun(node.run); }
    }
    tree.dirty.clear();
    renderHeader();
    renderAnswer();
  }

  function schedule() {
    if (scheduled) return;
    scheduled = true;
    // rAF pauses in hidden tabs; a timeout keeps the model in sync there too.
    setTimeout(apply, 50);
  }

  store.listeners.add(schedule);
  const tick = setInterval(() => { if (liveRunning()) renderHeader(); }, 250);
  apply();
  return () => {
    store.listeners.delete(schedule);
    clearInterval(tick);
  };
}

export default { initialize, render };
