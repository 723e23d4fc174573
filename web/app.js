/* trainyard dashboard: a tiny hash router over the REST API, no framework.
 * Pages: #/login, #/runs, #/runs/ID, #/sweeps, #/sweeps/ID (sweeps.js),
 * #/nodes, #/experiments, #/compute.
 * Every page fetches only what it shows (one page of runs, downsampled
 * metric series) and stops its timers and streams when left. */

import { renderSweeps, renderSweep, trialSummaryItems, createHistory } from './sweeps.js';

const TERMINAL = new Set(['completed', 'failed', 'canceled']);
const RUN_STATUSES = ['queued', 'starting', 'running', 'completed', 'failed', 'canceled'];
const PAGE_SIZE = 50;
const LIST_POLL_MS = 3000;
const MAX_LIST_STREAMS = 4; /* browsers allow ~6 connections per host over HTTP/1.1 */
const MAX_POINTS = 1000;
const LOG_DOM_LINES = 5000;
const PRIMARY = ['loss', 'val_loss', 'accuracy', 'acc', 'val_accuracy', 'val_acc', 'lr', 'learning_rate'];
const PALETTE_LIGHT = ['#2563eb', '#e8590c', '#16a34a', '#9333ea', '#db2777', '#0891b2', '#ca8a04'];
const PALETTE_DARK = ['#6b9bff', '#ff8c4a', '#4ade80', '#c084fc', '#f472b6', '#22d3ee', '#facc15'];

/* ------------------------------------------------------------------ DOM */

const $ = (sel, root = document) => root.querySelector(sel);

function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'style') Object.assign(el.style, v);
      else if (k === 'value' || k === 'checked' || k === 'selected') el[k] = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  add(el, kids);
  return el;
}

function add(el, kids) {
  for (const k of kids) {
    if (k == null || k === false) continue;
    if (Array.isArray(k)) add(el, k);
    else el.append(k instanceof Node ? k : String(k));
  }
  return el;
}

function toast(msg, isError = false) {
  const t = $('#toast');
  t.textContent = msg;
  t.className = 'toast show' + (isError ? ' err' : '');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = 'toast'; }, isError ? 6000 : 3000);
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

/* ----------------------------------------------------------- formatting */

const nf4 = new Intl.NumberFormat('en', { maximumSignificantDigits: 4 });
const nfInt = new Intl.NumberFormat('en');

function fmtNum(v) {
  if (v == null || !Number.isFinite(v)) return '—';
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-4 || a >= 1e9)) return v.toExponential(2);
  return nf4.format(v);
}
const fmtInt = (v) => (v == null ? '—' : nfInt.format(v));

function fmtDuration(ms) {
  if (!(ms >= 0)) ms = 0;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const hr = Math.floor(m / 60);
  if (hr < 24) return `${hr}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(hr / 24)}d ${hr % 24}h`;
}

function fmtAgo(iso) {
  if (!iso) return '—';
  const d = Date.now() - Date.parse(iso);
  if (d < 2000) return 'just now';
  return fmtDuration(d) + ' ago';
}

function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function fmtMB(mb) {
  if (mb == null) return '—';
  if (mb >= 1024) return `${(mb / 1024).toFixed(mb >= 10240 ? 0 : 1)} GiB`;
  return `${mb} MiB`;
}

function fmtBytes(n) {
  if (n == null) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

function timeEl(iso) {
  return h('time', { datetime: iso || '', title: iso ? fmtTime(iso) : null, 'data-ago': iso || null }, fmtAgo(iso));
}

/* "ps 2×(2w+1ps)", "pytorch 2×4", "single" plus the GPUs it asks for. */
function runSize(spec) {
  spec = spec || {};
  const b = spec.distributed_backend;
  const n = spec.node_count || 1;
  let text;
  let procs;
  if (b === 'ps') {
    const parts = [];
    if (spec.chief) parts.push('1c');
    parts.push(`${spec.worker_count ?? n}w`, `${spec.parameter_server_count ?? 1}ps`);
    if (spec.evaluator) parts.push('1e');
    text = `ps ${n}×(${parts.join('+')})`;
    procs = (spec.worker_count ?? n) + (spec.parameter_server_count ?? 1) + (spec.chief ? 1 : 0) + (spec.evaluator ? 1 : 0);
  } else if (b === 'mpi' || b === 'pytorch') {
    text = `${b} ${n}×${spec.process_count_per_node || 1}`;
    procs = n * (spec.process_count_per_node || 1);
  } else {
    text = 'single';
    procs = 1;
  }
  const gpus = spec.use_gpu ? procs * (spec.gpus_per_process || 1) : 0;
  return { text, gpus };
}

/* Who submitted a run (its token's name), linked to that owner's runs; runs
 * from before owners were recorded have none. */
function ownerEl(owner) {
  if (!owner) return h('span', { class: 'faint', title: 'Submitted before runs recorded their owner' }, 'unknown');
  return h('a', { href: hashFor('/runs', { owner }), title: `Only runs of ${owner}` }, owner);
}

function sizeEl(spec) {
  const s = runSize(spec);
  return h('span', { class: 'size' }, s.text, s.gpus ? h('span', { class: 'faint' }, ` · ${s.gpus} GPU${s.gpus > 1 ? 's' : ''}`) : null);
}

function metricRank(name) {
  const i = PRIMARY.indexOf(name);
  return i < 0 ? PRIMARY.length : i;
}
const sortMetrics = (names) => [...names].sort((a, b) => metricRank(a) - metricRank(b) || a.localeCompare(b));

function badge(status, title) {
  return h('span', { class: `badge ${status}`, title: title || null }, status);
}

/* The clock shown beside a status: waiting time, running time, or how long it took. */
function elapsedEl(run) {
  const el = h('span', { class: 'elapsed' });
  setElapsed(el, run);
  return el;
}
function setElapsed(el, run) {
  let since, until = '', prefix = '';
  if (run.status === 'queued') { since = run.created_at; prefix = 'waiting '; }
  else since = run.started_at || run.created_at;
  if (TERMINAL.has(run.status)) until = run.ended_at || run.started_at || run.created_at;
  el.dataset.since = since || '';
  el.dataset.until = until;
  el.dataset.prefix = prefix;
  tickOne(el);
}
function tickOne(el) {
  if (!el.dataset.since) { el.textContent = ''; return; }
  const end = el.dataset.until ? Date.parse(el.dataset.until) : Date.now();
  el.textContent = el.dataset.prefix + fmtDuration(end - Date.parse(el.dataset.since));
}
setInterval(() => {
  if (document.hidden) return;
  for (const el of document.querySelectorAll('[data-since]')) if (!el.dataset.until) tickOne(el);
  for (const el of document.querySelectorAll('[data-ago]')) el.textContent = fmtAgo(el.dataset.ago);
}, 1000);

function colorFor(key) {
  let x = 0;
  for (const c of key) x = (x * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${x % 360} 62% 46%)`;
}

const taskRunId = (taskId) => (/^(run-[0-9a-f]+)-a\d+-/.exec(taskId) || [])[1] || null;
const enc = encodeURIComponent;
const encPath = (p) => p.split('/').map(enc).join('/');
const isDark = () => matchMedia('(prefers-color-scheme: dark)').matches;
const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

/* -------------------------------------------------------------- session */

const session = {
  token: sessionStorage.getItem('trainyard.token') || '',
  role: sessionStorage.getItem('trainyard.role') || '',
};
const canCancel = () => session.role === 'admin' || session.role === 'user';
const isAdmin = () => session.role === 'admin';

function signOut(message) {
  sessionStorage.removeItem('trainyard.token');
  sessionStorage.removeItem('trainyard.role');
  session.token = '';
  session.role = '';
  if (message) toast(message, true);
  location.hash = '#/login';
}

function renderSession() {
  const el = $('#session');
  const signedIn = !!session.token;
  $('#nav').hidden = !signedIn;
  $('#foot').hidden = !signedIn;
  el.replaceChildren();
  if (!signedIn) return;
  add(el, [
    h('span', { class: `role ${session.role}`, title: 'The role of this token' }, session.role || '…'),
    h('button', { type: 'button', class: 'small', onclick: () => signOut() }, 'Sign out'),
  ]);
}

/* ------------------------------------------------------------------ API */

class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

async function api(path, opts = {}) {
  const headers = { Authorization: `Bearer ${session.token}` };
  let body;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  let res;
  try {
    res = await fetch('/api/v1' + path, { method: opts.method || 'GET', headers, body, signal: opts.signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'unavailable', 'Cannot reach the trainyard server.');
  }
  if (!res.ok) {
    let err = {};
    try { err = (await res.json()).error || {}; } catch { /* not JSON */ }
    if (res.status === 401 && !opts.quiet401) signOut('The server no longer accepts this token; sign in again.');
    throw new ApiError(res.status, err.code || `http_${res.status}`, err.message || res.statusText, err.field);
  }
  if (opts.raw) return res;
  if (res.status === 204) return null;
  return (res.headers.get('content-type') || '').includes('json') ? res.json() : res.text();
}

/* admin can list tokens; a viewer may not POST (403), a user gets 404 for a run that does not exist. */
async function detectRole() {
  try {
    await api('/tokens', { quiet401: true });
    return 'admin';
  } catch (e) {
    if (e.status !== 403) throw e;
  }
  try {
    await api('/runs/run-000000000000/cancel', { method: 'POST', quiet401: true });
    return 'user';
  } catch (e) {
    if (e.status === 403) return 'viewer';
    if (e.status === 404 || e.status === 409) return 'user';
    throw e;
  }
}

/* Server-Sent Events over fetch (EventSource cannot send the Authorization header). */
async function readSSE(path, onEvent, signal) {
  const res = await fetch('/api/v1' + path, {
    headers: { Authorization: `Bearer ${session.token}`, Accept: 'text/event-stream' },
    signal,
  });
  if (!res.ok) throw new ApiError(res.status, `http_${res.status}`, res.statusText);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (!line || line[0] === ':') continue;
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        let val = c < 0 ? '' : line.slice(c + 1);
        if (val[0] === ' ') val = val.slice(1);
        if (field === 'event') event = val;
        else if (field === 'data') data.push(val);
      }
      if (!data.length) continue;
      let obj;
      try { obj = JSON.parse(data.join('\n')); } catch { continue; }
      onEvent(event, obj);
    }
  }
}

/* Follows an event stream until isEnd(event, data) says it has ended,
 * reconnecting after a drop. */
async function followStream(path, isEnd, onEvent, signal) {
  let ended = false;
  let delay = 1000;
  while (!signal.aborted && !ended) {
    try {
      await readSSE(path, (ev, data) => {
        delay = 1000;
        if (isEnd(ev, data)) ended = true;
        onEvent(ev, data);
      }, signal);
    } catch (e) {
      if (signal.aborted || e.status === 404 || e.status === 401 || e.status === 403) return;
    }
    if (ended || signal.aborted) return;
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 15000);
  }
}

/* Follows a run's events until it has ended. */
function followRun(id, onEvent, signal) {
  return followStream(`/runs/${enc(id)}/events`, (ev, data) => ev === 'status' && TERMINAL.has(data.status), onEvent, signal);
}

/* ---------------------------------------------------------- page views */

let view = null;

function newView(key) {
  if (view) view.dispose();
  const ac = new AbortController();
  const disposers = [];
  view = {
    key,
    signal: ac.signal,
    update: null,
    onDispose(fn) { disposers.push(fn); },
    /* Runs fn every ms while the page is open and visible. */
    every(ms, fn) {
      let t;
      const tick = async () => {
        if (ac.signal.aborted) return;
        if (!document.hidden) {
          try { await fn(); } catch (e) { if (e.name !== 'AbortError') console.warn(e); }
        }
        if (!ac.signal.aborted) t = setTimeout(tick, ms);
      };
      t = setTimeout(tick, ms);
      disposers.push(() => clearTimeout(t));
    },
    dispose() {
      ac.abort();
      for (const fn of disposers) { try { fn(); } catch { /* ignore */ } }
    },
  };
  return view;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/runs';
  const q = raw.indexOf('?');
  const path = q < 0 ? raw : raw.slice(0, q);
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) };
}

function hashFor(path, query) {
  const qs = new URLSearchParams(Object.entries(query || {}).filter(([, v]) => v)).toString();
  return '#' + path + (qs ? '?' + qs : '');
}

function setNav(section) {
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function route() {
  const { parts, query } = parseHash();
  const page = parts[0] || 'runs';
  if (!session.token && page !== 'login') {
    location.replace('#/login' + (location.hash && location.hash !== '#/' ? '?next=' + enc(location.hash) : ''));
    return;
  }
  const key = (page === 'runs' || page === 'sweeps') && parts[1] ? `${page}:${parts[1]}` : page;
  if (view && view.key === key && view.update) {
    view.update(query);
    return;
  }
  const v = newView(key);
  const main = $('#main');
  main.replaceChildren();
  renderSession();
  setNav(page);
  window.scrollTo(0, 0);
  try {
    if (page === 'login') renderLogin(main, v, query);
    else if (page === 'runs' && parts[1]) await renderRun(main, v, parts[1], query);
    else if (page === 'runs') renderRuns(main, v, query);
    else if (page === 'sweeps' && parts[1]) await renderSweep(main, v, parts[1]);
    else if (page === 'sweeps') renderSweeps(main, v, query);
    else if (page === 'nodes') renderNodes(main, v);
    else if (page === 'experiments') renderExperiments(main, v);
    else if (page === 'compute') renderCompute(main, v);
    else main.append(h('p', { class: 'empty' }, 'No such page. ', h('a', { href: '#/runs' }, 'Go to runs')));
  } catch (e) {
    if (e.name !== 'AbortError') main.append(h('div', { class: 'error-box', role: 'alert' }, e.message));
  }
  if (document.activeElement === document.body || !document.activeElement) main.focus({ preventScroll: true });
}

/* --------------------------------------------------------------- login */

function renderLogin(main, v, query) {
  document.title = 'Sign in · trainyard';
  $('#nav').hidden = true;
  const input = h('input', {
    type: 'password', id: 'token', name: 'token', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'ty_…', required: true, 'aria-describedby': 'login-error',
  });
  const err = h('p', { id: 'login-error', class: 'error-box', role: 'alert', hidden: true });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      button.disabled = true;
      err.hidden = true;
      session.token = token;
      try {
        await api('/runs?limit=1', { quiet401: true });
        session.role = await detectRole();
        sessionStorage.setItem('trainyard.token', token);
        sessionStorage.setItem('trainyard.role', session.role);
        const next = query.get('next');
        location.hash = next && next.startsWith('#/') && !next.startsWith('#/login') ? next : '#/runs';
      } catch (e2) {
        session.token = '';
        session.role = '';
        err.textContent = e2.status === 401 ? 'The server did not accept that token.'
          : e2.status === 403 ? 'This token cannot read runs (agent tokens are for nodes only).'
            : e2.message;
        err.hidden = false;
        button.disabled = false;
        input.focus();
      }
    },
  },
  h('label', { class: 'field', for: 'token' }, 'API token'), input, err, button);
  main.append(h('div', { class: 'panel login' },
    h('img', { src: '/static/logo.svg', alt: '', width: 40, height: 40 }),
    h('h1', {}, 'Sign in to trainyard'),
    h('p', { class: 'sub' }, 'Runs, live metrics and nodes of your training cluster.'),
    form,
    h('p', { class: 'hint' }, 'The server writes its admin token to ', h('code', {}, '<data>/admin.token'),
      ' on first start; an admin creates more with ', h('code', {}, 'POST /api/v1/tokens'),
      ' (roles admin, user, viewer). The token is kept in this tab\'s session storage only.')));
  setTimeout(() => input.focus(), 0);
}

/* ---------------------------------------------------------------- runs */

const pageStack = { filter: '', cursors: [] };

function renderRuns(main, v, query) {
  document.title = 'Runs · trainyard';
  const st = { query, rows: new Map(), streams: new Map(), streamed: new Set(), selected: new Set(), loaded: false, next: null, gen: 0 };

  const live = h('span', { class: 'live', title: 'Status changes stream in live' }, 'live');
  const compareBtn = h('button', {
    type: 'button', disabled: true,
    onclick: () => {
      const ids = [...st.selected];
      location.hash = hashFor(`/runs/${ids[0]}`, { compare: ids.slice(1).join(',') });
    },
  }, 'Compare selected');

  const expInput = h('input', { type: 'search', id: 'f-experiment', list: 'f-experiments', placeholder: 'any experiment', 'data-filter': true, autocomplete: 'off' });
  const expList = h('datalist', { id: 'f-experiments' });
  const statusSel = h('select', { id: 'f-status' }, h('option', { value: '' }, 'any status'),
    RUN_STATUSES.map((s) => h('option', { value: s }, s)));
  const tagInput = h('input', { type: 'search', id: 'f-tag', placeholder: 'key:value', autocomplete: 'off' });
  const clearBtn = h('button', { type: 'button', onclick: () => { location.hash = '#/runs'; } }, 'Clear filters');
  const apply = () => {
    location.hash = hashFor('/runs', { experiment: expInput.value.trim(), owner: st.query.get('owner'), status: statusSel.value, tag: tagInput.value.trim(), limit: st.query.get('limit') });
  };
  expInput.addEventListener('change', apply);
  statusSel.addEventListener('change', apply);
  tagInput.addEventListener('change', apply);

  const filters = h('form', { class: 'filters', role: 'search', onsubmit: (e) => { e.preventDefault(); apply(); } },
    h('label', { class: 'field', for: 'f-experiment' }, 'Experiment', expInput), expList,
    h('label', { class: 'field', for: 'f-status' }, 'Status', statusSel),
    h('label', { class: 'field', for: 'f-tag' }, 'Tag', tagInput),
    clearBtn);

  const tbody = h('tbody');
  const message = h('div');
  const table = h('table', { id: 'runs-table' },
    h('thead', {}, h('tr', {},
      h('th', { class: 'sel' }, h('span', { class: 'faint', title: 'Select runs to compare' }, '⇄')),
      ['Run', 'Experiment', 'Owner', 'Status', 'Size', 'Metrics', 'Created', 'Tags'].map((t) => h('th', { scope: 'col' }, t)))),
    tbody);
  const info = h('span', { class: 'tabular' });
  const newestBtn = h('button', { type: 'button', class: 'small', onclick: () => go('') }, 'Newest');
  const newerBtn = h('button', { type: 'button', class: 'small', onclick: () => go(pageStack.cursors.pop() ?? '') }, '← Newer');
  const olderBtn = h('button', {
    type: 'button', class: 'small',
    onclick: () => { pageStack.cursors.push(st.query.get('cursor') || ''); go(st.next); },
  }, 'Older →');
  const pager = h('div', { class: 'pager' }, info, h('span', { class: 'spacer' }), newestBtn, newerBtn, olderBtn);

  function go(cursor) {
    location.hash = hashFor('/runs', {
      experiment: st.query.get('experiment'), owner: st.query.get('owner'), status: st.query.get('status'), tag: st.query.get('tag'), limit: st.query.get('limit'), cursor,
    });
  }

  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Runs'), live, h('span', { class: 'spacer' }), compareBtn),
    h('div', { class: 'panel' }, filters, message, h('div', { class: 'table-wrap' }, table), pager));

  function syncInputs() {
    const q = st.query;
    if (document.activeElement !== expInput) expInput.value = q.get('experiment') || '';
    statusSel.value = q.get('status') || '';
    if (document.activeElement !== tagInput) tagInput.value = q.get('tag') || '';
    clearBtn.hidden = !(q.get('experiment') || q.get('owner') || q.get('status') || q.get('tag'));
    const filter = ['experiment', 'owner', 'status', 'tag'].map((k) => q.get(k) || '').join('\n');
    if (filter !== pageStack.filter) { pageStack.filter = filter; pageStack.cursors = []; }
    if (!q.get('cursor')) pageStack.cursors = [];
  }

  function makeRow(run) {
    const check = h('input', { type: 'checkbox', 'aria-label': `Select ${run.id} to compare` });
    check.addEventListener('change', () => {
      if (check.checked) st.selected.add(run.id); else st.selected.delete(run.id);
      compareBtn.disabled = st.selected.size < 2;
      compareBtn.textContent = st.selected.size ? `Compare selected (${st.selected.size})` : 'Compare selected';
    });
    check.checked = st.selected.has(run.id);
    const statusTd = h('td', { class: 'nowrap' });
    const sizeTd = h('td');
    const metricsTd = h('td', { class: 'metrics-cell' });
    const tagsTd = h('td');
    const tr = h('tr', { 'data-run': run.id },
      h('td', { class: 'sel' }, check),
      h('td', { class: 'nowrap' }, h('a', { class: 'run-id', href: `#/runs/${run.id}` }, run.id)),
      h('td', {}, h('a', { href: hashFor('/runs', { experiment: run.experiment }), title: `Only runs of ${run.experiment}` }, run.experiment)),
      h('td', { class: 'owner' }, ownerEl(run.owner)),
      statusTd, sizeTd, metricsTd,
      h('td', { class: 'nowrap' }, timeEl(run.created_at)),
      tagsTd);
    let sig = '';
    const row = {
      tr,
      update(r) {
        const s = JSON.stringify([r.status, r.started_at, r.ended_at, r.metrics, r.tags, r.error, r.reason]);
        if (s === sig) return;
        sig = s;
        tr.dataset.status = r.status;
        statusTd.replaceChildren(h('div', { class: 'status-cell' },
          badge(r.status, r.error || r.reason), elapsedEl(r)));
        sizeTd.replaceChildren(sizeEl(r.spec));
        const names = sortMetrics(Object.keys(r.metrics || {})).slice(0, 3);
        metricsTd.replaceChildren(...(names.length ? names.map((n) => h('span', { class: 'm' }, h('span', {}, n), h('b', {}, fmtNum(r.metrics[n]))))
          : [h('span', { class: 'faint' }, '—')]));
        tagsTd.replaceChildren(...Object.entries(r.tags || {}).map(([k, val]) =>
          h('a', { class: 'chip', href: hashFor('/runs', { tag: `${k}:${val}` }) }, `${k}:${val}`)));
      },
    };
    row.update(run);
    return row;
  }

  function renderRows(items) {
    const seen = new Set();
    let prev = null;
    for (const run of items) {
      let row = st.rows.get(run.id);
      if (!row) {
        row = makeRow(run);
        st.rows.set(run.id, row);
        if (st.loaded) row.tr.classList.add('new');
      } else row.update(run);
      seen.add(run.id);
      const want = prev ? prev.tr.nextSibling : tbody.firstChild;
      if (want !== row.tr) tbody.insertBefore(row.tr, want);
      prev = row;
    }
    for (const [id, row] of st.rows) {
      if (!seen.has(id)) { row.tr.remove(); st.rows.delete(id); }
    }
    const filtered = st.query.get('experiment') || st.query.get('owner') || st.query.get('status') || st.query.get('tag');
    if (!items.length) {
      message.replaceChildren(h('div', { class: 'empty' }, filtered ? 'No runs match these filters.'
        : ['No runs yet. Submit one with ', h('code', {}, 'trainyard submit DIR --entry train.py'), '.']));
    } else message.replaceChildren();
  }

  function onRunUpdate(run) {
    const row = st.rows.get(run.id);
    if (row) row.update(run);
  }

  /* One SSE stream per active run on the page, at most MAX_LIST_STREAMS; polling covers the rest. */
  function syncStreams(items) {
    const active = items.filter((r) => !TERMINAL.has(r.status)).map((r) => r.id);
    for (const [id, ac] of st.streams) {
      if (!active.includes(id)) { ac.abort(); st.streams.delete(id); }
    }
    for (const id of active) {
      if (st.streams.size >= MAX_LIST_STREAMS) break;
      if (st.streams.has(id) || st.streamed.has(id)) continue;
      const ac = new AbortController();
      v.signal.addEventListener('abort', () => ac.abort(), { once: true });
      st.streams.set(id, ac);
      st.streamed.add(id);
      followRun(id, (ev, data) => { if (ev === 'status') onRunUpdate(data); }, ac.signal).finally(() => {
        if (st.streams.get(id) === ac) st.streams.delete(id);
        if (!v.signal.aborted) syncStreams(st.items || []);
      });
    }
  }

  async function load() {
    const gen = ++st.gen;
    const limit = Math.min(1000, Math.max(1, parseInt(st.query.get('limit'), 10) || PAGE_SIZE));
    const q = new URLSearchParams({ limit });
    for (const k of ['experiment', 'owner', 'status', 'tag', 'cursor']) if (st.query.get(k)) q.set(k, st.query.get(k));
    try {
      const data = await api('/runs?' + q, { signal: v.signal });
      if (gen !== st.gen) return;
      live.classList.remove('off');
      st.items = data.items;
      st.next = data.next_cursor;
      renderRows(data.items);
      syncStreams(data.items);
      st.loaded = true;
      const cursor = st.query.get('cursor');
      info.textContent = data.items.length ? `${data.items.length} run${data.items.length > 1 ? 's' : ''}${cursor ? ' (older page)' : ''}` : '';
      newestBtn.hidden = !cursor;
      newerBtn.hidden = !cursor;
      olderBtn.disabled = !st.next;
    } catch (e) {
      if (e.name === 'AbortError' || gen !== st.gen) return;
      live.classList.add('off');
      if (e.status === 400) {
        renderRows([]);
        message.replaceChildren(h('div', { class: 'error-box', role: 'alert', style: { margin: '12px 16px' } }, e.message));
      } else toast(e.message, true);
    }
  }

  async function loadExperiments() {
    try {
      const data = await api('/experiments?limit=200', { signal: v.signal });
      expList.replaceChildren(...data.items.map((x) => h('option', { value: x.name })));
    } catch { /* suggestions only */ }
  }

  v.update = (q) => {
    const changed = ['experiment', 'owner', 'status', 'tag', 'cursor', 'limit'].some((k) => (q.get(k) || '') !== (st.query.get(k) || ''));
    st.query = q;
    if (changed) st.loaded = false;
    syncInputs();
    load();
  };
  syncInputs();
  load();
  loadExperiments();
  v.every(LIST_POLL_MS, load);
}

/* ----------------------------------------------------------- run detail */

/* The environment the server gave the task at placement (the backend's
 * rules live in the server only). */
function taskEnv(task) {
  return task.env && typeof task.env === 'object' ? Object.entries(task.env) : [];
}

function commandText(spec) {
  if (!spec) return '';
  if (spec.command) return spec.command.map((a) => (/[\s"']/.test(a) ? JSON.stringify(a) : a)).join(' ');
  const params = [];
  for (const [k, val] of Object.entries(spec.script_params || {})) {
    if (val === false) continue;
    params.push(k);
    if (val !== true && val !== null) params.push(String(val));
  }
  return ['python', spec.entry_script, ...params, ...(spec.arguments || [])].join(' ');
}

/* A danger button that asks first: [label] -> "question [yes] [Keep it]"; run() on yes
 * (an error is shown and the button may be pressed again). */
function confirmedButton({ action, label, question, yes: yesLabel, run }) {
  const yes = h('button', { type: 'button', class: 'danger solid', 'data-action': `confirm-${action}` }, yesLabel);
  const no = h('button', { type: 'button' }, 'Keep it');
  const confirmBox = h('span', { class: 'title-row', hidden: true }, h('span', { class: 'sub' }, question), yes, no);
  const btn = h('button', { type: 'button', class: 'danger', 'data-action': action }, label);
  btn.addEventListener('click', () => { btn.hidden = true; confirmBox.hidden = false; yes.focus(); });
  no.addEventListener('click', () => { btn.hidden = false; confirmBox.hidden = true; btn.focus(); });
  yes.addEventListener('click', async () => {
    yes.disabled = true;
    try {
      await run();
    } catch (e) {
      toast(e.message, true);
      yes.disabled = false;
    }
  });
  return [btn, confirmBox];
}

async function renderRun(main, v, id, query) {
  document.title = `${id} · trainyard`;
  const st = { run: null, expanded: new Set(), compare: parseCompare(query) };

  const crumbs = h('div', { class: 'crumbs' }, h('a', { href: '#/runs' }, 'Runs'), ' / ');
  const statusBox = h('span');
  const actions = h('div', { class: 'title-row' });
  const titleRow = h('div', { class: 'title-row' }, h('h1', { class: 'mono' }, id), statusBox, h('span', { class: 'spacer' }), actions);
  const alertBox = h('div');
  const summary = h('dl', { class: 'summary' });

  const chartsHost = h('div');
  const compareBar = h('div', { class: 'compare-bar' });
  const metricsSection = h('section', { class: 'panel section', 'aria-labelledby': 'h-metrics' },
    h('div', { class: 'section-head' }, h('h2', { id: 'h-metrics' }, 'Metrics'),
      h('span', { class: 'faint' }, 'drag to zoom · double-click to reset'), h('span', { class: 'spacer' }), compareBar),
    chartsHost);
  const tasksBody = h('div', { class: 'table-wrap' });
  const tasksSection = h('section', { class: 'panel section', 'aria-labelledby': 'h-tasks' },
    h('div', { class: 'section-head' }, h('h2', { id: 'h-tasks' }, 'Tasks'), h('span', { class: 'faint' },
      'Env shows what each task was given (TF_CONFIG, RANK, CUDA_VISIBLE_DEVICES, …)')), tasksBody);
  const logSection = h('section', { class: 'panel section', 'aria-labelledby': 'h-logs' });
  const artBody = h('div');
  const artSection = h('section', { class: 'panel section', 'aria-labelledby': 'h-artifacts' },
    h('div', { class: 'section-head' }, h('h2', { id: 'h-artifacts' }, 'Artifacts'), h('span', { class: 'faint' }, 'files the tasks wrote under ./outputs')), artBody);
  const specPre = h('pre', { class: 'env', style: { margin: '0' } });
  const specSection = h('section', { class: 'panel section' },
    h('details', { class: 'spec' }, h('summary', { class: 'section-head' }, h('h2', {}, 'Spec'), h('span', { class: 'faint' }, 'as accepted, defaults filled in')),
      h('div', { class: 'section-body' }, specPre)));

  const history = createHistory();
  main.append(crumbs, titleRow, alertBox, summary, metricsSection, tasksSection, history.section, logSection, artSection, specSection);

  let run;
  try {
    run = await api(`/runs/${enc(id)}`, { signal: v.signal });
  } catch (e) {
    if (e.name === 'AbortError') return;
    main.replaceChildren(h('div', { class: 'error-box', role: 'alert' }, e.status === 404 ? `There is no run ${id}.` : e.message),
      h('a', { href: '#/runs' }, '← All runs'));
    return;
  }
  st.run = run;
  if (run.sweep_id) crumbs.replaceChildren(h('a', { href: '#/sweeps' }, 'Sweeps'), ' / ', h('a', { href: `#/sweeps/${run.sweep_id}` }, run.sweep_id), ' / ');
  crumbs.append(h('a', { href: hashFor('/runs', { experiment: run.experiment }) }, run.experiment));

  /* ---- header, summary, tasks ---- */
  function renderHead() {
    const r = st.run;
    statusBox.replaceChildren(h('span', { class: 'status-cell' }, badge(r.status), elapsedEl(r)));
    actions.replaceChildren();
    if (canCancel() && !TERMINAL.has(r.status)) {
      actions.append(...confirmedButton({
        action: 'cancel', label: 'Cancel run', question: 'Stop every task?', yes: 'Yes, cancel this run',
        async run() {
          const updated = await api(`/runs/${enc(id)}/cancel`, { method: 'POST' });
          toast(`${id} canceled`);
          onStatus(updated);
        },
      }));
    }
    if (canCancel()) {
      /* A new run of the caller from this run's spec (POST /runs/{id}/rerun). */
      const rerunBtn = h('button', { type: 'button', 'data-action': 'rerun', title: 'Submit this run again as a new run' }, 'Rerun');
      rerunBtn.addEventListener('click', async () => {
        rerunBtn.disabled = true;
        try {
          const created = await api(`/runs/${enc(id)}/rerun`, { method: 'POST' });
          toast(`${created.id} submitted, a rerun of ${id}`);
          location.hash = `#/runs/${created.id}`;
        } catch (e) {
          toast(e.message, true);
          rerunBtn.disabled = false;
        }
      });
      actions.append(rerunBtn);
    }
    alertBox.replaceChildren();
    if (r.error) alertBox.append(h('div', { class: 'error-box', role: 'alert', style: { marginTop: '14px' } }, h('b', {}, 'Failed: '), r.error));
    else if (r.status === 'queued' && r.reason) alertBox.append(h('div', { class: 'note-box', style: { marginTop: '14px' } }, h('b', {}, 'Waiting: '), r.reason));
  }

  function renderSummary() {
    const r = st.run;
    const s = r.spec || {};
    const item = (k, val, title) => h('div', {}, h('dt', {}, k), h('dd', { title: title || null }, val));
    summary.replaceChildren(
      item('Experiment', h('a', { href: hashFor('/runs', { experiment: r.experiment }) }, r.experiment)),
      item('Owner', ownerEl(r.owner)),
      item('Size', sizeEl(s)),
      item('Compute target', s.compute_target || 'default'),
      item('Node selector', Object.keys(s.node_selector || {}).length ? Object.entries(s.node_selector).map(([k, val]) => h('span', { class: 'chip' }, `${k}=${val}`)) : '—',
        'the run is placed only on nodes with every one of these labels'),
      item('Attempt', `${r.attempt}${s.max_retries ? ` of ${s.max_retries + 1}` : ''}`),
      item('Created', fmtTime(r.created_at), r.created_at),
      item('Started', fmtTime(r.started_at), r.started_at),
      item('Ended', fmtTime(r.ended_at), r.ended_at),
      item('Priority', String(s.priority ?? 0)),
      item('Tags', Object.keys(r.tags || {}).length ? Object.entries(r.tags).map(([k, val]) => h('span', { class: 'chip' }, `${k}:${val}`)) : '—'),
      ...(trialSummaryItems(r) || []),
      h('div', { class: 'wide' }, h('dt', {}, s.command ? 'Command' : 'Entry script'),
        h('dd', { class: 'mono', title: commandText(s), style: { whiteSpace: 'pre', overflowX: 'auto' } }, commandText(s))));
    specPre.textContent = JSON.stringify(s, null, 2);
  }

  function renderTasks() {
    const r = st.run;
    const rows = [];
    for (const t of r.tasks || []) {
      const open = st.expanded.has(t.name);
      const toggle = h('button', { type: 'button', class: 'small', 'aria-expanded': String(open), 'aria-label': `Environment of ${t.name}` }, open ? 'Hide env' : 'Env');
      toggle.addEventListener('click', () => {
        if (st.expanded.has(t.name)) st.expanded.delete(t.name); else st.expanded.add(t.name);
        renderTasks();
        tasksBody.querySelector(`[aria-label="Environment of ${CSS.escape(t.name)}"]`)?.focus();
      });
      rows.push(h('tr', { 'data-task': t.name },
        h('td', { class: 'mono nowrap' }, t.name),
        h('td', {}, `${t.type} ${t.index}`),
        h('td', {}, t.node ? h('a', { href: '#/nodes' }, t.node) : h('span', { class: 'faint' }, '—')),
        h('td', { class: 'mono' }, t.address || h('span', { class: 'faint' }, '—')),
        h('td', { class: 'gpu-list' }, t.gpus && t.gpus.length ? t.gpus.join(', ') : h('span', { class: 'faint' }, '—')),
        h('td', {}, badge(t.status)),
        h('td', { class: 'num' }, t.exit_code == null ? h('span', { class: 'faint' }, '—') : String(t.exit_code)),
        h('td', { class: 'nowrap' }, t.started_at ? elapsedEl({ status: TERMINAL.has(t.status) || t.ended_at ? 'completed' : 'running', started_at: t.started_at, ended_at: t.ended_at, created_at: t.started_at }) : h('span', { class: 'faint' }, '—')),
        h('td', {}, toggle)));
      if (open) {
        rows.push(h('tr', { class: 'env-row' }, h('td', { colspan: 9 },
          h('pre', { class: 'env', 'data-env': t.name }, t.env ? taskEnv(t).map(([k, val]) => `${k}=${val}`).join('\n')
            : 'Not placed yet: the environment is set when the scheduler places the task.'))));
      }
    }
    tasksBody.replaceChildren(h('table', {},
      h('thead', {}, h('tr', {}, ['Task', 'Type', 'Node', 'Address', 'GPUs', 'Status', 'Exit', 'Time', ''].map((t, i) =>
        h('th', { scope: 'col', class: i === 6 ? 'num' : null }, t)))),
      h('tbody', {}, rows)));
  }

  /* ---- logs ---- */
  const logs = { task: '', offset: 0, dec: new TextDecoder(), partial: '', count: 0, gen: 0, busy: false, polls: 0, follow: true };
  const taskSel = h('select', { id: 'log-task', 'aria-label': 'Show the log of' });
  const followBox = h('input', { type: 'checkbox', id: 'log-follow', checked: true });
  const countEl = h('span', { class: 'faint tabular', id: 'log-count' });
  const pre = h('pre', { class: 'log', id: 'log', tabindex: '0', 'aria-label': 'Log output', 'aria-live': 'off', 'data-empty': 'No output yet.' });
  add(logSection, [h('div', { class: 'section-head' }, h('h2', { id: 'h-logs' }, 'Logs'), h('span', { class: 'spacer' }),
    h('div', { class: 'log-tools' }, h('label', { class: 'check', for: 'log-task' }, 'Task'), taskSel,
      h('label', { class: 'check', for: 'log-follow' }, followBox, 'Follow'), countEl)), pre]);
  function fillTaskSel() {
    const names = (st.run.tasks || []).map((t) => t.name);
    const sig = names.join(',');
    if (taskSel.dataset.sig === sig) return;
    taskSel.dataset.sig = sig;
    taskSel.replaceChildren(h('option', { value: '' }, names.length > 1 ? 'all tasks' : 'all'),
      ...names.map((n) => h('option', { value: n }, n)));
    taskSel.value = logs.task;
  }
  taskSel.addEventListener('change', () => {
    logs.task = taskSel.value;
    logs.gen++;
    logs.offset = 0;
    logs.count = 0;
    logs.partial = '';
    logs.dec = new TextDecoder();
    logs.polls = 0;
    pre.replaceChildren();
    pollLogs();
  });
  followBox.addEventListener('change', () => {
    logs.follow = followBox.checked;
    if (logs.follow) pre.scrollTop = pre.scrollHeight;
  });
  pre.addEventListener('scroll', () => {
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 24;
    if (atEnd !== logs.follow) { logs.follow = atEnd; followBox.checked = atEnd; }
  });
  function appendLog(text) {
    const all = logs.partial + text;
    const lines = all.split('\n');
    logs.partial = lines.pop();
    if (!lines.length) return;
    const frag = document.createDocumentFragment();
    for (const line of lines) {
      const el = h('span', { class: 'ln' });
      const m = /^(\[[^\]\s]+\] )(.*)$/.exec(line);
      const body = m ? m[2] : line;
      if (m) el.append(h('span', { class: 'tg' }, m[1]));
      if (body.startsWith('##metric ')) el.append(h('span', { class: 'mt' }, body));
      else el.append(body);
      frag.append(el);
    }
    logs.count += lines.length;
    pre.append(frag);
    while (pre.childElementCount > LOG_DOM_LINES) pre.firstElementChild.remove();
    countEl.textContent = `${fmtInt(logs.count)} line${logs.count === 1 ? '' : 's'}`;
    if (logs.follow) pre.scrollTop = pre.scrollHeight;
  }
  async function pollLogs() {
    if (logs.busy) return;
    logs.busy = true;
    const gen = logs.gen;
    try {
      const q = new URLSearchParams({ offset: logs.offset });
      if (logs.task) q.set('task', logs.task);
      const res = await api(`/runs/${enc(id)}/logs?${q}`, { raw: true, signal: v.signal });
      const buf = await res.arrayBuffer();
      if (gen !== logs.gen) return;
      logs.offset += buf.byteLength;
      if (buf.byteLength) appendLog(logs.dec.decode(buf, { stream: true }));
    } finally {
      logs.busy = false;
    }
  }
  /* Live tail: poll by byte offset (the text only grows); a few more polls after the run ended. */
  v.every(1000, async () => {
    if (TERMINAL.has(st.run.status)) {
      if (logs.polls >= 3) return;
      logs.polls++;
    }
    await pollLogs();
  });

  /* ---- artifacts ---- */
  async function loadArtifacts() {
    try {
      const data = await api(`/runs/${enc(id)}/artifacts`, { signal: v.signal });
      if (!data.items.length) {
        artBody.replaceChildren(h('div', { class: 'empty' }, TERMINAL.has(st.run.status) ? 'This run wrote no output files.'
          : ['Files written under ', h('code', {}, '$TRAINYARD_OUTPUT_DIR'), ' are uploaded when each task ends.']));
        return;
      }
      const multi = new Set(data.items.map((a) => a.task)).size > 1;
      artBody.replaceChildren(h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Path'), h('th', {}, 'Task'), h('th', { class: 'num' }, 'Size'))),
        h('tbody', {}, data.items.map((a) => {
          const url = `/api/v1/runs/${enc(id)}/artifacts/${encPath(a.path)}${multi && a.task ? `?task=${enc(a.task)}` : ''}`;
          const link = h('a', { href: url, download: a.path.split('/').pop(), class: 'mono', 'data-artifact': a.path }, a.path);
          link.addEventListener('click', (e) => { e.preventDefault(); downloadArtifact(url, a.path); });
          return h('tr', {}, h('td', {}, link), h('td', { class: 'mono' }, a.task || '—'), h('td', { class: 'num' }, fmtBytes(a.size)));
        })))));
    } catch (e) {
      if (e.name !== 'AbortError') artBody.replaceChildren(h('div', { class: 'error-box', style: { margin: '12px 16px' } }, e.message));
    }
  }

  /* ---- charts ---- */
  const charts = createCharts(chartsHost, v, id);

  function renderCompareBar() {
    const input = h('input', { type: 'search', id: 'compare-input', placeholder: 'run id to overlay', list: 'compare-options', autocomplete: 'off', 'aria-label': 'Run id to compare with' });
    const options = h('datalist', { id: 'compare-options' });
    const addBtn = h('button', { type: 'button', class: 'small' }, 'Compare');
    const submit = () => {
      const other = input.value.trim();
      if (!other || other === id || st.compare.includes(other)) return;
      location.hash = hashFor(`/runs/${id}`, { compare: [...st.compare, other].join(',') });
    };
    addBtn.addEventListener('click', submit);
    input.addEventListener('keydown', (e) => { if (e.key === 'Enter') submit(); });
    const ids = [id, ...st.compare];
    compareBar.replaceChildren(
      ...ids.map((rid, i) => h('span', { class: 'chip', style: { display: 'inline-flex', alignItems: 'center' } },
        h('span', { class: 'swatch', style: { background: charts.color(i) } }),
        i ? h('a', { href: `#/runs/${rid}`, class: 'mono' }, rid) : h('span', { class: 'mono' }, rid),
        i ? h('button', {
          type: 'button', class: 'link', 'aria-label': `Stop comparing ${rid}`,
          onclick: () => { location.hash = hashFor(`/runs/${id}`, { compare: st.compare.filter((x) => x !== rid).join(',') }); },
        }, '×') : null)),
      input, options, addBtn);
    api(`/runs?${new URLSearchParams({ experiment: st.run.experiment, limit: 20 })}`, { signal: v.signal })
      .then((d) => options.replaceChildren(...d.items.filter((r) => r.id !== id).map((r) => h('option', { value: r.id }, `${r.status} · ${fmtTime(r.created_at)}`))))
      .catch(() => {});
  }

  function onStatus(r) {
    const was = st.run.status;
    st.run = r;
    pre.dataset.empty = TERMINAL.has(r.status) ? 'The run printed no log lines (##metric lines go to the charts, not the log).' : 'No output yet.';
    renderHead();
    renderSummary();
    renderTasks();
    history.update(r);
    fillTaskSel();
    if (TERMINAL.has(r.status) && !TERMINAL.has(was)) {
      loadArtifacts();
      charts.refresh();
    }
  }

  onStatus(run);
  renderCompareBar();
  pollLogs().catch(() => {});
  loadArtifacts();
  await charts.setRuns([id, ...st.compare]);

  if (!TERMINAL.has(run.status)) {
    followRun(id, (ev, data) => {
      if (ev === 'status') onStatus(data);
      else if (ev === 'metric') charts.addPoint(id, data);
    }, v.signal);
  }

  v.update = (q) => {
    const next = parseCompare(q);
    if (next.join(',') === st.compare.join(',')) return;
    st.compare = next;
    renderCompareBar();
    charts.setRuns([id, ...next]);
  };
}

function parseCompare(query) {
  return (query.get('compare') || '').split(',').map((s) => s.trim()).filter((s) => /^run-[0-9a-f]+$/.test(s)).slice(0, 6);
}

/* Metric charts: one uPlot per metric name, one series per compared run.
 * Series come downsampled from the server (max_points); live points are
 * appended and, when a series grows long, decimated the same way here. */
function createCharts(host, v, mainId) {
  let runs = []; /* [{id, series: Map(name -> {x: [], y: []}), total: Map(name -> count)}] */
  const charts = new Map(); /* name -> {card, plotEl, plot, valueEl, infoEl, dirty} */
  const streams = new Map();
  let flushTimer = null;
  let setGen = 0;
  const grid = h('div', { class: 'charts' });
  const empty = h('div', { class: 'empty' }, 'No metrics yet. A task reports one by printing ',
    h('code', {}, '##metric {"loss": 0.25, "step": 100}'), ' to stdout.');
  host.replaceChildren(empty);

  const palette = () => (isDark() ? PALETTE_DARK : PALETTE_LIGHT);
  const color = (i) => palette()[i % palette().length];

  const ro = new ResizeObserver((entries) => {
    for (const e of entries) {
      const c = [...charts.values()].find((x) => x.plotEl === e.target);
      if (c && c.plot) {
        const w = Math.floor(e.contentRect.width);
        if (w > 0 && w !== c.plot.width) c.plot.setSize({ width: w, height: 220 });
      }
    }
  });
  v.onDispose(() => {
    ro.disconnect();
    for (const c of charts.values()) c.plot?.destroy();
    clearTimeout(flushTimer);
  });
  const mq = matchMedia('(prefers-color-scheme: dark)');
  const onTheme = () => { for (const c of charts.values()) { c.plot?.destroy(); c.plot = null; c.dirty = true; } scheduleFlush(); };
  mq.addEventListener('change', onTheme);
  v.onDispose(() => mq.removeEventListener('change', onTheme));

  async function fetchSeries(runId, name) {
    const d = await api(`/runs/${enc(runId)}/metrics/${enc(name)}?max_points=${MAX_POINTS}`, { signal: v.signal });
    const x = new Array(d.points.length);
    const y = new Array(d.points.length);
    d.points.forEach((p, i) => { x[i] = p[0]; y[i] = p[2]; });
    return { x, y };
  }

  async function loadRun(r) {
    let items = [];
    try {
      items = (await api(`/runs/${enc(r.id)}/metrics`, { signal: v.signal })).items;
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      toast(`${r.id}: ${e.message}`, true);
      return;
    }
    await Promise.all(items.map(async (m) => {
      const s = await fetchSeries(r.id, m.name);
      const live = r.series.get(m.name);
      /* points that streamed in while fetching */
      if (live) for (let i = 0; i < live.x.length; i++) if (!s.x.length || live.x[i] > s.x[s.x.length - 1]) { s.x.push(live.x[i]); s.y.push(live.y[i]); }
      r.series.set(m.name, s);
      r.total.set(m.name, Math.max(m.count, s.x.length));
    }));
  }

  async function setRuns(ids) {
    const gen = ++setGen;
    for (const [rid, ac] of streams) if (!ids.includes(rid)) { ac.abort(); streams.delete(rid); }
    const next = ids.map((rid) => runs.find((r) => r.id === rid) || { id: rid, series: new Map(), total: new Map(), fresh: true });
    await Promise.all(next.filter((r) => r.fresh).map(async (r) => { await loadRun(r); r.fresh = false; }));
    if (gen !== setGen) return;
    const changed = next.map((r) => r.id).join() !== runs.map((r) => r.id).join();
    runs = next;
    if (changed) for (const c of charts.values()) { c.plot?.destroy(); c.plot = null; }
    for (const r of runs.slice(1)) followCompared(r.id);
    syncCharts();
  }

  function followCompared(rid) {
    if (streams.has(rid)) return;
    const ac = new AbortController();
    v.signal.addEventListener('abort', () => ac.abort(), { once: true });
    streams.set(rid, ac);
    api(`/runs/${enc(rid)}`, { signal: ac.signal }).then((r) => {
      if (!TERMINAL.has(r.status)) followRun(rid, (ev, d) => { if (ev === 'metric') addPoint(rid, d); }, ac.signal);
    }).catch(() => {});
  }

  async function refresh() {
    await Promise.all(runs.map((r) => loadRun(r).catch(() => {})));
    for (const c of charts.values()) c.dirty = true;
    syncCharts();
  }

  function names() {
    const all = new Set();
    for (const r of runs) for (const n of r.series.keys()) all.add(n);
    return sortMetrics(all);
  }

  function syncCharts() {
    const list = names();
    if (!list.length) { host.replaceChildren(empty); return; }
    if (grid.parentNode !== host) host.replaceChildren(grid);
    let prev = null;
    for (const name of list) {
      let c = charts.get(name);
      if (!c) {
        const valueEl = h('span', { class: 'v' });
        const infoEl = h('span', { class: 'faint tabular', style: { fontSize: '12px' } });
        const plotEl = h('div', { class: 'plot' });
        const reset = h('button', { type: 'button', class: 'small', title: 'Show all steps', 'aria-label': `Reset zoom of ${name}` }, 'Reset');
        const card = h('figure', { class: 'chart-card', 'data-metric': name, style: { margin: '0' } },
          h('header', {}, h('h3', { class: 'mono' }, name), valueEl, h('span', { class: 'spacer' }), infoEl, reset), plotEl);
        c = { name, card, plotEl, valueEl, infoEl, plot: null, dirty: true };
        reset.addEventListener('click', () => { c.plot?.setData(c.plot.data, true); });
        charts.set(name, c);
        ro.observe(plotEl);
      }
      const want = prev ? prev.card.nextSibling : grid.firstChild;
      if (want !== c.card) grid.insertBefore(c.card, want);
      prev = c;
      c.dirty = true;
    }
    flush();
  }

  function dataFor(name) {
    const tables = runs.map((r) => {
      const s = r.series.get(name);
      return s ? [s.x, s.y] : [[], []];
    });
    if (tables.length === 1) return [tables[0][0].slice(), tables[0][1].slice()];
    return uPlot.join(tables);
  }

  function makePlot(c, data) {
    const axis = cssVar('--chart-axis');
    const gridc = cssVar('--chart-grid');
    const width = Math.max(200, Math.floor(c.plotEl.clientWidth || 500));
    const multi = runs.length > 1;
    const opts = {
      width, height: 220,
      scales: { x: { time: false } },
      cursor: { drag: { x: true, y: false, setScale: true } },
      legend: { show: true, live: true },
      axes: [
        { stroke: axis, grid: { stroke: gridc, width: 1 }, ticks: { stroke: gridc, width: 1 }, values: (u, vals) => vals.map((x) => fmtInt(x)) },
        { stroke: axis, grid: { stroke: gridc, width: 1 }, ticks: { stroke: gridc, width: 1 }, size: 64, values: (u, vals) => vals.map(fmtNum) },
      ],
      series: [
        { label: 'step', value: (u, x) => (x == null ? '—' : fmtInt(x)) },
        ...runs.map((r, i) => ({
          label: multi ? r.id : c.name,
          stroke: color(i),
          width: 1.75,
          spanGaps: true,
          value: (u, y) => (y == null ? '—' : fmtNum(y)),
        })),
      ],
    };
    c.plotEl.replaceChildren();
    return new uPlot(opts, data, c.plotEl);
  }

  function flush() {
    clearTimeout(flushTimer);
    flushTimer = null;
    if (typeof uPlot === 'undefined') { scheduleFlush(); return; }
    for (const c of charts.values()) {
      if (!c.dirty) continue;
      c.dirty = false;
      const data = dataFor(c.name);
      if (!c.plot) c.plot = makePlot(c, data);
      else {
        const xs = c.plot.data[0];
        const sx = c.plot.scales.x;
        const zoomed = xs && xs.length > 1 && sx.min != null && (sx.min > xs[0] || sx.max < xs[xs.length - 1]);
        c.plot.setData(data, !zoomed);
      }
      const main = runs[0].series.get(c.name);
      const n = main ? main.x.length : 0;
      c.card.dataset.points = String(n);
      c.valueEl.textContent = n ? fmtNum(main.y[n - 1]) : '';
      const total = runs[0].total.get(c.name) || n;
      c.infoEl.textContent = n ? (total > n ? `${fmtInt(n)} of ${fmtInt(total)} pts` : `${fmtInt(n)} pts`) : '';
    }
  }
  function scheduleFlush() {
    if (!flushTimer) flushTimer = setTimeout(flush, 200);
  }

  /* min/max per bucket, like the server, so a long live series stays light. */
  function decimate(s, target) {
    const n = s.x.length;
    const buckets = Math.floor(target / 2);
    const per = n / buckets;
    const x = [];
    const y = [];
    for (let b = 0; b < buckets; b++) {
      const lo = Math.floor(b * per);
      const hi = Math.min(n, Math.floor((b + 1) * per));
      if (hi <= lo) continue;
      let mn = lo;
      let mx = lo;
      for (let i = lo; i < hi; i++) { if (s.y[i] < s.y[mn]) mn = i; if (s.y[i] > s.y[mx]) mx = i; }
      for (const i of mn === mx ? [mn] : [Math.min(mn, mx), Math.max(mn, mx)]) { x.push(s.x[i]); y.push(s.y[i]); }
    }
    s.x = x;
    s.y = y;
  }

  function addPoint(runId, p) {
    const r = runs.find((x) => x.id === runId);
    if (!r || typeof p.value !== 'number') return;
    let s = r.series.get(p.name);
    const isNew = !s;
    if (!s) { s = { x: [], y: [] }; r.series.set(p.name, s); }
    if (s.x.length && p.step <= s.x[s.x.length - 1]) return;
    s.x.push(p.step);
    s.y.push(p.value);
    r.total.set(p.name, (r.total.get(p.name) || 0) + 1);
    if (s.x.length > 3 * MAX_POINTS) decimate(s, MAX_POINTS);
    if (isNew && !charts.has(p.name)) { syncCharts(); return; }
    const c = charts.get(p.name);
    if (c) { c.dirty = true; scheduleFlush(); }
  }

  return { setRuns, addPoint, refresh, color };
}

async function downloadArtifact(url, path) {
  try {
    const res = await fetch(url, { headers: { Authorization: `Bearer ${session.token}` } });
    if (!res.ok) throw new Error(`download failed: ${res.status} ${res.statusText}`);
    const blob = await res.blob();
    const obj = URL.createObjectURL(blob);
    const a = h('a', { href: obj, download: path.split('/').pop(), hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(obj), 30000);
  } catch (e) {
    toast(e.message, true);
  }
}

/* --------------------------------------------------------------- nodes */

function meter(used, total, fmt = String) {
  const frac = total > 0 ? Math.min(1, used / total) : 0;
  return h('div', { class: 'meter' },
    h('span', { class: 't' }, fmt(used), h('span', {}, ` / ${fmt(total)}`)),
    h('div', { class: `bar${frac >= 1 ? ' full' : frac >= 0.75 ? ' hi' : ''}`, role: 'img', 'aria-label': `${Math.round(frac * 100)}% allocated` },
      h('i', { style: { width: `${(frac * 100).toFixed(1)}%` } })));
}

function renderNodes(main, v) {
  document.title = 'Nodes · trainyard';
  const tiles = h('div', { class: 'tiles' });
  const tbody = h('tbody');
  const message = h('div');
  const live = h('span', { class: 'live' }, 'live');
  const cols = ['Node', 'State', 'Pool', 'CPUs', 'Memory', 'GPUs', 'Tasks', 'Last heartbeat'];
  if (isAdmin()) cols.push('');
  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Nodes'), live),
    tiles,
    h('div', { class: 'panel' }, message, h('div', { class: 'table-wrap' }, h('table', { id: 'nodes-table' },
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))), tbody))));
  const rows = new Map();
  const gpuRunCache = new Map(); /* run id -> {at, run} */

  /* Which run holds each GPU: a node with one run's tasks needs no lookup; otherwise read those runs. */
  async function gpuOwners(nodes) {
    const owners = new Map();
    const need = new Set();
    for (const n of nodes) {
      const ids = [...new Set((n.tasks || []).map(taskRunId).filter(Boolean))];
      if (ids.length === 1) for (const g of n.allocated?.gpus || []) owners.set(`${n.name}/${g}`, ids[0]);
      else for (const rid of ids) need.add(rid);
    }
    const list = [...need].slice(0, 100);
    for (let i = 0; i < list.length; i += 6) {
      await Promise.all(list.slice(i, i + 6).map(async (rid) => {
        const c = gpuRunCache.get(rid);
        let run = c && Date.now() - c.at < 10000 ? c.run : null;
        if (!run) {
          try { run = await api(`/runs/${enc(rid)}`, { signal: v.signal }); } catch { return; }
          gpuRunCache.set(rid, { at: Date.now(), run });
        }
        for (const t of run.tasks || []) {
          if (!t.node || TERMINAL.has(t.status) || ['succeeded', 'failed', 'killed', 'lost'].includes(t.status)) continue;
          for (const g of t.gpus || []) owners.set(`${t.node}/${g}`, rid);
        }
      }));
    }
    return owners;
  }

  function setCell(td, sig, build) {
    if (td.dataset.sig === sig) return;
    td.dataset.sig = sig;
    td.replaceChildren(...[].concat(build()));
  }

  function makeRow(name) {
    const tds = cols.map(() => h('td'));
    const tr = h('tr', { 'data-node': name }, tds);
    let btn = null;
    if (isAdmin()) {
      btn = h('button', { type: 'button', class: 'small', 'data-action': 'drain' });
      tds[cols.length - 1].append(btn);
    }
    const row = { tr, tds, btn, node: null };
    if (btn) {
      btn.addEventListener('click', async () => {
        const drain = row.node.state !== 'draining';
        btn.disabled = true;
        try {
          await api(`/nodes/${enc(name)}/drain`, { method: 'POST', body: { drain } });
          toast(drain ? `${name} is draining: no new tasks go there` : `${name} takes tasks again`);
          await load();
        } catch (e) {
          toast(e.message, true);
        } finally {
          btn.disabled = false;
        }
      });
    }
    return row;
  }

  function updateRow(row, n, owners) {
    row.node = n;
    const [tName, tState, tPool, tCpu, tMem, tGpu, tTasks, tHb] = row.tds;
    row.tr.dataset.state = n.state;
    const labels = Object.entries(n.labels || {});
    setCell(tName, n.name + n.agent_url + (n.features || []).join() + JSON.stringify(n.labels || {}), () => h('div', {},
      h('div', { class: 'node-name' }, n.name),
      h('div', { class: 'faint', style: { fontSize: '12px' } }, n.agent_url, (n.features || []).length ? ` · ${n.features.join(', ')}` : ''),
      labels.length ? h('div', { class: 'node-labels', title: 'labels (--label), matched by runs\' node_selector' },
        ...labels.map(([k, val]) => h('span', { class: 'chip' }, `${k}=${val}`))) : null));
    setCell(tState, n.state, () => badge(n.state));
    setCell(tPool, n.pool, () => h('span', { class: 'chip' }, n.pool));
    setCell(tCpu, `${n.allocated?.cpus}/${n.cpus}`, () => meter(n.allocated?.cpus || 0, n.cpus));
    setCell(tMem, `${n.allocated?.memory_mb}/${n.memory_mb}`, () => meter(n.allocated?.memory_mb || 0, n.memory_mb, fmtMB));
    const gpus = n.gpus || [];
    const held = gpus.map((g) => owners.get(`${n.name}/${g.index}`) || ((n.allocated?.gpus || []).includes(g.index) ? '?' : ''));
    setCell(tGpu, JSON.stringify(held) + gpus.length, () => {
      if (!gpus.length) return h('span', { class: 'faint' }, 'none');
      const byRun = new Map();
      const cells = gpus.map((g, i) => {
        const rid = held[i];
        const label = `GPU ${g.index}${g.name ? ` (${g.name}${g.memory_mb ? `, ${fmtMB(g.memory_mb)}` : ''})` : ''}`;
        if (!rid) return h('span', { class: 'gpu', title: `${label}: free`, role: 'img', 'aria-label': `${label}: free` }, String(g.index));
        if (rid !== '?') byRun.set(rid, [...(byRun.get(rid) || []), g.index]);
        return rid === '?' ? h('span', { class: 'gpu busy', style: { background: 'var(--faint)' }, title: `${label}: allocated` }, String(g.index))
          : h('a', { class: 'gpu busy', href: `#/runs/${rid}`, style: { background: colorFor(rid) }, title: `${label}: held by ${rid}`, 'aria-label': `${label} held by ${rid}` }, String(g.index));
      });
      return h('div', {}, h('div', { class: 'gpumap', 'data-gpumap': n.name }, cells),
        byRun.size ? h('div', { class: 'gpu-legend' }, [...byRun].map(([rid, idx]) => h('span', { style: { marginRight: '10px' } },
          h('span', { class: 'swatch', style: { background: colorFor(rid) } }), h('a', { href: `#/runs/${rid}` }, rid), ` ${idx.join(',')}`))) : null);
    });
    const runIds = [...new Set((n.tasks || []).map(taskRunId).filter(Boolean))];
    setCell(tTasks, (n.tasks || []).join(), () => ((n.tasks || []).length
      ? h('div', {}, h('span', { class: 'tabular' }, String(n.tasks.length)),
        h('div', { style: { fontSize: '12px' } }, runIds.slice(0, 3).map((rid) => h('a', { href: `#/runs/${rid}`, class: 'mono', style: { display: 'block', whiteSpace: 'nowrap' } }, rid)),
          runIds.length > 3 ? h('span', { class: 'faint' }, `+${runIds.length - 3} more`) : null))
      : h('span', { class: 'faint' }, '0')));
    setCell(tHb, n.last_heartbeat || '', () => timeEl(n.last_heartbeat));
    tHb.classList.toggle('hb', true);
    tHb.classList.toggle('stale', n.state === 'down');
    if (row.btn) {
      row.btn.textContent = n.state === 'draining' ? 'Undrain' : 'Drain';
      row.btn.setAttribute('aria-label', `${n.state === 'draining' ? 'Undrain' : 'Drain'} ${n.name}`);
      row.btn.title = n.state === 'draining' ? 'Let the scheduler place tasks here again' : 'Place no new tasks here; running ones finish';
    }
  }

  async function load() {
    const nodes = [];
    let cursor = '';
    for (let i = 0; i < 20; i++) {
      const q = new URLSearchParams({ limit: 1000 });
      if (cursor) q.set('cursor', cursor);
      const d = await api('/nodes?' + q, { signal: v.signal });
      nodes.push(...d.items);
      if (!d.next_cursor) break;
      cursor = d.next_cursor;
    }
    const owners = await gpuOwners(nodes);
    live.classList.remove('off');
    const sum = (f) => nodes.reduce((a, n) => a + (f(n) || 0), 0);
    const ready = nodes.filter((n) => n.state === 'ready').length;
    const tile = (k, val, of) => h('div', { class: 'panel tile' }, h('div', { class: 'k' }, k), h('div', { class: 'v' }, val, of != null ? h('small', {}, ` / ${of}`) : null));
    tiles.replaceChildren(
      tile('Nodes ready', ready, nodes.length),
      tile('GPUs in use', sum((n) => n.allocated?.gpus?.length), sum((n) => n.gpus?.length)),
      tile('CPUs allocated', sum((n) => n.allocated?.cpus), sum((n) => n.cpus)),
      tile('Memory allocated', fmtMB(sum((n) => n.allocated?.memory_mb)), fmtMB(sum((n) => n.memory_mb))));
    const seen = new Set();
    let prev = null;
    for (const n of nodes) {
      let row = rows.get(n.name);
      if (!row) { row = makeRow(n.name); rows.set(n.name, row); }
      updateRow(row, n, owners);
      seen.add(n.name);
      const want = prev ? prev.tr.nextSibling : tbody.firstChild;
      if (want !== row.tr) tbody.insertBefore(row.tr, want);
      prev = row;
    }
    for (const [name, row] of rows) if (!seen.has(name)) { row.tr.remove(); rows.delete(name); }
    message.replaceChildren(nodes.length ? '' : h('div', { class: 'empty' }, 'No nodes yet. Start one with ',
      h('code', {}, 'trainyard agent --server URL --token T'), '.'));
  }
  load().catch((e) => { if (e.name !== 'AbortError') { live.classList.add('off'); toast(e.message, true); } });
  v.every(3000, () => load().catch((e) => { live.classList.add('off'); throw e; }));
}

/* ---------------------------------------------------------- experiments */

function renderExperiments(main, v) {
  document.title = 'Experiments · trainyard';
  const tbody = h('tbody');
  const more = h('button', { type: 'button' }, 'Load more');
  const message = h('div');
  const pager = h('div', { class: 'pager', hidden: true }, h('span', { class: 'spacer' }), more);
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Experiments')),
    h('div', { class: 'panel' }, message, h('div', { class: 'table-wrap' }, h('table', { id: 'experiments-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Experiment'), h('th', { class: 'num' }, 'Runs'), h('th', {}, 'Created'), h('th', {}, 'Last activity'))),
      tbody)), pager));
  let cursor = '';
  async function load() {
    const q = new URLSearchParams({ limit: 100 });
    if (cursor) q.set('cursor', cursor);
    try {
      const d = await api('/experiments?' + q, { signal: v.signal });
      for (const x of d.items) {
        tbody.append(h('tr', {},
          h('td', {}, h('a', { href: hashFor('/runs', { experiment: x.name }) }, x.name)),
          h('td', { class: 'num' }, fmtInt(x.run_count)),
          h('td', {}, h('span', { title: fmtTime(x.created_at) }, fmtTime(x.created_at))),
          h('td', {}, timeEl(x.last_activity))));
      }
      cursor = d.next_cursor || '';
      pager.hidden = !cursor;
      if (!tbody.children.length) message.replaceChildren(h('div', { class: 'empty' }, 'No experiments yet: the first run of an experiment creates it.'));
    } catch (e) {
      if (e.name !== 'AbortError') toast(e.message, true);
    }
  }
  more.addEventListener('click', load);
  load();
}

/* -------------------------------------------------------------- compute */

function renderCompute(main, v) {
  document.title = 'Compute · trainyard';
  const grid = h('div', { class: 'pools', id: 'pools' });
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Compute targets'),
    h('span', { class: 'sub' }, 'pools of nodes; a run names one as its compute_target')), grid);
  async function load() {
    const d = await api('/compute', { signal: v.signal });
    if (!d.items.length) {
      grid.replaceChildren(h('div', { class: 'panel empty' }, 'No pools yet: a pool appears when its first node registers.'));
      return;
    }
    const res = (k, free, total, f = String) => {
      const used = total - free;
      const frac = total > 0 ? Math.min(1, used / total) : 0;
      return [h('span', { class: 'k' }, k),
        h('span', { class: 'free' }, h('b', {}, f(free)), h('span', {}, ` free of ${f(total)}`)),
        h('div', { class: `bar${frac >= 1 ? ' full' : frac >= 0.75 ? ' hi' : ''}`, role: 'img', 'aria-label': `${k}: ${Math.round(frac * 100)}% in use` },
          h('i', { style: { width: `${(frac * 100).toFixed(1)}%` } }))];
    };
    grid.replaceChildren(...d.items.map((p) => h('section', { class: 'panel pool', 'data-pool': p.name, 'aria-label': `Pool ${p.name}` },
      h('header', {}, h('h2', { class: 'mono' }, p.name), badge(p.ready_nodes > 0 ? 'ready' : 'down'),
        h('span', { class: 'sub tabular' }, `${p.ready_nodes} of ${p.nodes} nodes ready`)),
      h('div', { class: 'res' }, res('GPUs', p.gpus_free, p.gpus), res('CPUs', p.cpus_free, p.cpus), res('Memory', p.memory_mb_free, p.memory_mb, fmtMB)),
      h('footer', {}, h('a', { href: '#/nodes' }, 'Nodes →'), h('a', { href: '#/runs' }, 'Runs →')))));
  }
  load().catch((e) => { if (e.name !== 'AbortError') toast(e.message, true); });
  v.every(5000, load);
}

/* ---------------------------------------------------------------- boot */

let gAt = 0;
document.addEventListener('keydown', (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || e.target.closest?.('input, select, textarea, [contenteditable]')) return;
  if (e.key === '/') {
    const f = document.querySelector('[data-filter]');
    if (f) { e.preventDefault(); f.focus(); }
    return;
  }
  if (e.key === 'g') { gAt = Date.now(); return; }
  if (gAt && Date.now() - gAt < 1500) {
    gAt = 0;
    const to = { r: '/runs', s: '/sweeps', n: '/nodes', e: '/experiments', c: '/compute' }[e.key];
    if (to && session.token) { e.preventDefault(); location.hash = '#' + to; }
  }
});
$('#skip').addEventListener('click', (e) => { e.preventDefault(); $('#main').focus(); });
window.addEventListener('hashchange', route);

async function boot() {
  if (session.token && !session.role) {
    try { session.role = await detectRole(); sessionStorage.setItem('trainyard.role', session.role); } catch { /* route() handles it */ }
  }
  renderSession();
  route();
}
boot();

export {
  $, h, add, api, toast, sleep, enc, hashFor, badge, elapsedEl, timeEl, ownerEl, fmtNum, fmtInt, fmtTime,
  fmtDuration, followStream, confirmedButton, canCancel, isDark, cssVar, TERMINAL, LIST_POLL_MS, PALETTE_LIGHT, PALETTE_DARK,
};
