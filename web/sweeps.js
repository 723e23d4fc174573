/* trainyard dashboard: hyperparameter sweeps (issue 12).
 * #/sweeps lists them; #/sweeps/ID shows one: its summary, the trials table
 * (sortable), a parallel-coordinates chart of parameters -> primary metric,
 * the best-so-far curve and the trials' metric curves overlaid. Also the
 * parts of a run page a trial adds: its sweep and parameters, and the run's
 * history of events (status changes, retries, early termination). */

import {
  h, api, toast, enc, hashFor, badge, elapsedEl, timeEl, ownerEl, fmtNum, fmtInt, fmtTime, fmtDuration,
  followStream, confirmedButton, canCancel, isDark, cssVar, TERMINAL, LIST_POLL_MS, PALETTE_LIGHT, PALETTE_DARK,
} from './app.js';

const SWEEP_STATUSES = ['running', 'completed', 'canceled', 'failed'];
const SWEEPS_PAGE = 50;
const CURVES_MAX = 60; /* trial curves drawn at most: the running ones, then the best */
const CURVE_POINTS = 300;
const CURVE_POLL_MS = 3000;
const FETCH_PARALLEL = 4;
const LOG_KINDS = new Set(['loguniform', 'qloguniform', 'lognormal', 'qlognormal']);

const isStopped = (t) => t.status === 'canceled' && t.reason === 'early_terminated';
const exprKind = (e) => Object.keys(e || {})[0] || '';
const fmtParam = (v) => (typeof v === 'number' ? fmtNum(v) : v == null ? '—' : String(v));
const goalArrow = (goal) => (goal === 'minimize' ? '↓' : '↑');

function exprText(e) {
  const kind = exprKind(e);
  return `${kind}(${(e[kind] || []).map((x) => (typeof x === 'string' ? JSON.stringify(x) : String(x))).join(', ')})`;
}

/* The policy's name and every number it was given, e.g. "bandit · slack_factor 0.1 · delay_evaluation 5". */
function policyText(p) {
  if (!p) return 'none';
  const parts = Object.entries(p).filter(([k, val]) => k !== 'policy' && val != null && val !== false)
    .map(([k, val]) => `${k} ${val === true ? 'yes' : typeof val === 'number' ? fmtNum(val) : val}`);
  return [p.policy.replace(/_/g, ' '), ...parts].join(' · ');
}

function trialCounts(c) {
  const parts = [];
  const running = (c.running || 0) + (c.starting || 0);
  if (running) parts.push(`${running} running`);
  if (c.queued) parts.push(`${c.queued} queued`);
  if (c.completed) parts.push(`${c.completed} completed`);
  if (c.early_terminated) parts.push(`${c.early_terminated} stopped early`);
  const canceled = (c.canceled || 0) - (c.early_terminated || 0);
  if (canceled) parts.push(`${canceled} canceled`);
  if (c.failed) parts.push(`${c.failed} failed`);
  return parts.join(' · ');
}

function trialsDone(s) {
  const c = s.trials || {};
  return (c.completed || 0) + (c.failed || 0) + (c.canceled || 0);
}

function progressEl(s) {
  const total = s.spec.max_total_runs;
  const done = trialsDone(s);
  const frac = total > 0 ? Math.min(1, done / total) : 0;
  return h('div', { class: 'trial-progress' },
    h('span', { class: 'tabular' }, h('b', {}, fmtInt(done)), ` / ${fmtInt(total)}`),
    h('div', { class: 'bar', role: 'img', 'aria-label': `${done} of ${total} trials done` }, h('i', { style: { width: `${(frac * 100).toFixed(1)}%` } })),
    h('span', { class: 'faint counts' }, trialCounts(s.trials || {})));
}

function bestEl(s) {
  const b = s.best_run;
  const pm = s.spec.primary_metric;
  if (!b) return h('span', { class: 'faint' }, '—');
  return h('span', { class: 'best' }, h('b', { class: 'tabular' }, fmtNum(b.value)),
    h('span', { class: 'faint' }, ` ${pm.name} ${goalArrow(pm.goal)} · `), h('a', { href: `#/runs/${b.id}` }, `trial ${b.trial}`));
}

function paramChips(params) {
  const e = Object.entries(params || {});
  if (!e.length) return h('span', { class: 'faint' }, '—');
  return e.map(([k, val]) => h('span', { class: 'chip mono', 'data-param': k }, `${k}=${fmtParam(val)}`));
}

/* Runs fn over items, FETCH_PARALLEL at a time. */
async function inBatches(items, fn) {
  for (let i = 0; i < items.length; i += FETCH_PARALLEL) await Promise.all(items.slice(i, i + FETCH_PARALLEL).map(fn));
}

/* ------------------------------------------------------------ the list */

export function renderSweeps(main, v, query) {
  document.title = 'Sweeps · trainyard';
  const st = { query, rows: new Map(), next: null, gen: 0 };
  const live = h('span', { class: 'live', title: 'Refreshed every few seconds' }, 'live');
  const statusSel = h('select', { id: 'f-sweep-status' }, h('option', { value: '' }, 'any status'),
    SWEEP_STATUSES.map((s) => h('option', { value: s }, s)));
  statusSel.addEventListener('change', () => { location.hash = hashFor('/sweeps', { status: statusSel.value }); });
  const tbody = h('tbody');
  const message = h('div');
  const newestBtn = h('button', { type: 'button', class: 'small', onclick: () => go('') }, 'Newest');
  const olderBtn = h('button', { type: 'button', class: 'small', onclick: () => go(st.next) }, 'Older →');
  const go = (cursor) => { location.hash = hashFor('/sweeps', { status: st.query.get('status'), cursor }); };
  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Sweeps'), live, h('span', { class: 'spacer' }),
      h('span', { class: 'sub' }, 'Start one with ', h('code', {}, 'trainyard sweep DIR --search …'))),
    h('div', { class: 'panel' },
      h('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
        h('label', { class: 'field', for: 'f-sweep-status' }, 'Status', statusSel)),
      message,
      h('div', { class: 'table-wrap' }, h('table', { id: 'sweeps-table' },
        h('thead', {}, h('tr', {}, ['Sweep', 'Status', 'Experiment', 'Owner', 'Trials', 'Best', 'Created'].map((t) => h('th', { scope: 'col' }, t)))),
        tbody)),
      h('div', { class: 'pager' }, h('span', { class: 'spacer' }), newestBtn, olderBtn)));

  function makeRow(s) {
    const tds = Array.from({ length: 7 }, () => h('td'));
    const tr = h('tr', { 'data-sweep': s.id }, tds);
    let sig = '';
    return {
      tr,
      update(x) {
        const next = JSON.stringify([x.status, x.trials, x.best_run, x.ended_at]);
        if (next === sig) return;
        sig = next;
        tr.dataset.status = x.status;
        tds[0].replaceChildren(h('a', { class: 'run-id', href: `#/sweeps/${x.id}` }, x.id));
        tds[0].className = 'nowrap';
        tds[1].replaceChildren(h('div', { class: 'status-cell' }, badge(x.status, x.error), elapsedEl({ ...x, started_at: x.created_at })));
        tds[2].replaceChildren(h('a', { href: hashFor('/runs', { experiment: x.experiment }) }, x.experiment));
        tds[3].replaceChildren(ownerEl(x.owner));
        tds[4].replaceChildren(progressEl(x));
        tds[4].className = 'trials-cell';
        tds[5].replaceChildren(bestEl(x));
        tds[6].replaceChildren(timeEl(x.created_at));
        tds[6].className = 'nowrap';
      },
    };
  }

  async function load() {
    const gen = ++st.gen;
    const q = new URLSearchParams({ limit: SWEEPS_PAGE });
    for (const k of ['status', 'cursor']) if (st.query.get(k)) q.set(k, st.query.get(k));
    try {
      const d = await api('/sweeps?' + q, { signal: v.signal });
      if (gen !== st.gen) return;
      live.classList.remove('off');
      st.next = d.next_cursor;
      const seen = new Set();
      let prev = null;
      for (const s of d.items) {
        let row = st.rows.get(s.id);
        if (!row) { row = makeRow(s); st.rows.set(s.id, row); }
        row.update(s);
        seen.add(s.id);
        const want = prev ? prev.tr.nextSibling : tbody.firstChild;
        if (want !== row.tr) tbody.insertBefore(row.tr, want);
        prev = row;
      }
      for (const [sid, row] of st.rows) if (!seen.has(sid)) { row.tr.remove(); st.rows.delete(sid); }
      message.replaceChildren(d.items.length ? '' : h('div', { class: 'empty' }, st.query.get('status') ? 'No sweeps with this status.'
        : ['No sweeps yet. A sweep runs a script over a parameter space: ', h('code', {}, "trainyard sweep DIR --entry train.py --search 'lr=loguniform(-9,-2)' --metric accuracy --goal max --runs 20"), '.']));
      newestBtn.hidden = !st.query.get('cursor');
      olderBtn.disabled = !st.next;
    } catch (e) {
      if (e.name === 'AbortError' || gen !== st.gen) return;
      live.classList.add('off');
      toast(e.message, true);
    }
  }

  v.update = (q) => {
    st.query = q;
    statusSel.value = q.get('status') || '';
    load();
  };
  statusSel.value = query.get('status') || '';
  load();
  v.every(LIST_POLL_MS, load);
}

/* ---------------------------------------------------------- one sweep */

export async function renderSweep(main, v, id) {
  document.title = `${id} · trainyard`;
  const st = {
    sweep: null,
    trials: new Map(), /* trial number -> trial row of GET /sweeps/ID/runs */
    sort: { key: 'trial', desc: false },
    stopMessages: new Map(), /* run id -> the policy's message */
    asked: new Set(), /* run ids whose events were fetched */
    curves: new Map(), /* run id -> {x, y, final} */
    renderTimer: null,
  };

  const statusBox = h('span');
  const actions = h('div', { class: 'title-row' });
  const alertBox = h('div');
  const summary = h('dl', { class: 'summary', id: 'sweep-summary' });
  const tableHost = h('div', { class: 'table-wrap' });
  const trialsInfo = h('span', { class: 'faint tabular' });
  const pcHost = h('div', { class: 'parcoords', id: 'parcoords' });
  const bestHost = h('div', { class: 'plot' });
  const curvesHost = h('div', { class: 'plot' });
  const curvesInfo = h('span', { class: 'faint tabular', style: { fontSize: '12px' } });
  const specPre = h('pre', { class: 'env', style: { margin: '0' } });
  const section = (hid, title, note, ...body) => h('section', { class: 'panel section', 'aria-labelledby': hid },
    h('div', { class: 'section-head' }, h('h2', { id: hid }, title), note), ...body);

  main.append(
    h('div', { class: 'crumbs' }, h('a', { href: '#/sweeps' }, 'Sweeps'), ' / '),
    h('div', { class: 'title-row' }, h('h1', { class: 'mono' }, id), statusBox, h('span', { class: 'spacer' }), actions),
    alertBox, summary,
    section('h-trials', 'Trials', trialsInfo, tableHost),
    section('h-parcoords', 'Parameters → metric', h('span', { class: 'faint' }, 'one line per trial; dashed: stopped early; click a line to open its run'), pcHost),
    h('div', { class: 'sweep-charts' },
      h('figure', { class: 'chart-card', id: 'best-chart', style: { margin: '0' } },
        h('header', {}, h('h3', {}, 'Best so far'), h('span', { class: 'faint best-note', style: { fontSize: '12px' } })), bestHost),
      h('figure', { class: 'chart-card', id: 'curves-chart', style: { margin: '0' } },
        h('header', {}, h('h3', { class: 'curves-title' }, 'Trial curves'), h('span', { class: 'spacer' }), curvesInfo), curvesHost)),
    h('section', { class: 'panel section' },
      h('details', { class: 'spec' }, h('summary', { class: 'section-head' }, h('h2', {}, 'Spec'), h('span', { class: 'faint' }, 'as accepted, defaults filled in')),
        h('div', { class: 'section-body' }, specPre))));

  let sweep;
  let rows;
  try {
    [sweep, rows] = await Promise.all([api(`/sweeps/${enc(id)}`, { signal: v.signal }), api(`/sweeps/${enc(id)}/runs`, { signal: v.signal })]);
  } catch (e) {
    if (e.name === 'AbortError') return;
    main.replaceChildren(h('div', { class: 'error-box', role: 'alert' }, e.status === 404 ? `There is no sweep ${id}.` : e.message),
      h('a', { href: '#/sweeps' }, '← All sweeps'));
    return;
  }
  st.sweep = sweep;
  for (const t of rows.items) st.trials.set(t.trial, t);
  main.querySelector('.crumbs').append(h('a', { href: hashFor('/runs', { experiment: sweep.experiment }) }, sweep.experiment));
  const spec = sweep.spec;
  const metric = spec.primary_metric;
  const maximize = metric.goal === 'maximize';
  const paramNames = Object.keys(spec.parameters);
  main.querySelector('.curves-title').textContent = `Trial curves: ${metric.name}`;
  specPre.textContent = JSON.stringify(spec, null, 2);

  /* ---- header and summary ---- */
  function renderHead() {
    const s = st.sweep;
    statusBox.replaceChildren(h('span', { class: 'status-cell' }, badge(s.status), elapsedEl({ ...s, started_at: s.created_at })));
    /* rebuilt only when the status moves: a live update must not close an open confirmation */
    if (actions.dataset.status !== s.status) {
      actions.dataset.status = s.status;
      actions.replaceChildren();
      if (canCancel() && s.status === 'running') {
        actions.append(...confirmedButton({
          action: 'cancel-sweep', label: 'Cancel sweep', question: 'Cancel its running trials and start no more?', yes: 'Yes, cancel the sweep',
          async run() {
            onSweep(await api(`/sweeps/${enc(id)}/cancel`, { method: 'POST' }));
            toast(`${id} canceled`);
            refreshTrials();
          },
        }));
      }
    }
    alertBox.replaceChildren();
    if (s.error) alertBox.append(h('div', { class: 'error-box', role: 'alert', style: { marginTop: '14px' } }, h('b', {}, `${s.status === 'failed' ? 'Failed' : 'Ended'}: `), s.error));
  }

  function renderSummary() {
    const s = st.sweep;
    const item = (k, val, opts = {}) => h('div', { class: opts.wide ? 'wide' : null, 'data-item': k },
      h('dt', {}, k), h('dd', { title: opts.title || null }, val));
    const b = s.best_run;
    summary.replaceChildren(
      item('Experiment', h('a', { href: hashFor('/runs', { experiment: s.experiment }) }, s.experiment)),
      item('Owner', ownerEl(s.owner)),
      item('Sampling', spec.sampling),
      item('Primary metric', h('span', {}, h('span', { class: 'mono' }, metric.name), ` ${goalArrow(metric.goal)} ${metric.goal}`)),
      item('Trials', progressEl(s)),
      item('Limits', `${fmtInt(spec.max_total_runs)} trials · ${fmtInt(spec.max_concurrent_runs)} at a time · ${spec.max_duration_seconds ? fmtDuration(spec.max_duration_seconds * 1000) : 'no time limit'}`),
      item('Early termination', policyText(spec.early_termination), { title: spec.early_termination ? JSON.stringify(spec.early_termination) : 'no policy: every trial runs to its end' }),
      item('Seed', String(spec.seed)),
      item('Created', fmtTime(s.created_at)),
      item('Ended', fmtTime(s.ended_at)),
      item('Best run', b ? h('span', { class: 'best-run' },
        h('a', { class: 'run-id', href: `#/runs/${b.id}` }, b.id), ` trial ${b.trial} · `,
        h('b', { class: 'tabular' }, fmtNum(b.value)), ` ${metric.name} · `, paramChips(b.parameters))
        : h('span', { class: 'faint' }, 'none yet: no trial has completed with a value'), { wide: true }),
      item('Parameters', Object.entries(spec.parameters).map(([k, e]) => h('span', { class: 'chip mono' }, `${k} ~ ${exprText(e)}`)), { wide: true }));
  }

  function onSweep(s) {
    st.sweep = s;
    renderHead();
    renderSummary();
  }

  /* ---- the trials table ---- */
  const columns = [
    { key: 'trial', label: 'Trial', num: true, get: (t) => t.trial },
    { key: 'status', label: 'Status', get: (t) => (isStopped(t) ? 'stopped early' : t.status) },
    ...paramNames.map((p) => ({ key: `p:${p}`, label: p, num: true, mono: true, get: (t) => t.parameters?.[p] })),
    { key: 'value', label: metric.name, num: true, mono: true, get: (t) => t.value },
    { key: 'duration', label: 'Time', num: true, get: (t) => (t.started_at ? Date.parse(t.ended_at || new Date().toISOString()) - Date.parse(t.started_at) : null) },
  ];

  function compare(col, a, b) {
    const x = col.get(a);
    const y = col.get(b);
    if (x == null || y == null) return x == null && y == null ? a.trial - b.trial : x == null ? 1 : -1; /* no value: last */
    const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y), 'en', { numeric: true });
    return (st.sort.desc ? -c : c) || a.trial - b.trial;
  }

  function sortBy(key) {
    if (st.sort.key === key) st.sort.desc = !st.sort.desc;
    else st.sort = { key, desc: key === 'value' ? maximize : false }; /* the metric sorts best first */
    renderTable();
  }

  function renderTable() {
    const col = columns.find((c) => c.key === st.sort.key);
    const list = [...st.trials.values()].sort((a, b) => compare(col, a, b));
    const head = h('tr', {}, columns.map((c) => {
      const sorted = c.key === st.sort.key;
      return h('th', { scope: 'col', class: c.num ? 'num' : null, 'data-sort': c.key, 'aria-sort': sorted ? (st.sort.desc ? 'descending' : 'ascending') : 'none' },
        h('button', { type: 'button', class: 'sort', onclick: () => sortBy(c.key), title: `Sort by ${c.label}` },
          c.key === 'value' ? `${c.label} ${goalArrow(metric.goal)}` : c.label, h('span', { class: 'arrow', 'aria-hidden': 'true' }, sorted ? (st.sort.desc ? '▼' : '▲') : '')));
    }));
    const best = st.sweep.best_run?.id;
    const focused = document.activeElement?.closest?.('#trials-table th')?.dataset.sort;
    const body = list.map((t) => {
      const tr = h('tr', { 'data-trial': String(t.trial), 'data-run': t.id, 'data-status': t.status, class: `link-row${t.id === best ? ' best-row' : ''}` },
        h('td', { class: 'num' }, h('a', { href: `#/runs/${t.id}`, title: t.id }, String(t.trial))),
        h('td', { class: 'nowrap' }, trialBadge(t, st.stopMessages.get(t.id))),
        paramNames.map((p) => h('td', { class: 'num mono', 'data-param': p }, fmtParam(t.parameters?.[p]))),
        h('td', { class: 'num mono value' }, t.value == null ? h('span', { class: 'faint' }, '—') : fmtNum(t.value)),
        h('td', { class: 'num nowrap' }, t.started_at ? elapsedEl({ ...t, status: TERMINAL.has(t.status) ? t.status : 'running' }) : h('span', { class: 'faint' }, '—')));
      tr.addEventListener('click', (e) => { if (!e.target.closest('a, button')) location.hash = `#/runs/${t.id}`; });
      return tr;
    });
    tableHost.replaceChildren(list.length ? h('table', { id: 'trials-table' }, h('thead', {}, head), h('tbody', {}, body))
      : h('div', { class: 'empty' }, st.sweep.status === 'running' ? 'No trials yet: the scheduler starts them as nodes have room.' : 'This sweep ran no trials.'));
    if (focused) tableHost.querySelector(`th[data-sort="${CSS.escape(focused)}"] button`)?.focus();
    trialsInfo.textContent = `${list.length} trial${list.length === 1 ? '' : 's'} · click a column to sort`;
  }

  function trialBadge(t, message) {
    if (isStopped(t)) {
      return h('span', { class: 'badge canceled stopped', 'data-stopped': 'true', title: message || 'Stopped by the early termination policy' }, 'stopped early');
    }
    return badge(t.status, t.reason || null);
  }

  /* The policy's message for each stopped trial, from its run's events. */
  async function fetchStopMessages() {
    const need = [...st.trials.values()].filter((t) => isStopped(t) && !st.asked.has(t.id));
    if (!need.length) return;
    for (const t of need) st.asked.add(t.id);
    await inBatches(need, async (t) => {
      try {
        const run = await api(`/runs/${enc(t.id)}`, { signal: v.signal });
        const ev = (run.events || []).filter((e) => e.type === 'early_terminated').pop();
        if (ev) st.stopMessages.set(t.id, ev.data?.message || policyText(ev.data));
      } catch (e) {
        if (e.name !== 'AbortError') st.asked.delete(t.id);
      }
    });
    scheduleRender();
  }

  /* ---- charts ---- */
  const pc = createParallel(pcHost, spec, v);
  const charts = createSweepCharts(bestHost, curvesHost, v, maximize);

  /* The trials whose curves are drawn: all of them, or the running ones and then the best. */
  function curveTrials() {
    const all = [...st.trials.values()].filter((t) => t.status !== 'queued');
    if (all.length <= CURVES_MAX) return all.sort((a, b) => a.trial - b.trial);
    const live = all.filter((t) => !TERMINAL.has(t.status));
    const rest = all.filter((t) => TERMINAL.has(t.status) && t.value != null)
      .sort((a, b) => (maximize ? b.value - a.value : a.value - b.value));
    return [...live, ...rest].slice(0, CURVES_MAX).sort((a, b) => a.trial - b.trial);
  }

  async function refreshCurves() {
    const shown = curveTrials();
    const need = shown.filter((t) => !st.curves.get(t.id)?.final);
    await inBatches(need, async (t) => {
      const final = TERMINAL.has(t.status);
      let pts = [];
      try {
        pts = (await api(`/runs/${enc(t.id)}/metrics/${enc(metric.name)}?max_points=${CURVE_POINTS}`, { signal: v.signal })).points || [];
      } catch (e) {
        if (e.name === 'AbortError') throw e;
        if (e.status !== 404) return;
      }
      st.curves.set(t.id, { x: pts.map((p) => p[0]), y: pts.map((p) => p[2]), final });
    });
    const total = [...st.trials.values()].filter((t) => t.status !== 'queued').length;
    curvesInfo.textContent = shown.length < total ? `${shown.length} of ${total} trials: the running and the best` : '';
    charts.setCurves(shown.map((t) => ({ trial: t, curve: st.curves.get(t.id) })).filter((c) => c.curve), st.sweep.best_run?.id);
  }

  function renderCharts() {
    const list = [...st.trials.values()];
    pc.draw(list, st.sweep.best_run?.id);
    /* completion order: the trials that completed with a value, by when they ended */
    const done = list.filter((t) => t.status === 'completed' && t.value != null && t.ended_at)
      .sort((a, b) => Date.parse(a.ended_at) - Date.parse(b.ended_at) || a.trial - b.trial);
    charts.setBest(done);
  }

  function renderAll() {
    clearTimeout(st.renderTimer);
    st.renderTimer = null;
    renderTable();
    renderCharts();
  }
  /* A big sweep's table is rebuilt less often. */
  function scheduleRender() {
    if (!st.renderTimer) st.renderTimer = setTimeout(renderAll, st.trials.size > 500 ? 1000 : 150);
  }
  v.onDispose(() => clearTimeout(st.renderTimer));

  async function refreshTrials() {
    const d = await api(`/sweeps/${enc(id)}/runs`, { signal: v.signal });
    st.trials = new Map(d.items.map((t) => [t.trial, t]));
    scheduleRender();
    fetchStopMessages();
  }

  onSweep(sweep);
  renderAll();
  fetchStopMessages();
  refreshCurves().catch(() => {});

  /* Live: the sweep's event stream sends each trial as it changes and the sweep itself. */
  if (sweep.status === 'running') {
    followStream(`/sweeps/${enc(id)}/events`, (ev, d) => ev === 'sweep' && d.status !== 'running', (ev, d) => {
      if (ev === 'trial') {
        const was = st.trials.get(d.trial);
        st.trials.set(d.trial, d);
        if (isStopped(d) && !(was && isStopped(was))) fetchStopMessages();
        scheduleRender();
      } else if (ev === 'sweep') {
        onSweep(d);
        scheduleRender();
      }
    }, v.signal);
  }
  v.every(CURVE_POLL_MS, async () => {
    const pending = [...st.trials.values()].some((t) => t.status !== 'queued' && !st.curves.get(t.id)?.final);
    if (pending) await refreshCurves();
  });
}

/* ----------------------------------------- parallel coordinates (SVG) */

const SVG_NS = 'http://www.w3.org/2000/svg';
const TICK_CHARS = 16; /* longer category labels are cut, whole in their tooltip */

function svg(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, val] of Object.entries(attrs || {})) if (val != null) el.setAttribute(k, String(val));
  for (const k of kids) if (k != null) el.append(k instanceof Node ? k : String(k));
  return el;
}

function niceTicks(lo, hi, n) {
  const span = hi - lo;
  const step0 = span / Math.max(1, n);
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || 10 * mag;
  const out = [];
  for (let x = Math.ceil(lo / step) * step; x <= hi + step * 1e-9; x += step) out.push(Math.abs(x) < step * 1e-9 ? 0 : x);
  return out;
}

/* An axis for one parameter: where a value goes (0 = bottom, 1 = top), and its ticks. */
function paramAxis(name, expr, values) {
  const kind = exprKind(expr);
  const args = expr[kind] || [];
  if (kind === 'choice') {
    const keys = args.map((x) => JSON.stringify(x));
    const n = keys.length;
    const pos = (val) => {
      const i = keys.indexOf(JSON.stringify(val));
      return i < 0 ? null : n === 1 ? 0.5 : i / (n - 1);
    };
    return { name, kind: 'categorical', pos, ticks: args.map((x, i) => ({ at: n === 1 ? 0.5 : i / (n - 1), label: fmtParam(x) })) };
  }
  const nums = values.filter((x) => typeof x === 'number' && Number.isFinite(x));
  let lo;
  let hi;
  if (kind === 'uniform' || kind === 'quniform') [lo, hi] = args;
  else if (kind === 'loguniform' || kind === 'qloguniform') [lo, hi] = [Math.exp(args[0]), Math.exp(args[1])];
  else if (kind === 'randint') [lo, hi] = [0, Math.max(0, args[0] - 1)];
  for (const x of nums) {
    lo = lo == null ? x : Math.min(lo, x);
    hi = hi == null ? x : Math.max(hi, x);
  }
  if (lo == null) [lo, hi] = [0, 1];
  if (LOG_KINDS.has(kind) && lo > 0) {
    const [a, b] = lo === hi ? [Math.log10(lo) - 0.5, Math.log10(hi) + 0.5] : [Math.log10(lo), Math.log10(hi)];
    const pos = (val) => (typeof val === 'number' && val > 0 ? (Math.log10(val) - a) / (b - a) : null);
    const decades = [];
    for (let e = Math.ceil(a); e <= Math.floor(b); e++) decades.push(10 ** e);
    const ticks = decades.length >= 2 ? decades : [10 ** a, 10 ** ((a + b) / 2), 10 ** b];
    return { name, kind: 'log', pos, ticks: ticks.map((x) => ({ at: pos(x), label: fmtNum(x) })) };
  }
  if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
  const pos = (val) => (typeof val === 'number' ? (val - lo) / (hi - lo) : null);
  return { name, kind: 'linear', pos, ticks: niceTicks(lo, hi, 5).map((x) => ({ at: pos(x), label: fmtNum(x) })) };
}

function createParallel(host, spec, v) {
  const names = Object.keys(spec.parameters);
  const metric = spec.primary_metric;
  const maximize = metric.goal === 'maximize';
  let last = { trials: [], best: null };
  let width = 0;
  const innerWidth = () => Math.floor(host.clientWidth) - 24; /* less .parcoords' padding */
  const ro = new ResizeObserver(() => {
    const w = innerWidth();
    if (w > 0 && Math.abs(Math.max(480, w) - width) > 4) draw(last.trials, last.best);
  });
  ro.observe(host);
  v.onDispose(() => ro.disconnect());

  function draw(trials, best) {
    last = { trials, best };
    width = Math.max(480, innerWidth() > 0 ? innerWidth() : 900);
    const height = 320;
    const shown = trials.filter((t) => t.parameters && t.status !== 'queued');
    const axes = names.map((n) => paramAxis(n, spec.parameters[n], shown.map((t) => t.parameters[n])));
    /* the first axis' labels go left of it: room for the longest */
    const longest = Math.max(0, ...(axes[0]?.ticks || []).map((tk) => Math.min(TICK_CHARS, tk.label.length)));
    const m = { top: 34, bottom: 22, left: Math.max(56, 12 + longest * 6.6), right: 72 };
    const plotH = height - m.top - m.bottom;
    const vals = shown.map((t) => t.value).filter((x) => typeof x === 'number' && Number.isFinite(x));
    let vlo = Math.min(...vals);
    let vhi = Math.max(...vals);
    if (!vals.length) [vlo, vhi] = [0, 1];
    if (vlo === vhi) { vlo -= Math.abs(vlo) * 0.1 || 1; vhi += Math.abs(vhi) * 0.1 || 1; }
    const vpos = (x) => (typeof x === 'number' ? (x - vlo) / (vhi - vlo) : null);
    axes.push({ name: metric.name, kind: 'metric', pos: vpos, ticks: niceTicks(vlo, vhi, 5).map((x) => ({ at: vpos(x), label: fmtNum(x) })) });
    const step = axes.length > 1 ? (width - m.left - m.right) / (axes.length - 1) : 0;
    const ax = (i) => m.left + i * step;
    const ay = (p) => m.top + (1 - p) * plotH;
    const root = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `Parallel coordinates of ${names.join(', ')} against ${metric.name}`, 'data-lines': String(shown.length) });
    if (!shown.length) {
      root.append(svg('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', class: 'pc-empty' }, 'No trials have started yet.'));
      host.replaceChildren(root);
      return;
    }
    const lines = svg('g', { class: 'pc-lines' });
    /* worst first, so the best lines are drawn on top */
    const order = [...shown].sort((a, b) => (a.value == null) - (b.value == null) || (maximize ? (b.value ?? 0) - (a.value ?? 0) : (a.value ?? 0) - (b.value ?? 0))).reverse();
    for (const t of order) {
      const pts = [];
      axes.forEach((a, i) => {
        const p = i < names.length ? a.pos(t.parameters[names[i]]) : a.pos(t.value);
        if (p != null && Number.isFinite(p)) pts.push(`${ax(i).toFixed(1)},${ay(Math.min(1, Math.max(0, p))).toFixed(1)}`);
      });
      if (pts.length < 2) continue;
      const goodness = t.value == null ? null : maximize ? vpos(t.value) : 1 - vpos(t.value);
      const cls = ['pc-line', isStopped(t) ? 'stopped' : '', t.value == null ? 'novalue' : '', TERMINAL.has(t.status) ? '' : 'live', t.id === best ? 'best' : ''].filter(Boolean).join(' ');
      const title = `trial ${t.trial} (${isStopped(t) ? 'stopped early' : t.status}): ${names.map((n) => `${n}=${fmtParam(t.parameters[n])}`).join(', ')} → ${metric.name} ${fmtParam(t.value)}`;
      lines.append(svg('a', { href: `#/runs/${t.id}`, 'data-trial': String(t.trial) },
        svg('path', { d: `M${pts.join('L')}`, class: cls, style: goodness == null ? null : `stroke: ${rampColor(goodness)}` }, svg('title', {}, title))));
    }
    const axesG = svg('g', { class: 'pc-axes' });
    axes.forEach((a, i) => {
      const x = ax(i);
      const g = svg('g', { class: `pc-axis ${a.kind}`, 'data-axis': a.name, 'data-scale': a.kind });
      g.append(svg('line', { x1: x, x2: x, y1: m.top, y2: m.top + plotH }));
      g.append(svg('text', { x, y: m.top - 14, 'text-anchor': 'middle', class: 'pc-name' }, a.kind === 'metric' ? `${a.name} ${goalArrow(metric.goal)}` : a.name));
      const right = i === axes.length - 1;
      for (const tk of a.ticks) {
        if (tk.at == null || tk.at < -1e-9 || tk.at > 1 + 1e-9) continue;
        const y = ay(tk.at);
        g.append(svg('line', { x1: x - 3, x2: x + 3, y1: y, y2: y }));
        const label = tk.label.length > TICK_CHARS ? `${tk.label.slice(0, TICK_CHARS - 1)}…` : tk.label;
        g.append(svg('text', { x: right ? x + 6 : x - 6, y: y + 4, 'text-anchor': right ? 'start' : 'end', class: 'pc-tick' }, label,
          label !== tk.label ? svg('title', {}, tk.label) : null));
      }
      axesG.append(g);
    });
    root.append(lines, axesG);
    host.replaceChildren(root);
  }

  return { draw };
}

/* 0 = worst (pale) .. 1 = best (deep blue; bright in the dark theme). */
function rampColor(t) {
  const x = Math.min(1, Math.max(0, t));
  return `hsl(222 ${Math.round(25 + 60 * x)}% ${Math.round(isDark() ? 32 + 38 * x : 80 - 42 * x)}%)`;
}

/* ------------------------------- best so far and the trials' curves (uPlot) */

/* x axes count trials and steps: whole numbers only */
const INT_INCRS = Array.from({ length: 30 }, (_, i) => [1, 2, 5][i % 3] * 10 ** Math.floor(i / 3));

function createSweepCharts(bestHost, curvesHost, v, maximize) {
  const state = { best: null, curves: null, bestData: null, curveSet: null, curveSig: '', retry: null };
  const palette = () => (isDark() ? PALETTE_DARK : PALETTE_LIGHT);
  const axes = (xLabel) => {
    const axis = cssVar('--chart-axis');
    const grid = cssVar('--chart-grid');
    return [
      { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, label: xLabel, incrs: INT_INCRS, values: (u, vals) => vals.map((x) => fmtInt(x)) },
      { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, size: 64, values: (u, vals) => vals.map(fmtNum) },
    ];
  };
  const widthOf = (el) => Math.max(240, Math.floor(el.clientWidth || 500));

  const ro = new ResizeObserver((entries) => {
    for (const e of entries) {
      const plot = e.target === bestHost ? state.best : state.curves;
      const w = Math.floor(e.contentRect.width);
      if (plot && w > 0 && w !== plot.width) plot.setSize({ width: w, height: 240 });
    }
  });
  ro.observe(bestHost);
  ro.observe(curvesHost);
  v.onDispose(() => { ro.disconnect(); state.best?.destroy(); state.curves?.destroy(); clearTimeout(state.retry); });
  const mq = matchMedia('(prefers-color-scheme: dark)');
  const onTheme = () => {
    state.best?.destroy(); state.best = null;
    state.curves?.destroy(); state.curves = null; state.curveSig = '';
    if (state.bestData) setBest(state.bestData);
    if (state.curveSet) setCurves(...state.curveSet);
  };
  mq.addEventListener('change', onTheme);
  v.onDispose(() => mq.removeEventListener('change', onTheme));

  /* uPlot is a deferred classic script; it is there by the time data is, but wait if not. */
  const ready = (fn) => {
    if (typeof uPlot !== 'undefined') return true;
    clearTimeout(state.retry);
    state.retry = setTimeout(fn, 100);
    return false;
  };

  function setBest(done) {
    state.bestData = done;
    if (!ready(() => setBest(state.bestData))) return;
    const x = done.map((t, i) => i + 1);
    const y = done.map((t) => t.value);
    const best = [];
    for (const val of y) best.push(best.length ? (maximize ? Math.max(best[best.length - 1], val) : Math.min(best[best.length - 1], val)) : val);
    bestHost.parentElement.dataset.points = String(x.length);
    bestHost.parentElement.querySelector('.best-note').textContent = x.length ? 'x: trials in the order they completed' : 'no trial has completed yet';
    const data = [x, y, best];
    if (state.best) { state.best.setData(data); return; }
    const c = palette();
    bestHost.replaceChildren();
    state.best = new uPlot({
      width: widthOf(bestHost), height: 240,
      scales: { x: { time: false } },
      legend: { show: true, live: true },
      axes: axes('trial, in completion order'),
      series: [
        { label: 'completed', value: (u, val) => (val == null ? '—' : `#${fmtInt(val)}`) },
        { label: 'trial value', stroke: c[1], width: 0, paths: () => null, points: { show: true, size: 6, stroke: c[1], fill: c[1] }, value: (u, val) => (val == null ? '—' : fmtNum(val)) },
        { label: 'best so far', stroke: c[0], width: 2, paths: uPlot.paths.stepped({ align: 1 }), value: (u, val) => (val == null ? '—' : fmtNum(val)) },
      ],
    }, data, bestHost);
  }

  /* curves: [{trial, curve: {x, y}}]; one series per trial, stopped ones dashed and faded. */
  function setCurves(curves, bestId) {
    state.curveSet = [curves, bestId];
    if (!ready(() => setCurves(...state.curveSet))) return;
    const tables = curves.map((c) => [c.curve.x, c.curve.y]);
    const data = tables.length === 0 ? [[]] : tables.length === 1 ? [tables[0][0].slice(), tables[0][1].slice()] : uPlot.join(tables);
    curvesHost.parentElement.dataset.series = String(curves.length);
    const sig = curves.map((c) => `${c.trial.id}:${isStopped(c.trial)}:${c.trial.id === bestId}`).join();
    if (state.curves && sig === state.curveSig) { state.curves.setData(data); return; }
    state.curves?.destroy();
    state.curveSig = sig;
    const c = palette();
    curvesHost.replaceChildren();
    state.curves = new uPlot({
      width: widthOf(curvesHost), height: 240,
      scales: { x: { time: false } },
      cursor: { drag: { x: true, y: false, setScale: true } },
      legend: { show: curves.length <= 12, live: true },
      axes: axes('step'),
      series: [
        { label: 'step', value: (u, val) => (val == null ? '—' : fmtInt(val)) },
        ...curves.map((x, i) => {
          const stopped = isStopped(x.trial);
          const isBest = x.trial.id === bestId;
          const color = c[i % c.length];
          return {
            label: `trial ${x.trial.trial}${stopped ? ' (stopped early)' : ''}`,
            stroke: stopped ? `${color}80` : color, /* #rrggbbaa: half opaque */
            width: isBest ? 3 : 1.5,
            dash: stopped ? [5, 4] : undefined,
            spanGaps: true,
            value: (u, val) => (val == null ? '—' : fmtNum(val)),
          };
        }),
      ],
    }, data, curvesHost);
  }

  return { setBest, setCurves };
}

/* ------------------------------------------------ the run page's parts */

/* A trial's sweep and parameters, as items of the run page's summary. */
export function trialSummaryItems(run) {
  if (!run.sweep_id) return null;
  return [
    h('div', { 'data-item': 'Sweep' }, h('dt', {}, 'Sweep'), h('dd', {},
      h('a', { href: `#/sweeps/${run.sweep_id}`, class: 'mono', id: 'run-sweep' }, run.sweep_id), ` · trial ${run.trial}`)),
    h('div', { class: 'wide', 'data-item': 'Parameters' }, h('dt', {}, 'Parameters'), h('dd', { id: 'run-parameters' }, paramChips(run.parameters))),
  ];
}

function eventText(e) {
  const d = e.data || {};
  switch (e.type) {
  case 'status': return [h('span', {}, 'status → '), badge(d.status), d.error ? h('span', { class: 'faint' }, ` ${d.error}`) : null];
  case 'retry': return [`retried: attempt ${d.attempt ?? '?'}`, d.error ? h('span', { class: 'faint' }, ` after: ${d.error}`) : null];
  case 'early_terminated': return [h('span', { class: 'badge canceled stopped' }, 'stopped early'), h('span', {}, d.message || (d.policy || '').replace(/_/g, ' ')), /* the message names the policy */
    h('span', { class: 'faint' }, ` (interval ${d.interval ?? '?'}, step ${d.step ?? '?'}, value ${fmtNum(d.value)}, threshold ${fmtNum(d.threshold)})`)];
  case 'progress': return [d.message || '', d.task ? h('span', { class: 'faint mono' }, ` ${d.task}`) : null]; /* what the agent did for a task: pulling or building its image */
  case 'log_truncated': return [`log cut at ${fmtInt(d.limit)} bytes`, d.task ? h('span', { class: 'faint mono' }, ` ${d.task}`) : null];
  case 'metrics_truncated': return [`metrics cut at ${fmtInt(d.limit)} points`, d.task ? h('span', { class: 'faint mono' }, ` ${d.task}`) : null];
  default: return [e.type.replace(/_/g, ' '), ' ', h('span', { class: 'faint mono' }, JSON.stringify(d))];
  }
}

/* The run's history: its events (status changes, retries, early termination ...), oldest first. */
export function createHistory() {
  const list = h('ol', { class: 'history', id: 'run-history' });
  const section = h('section', { class: 'panel section', 'aria-labelledby': 'h-history', hidden: true },
    h('div', { class: 'section-head' }, h('h2', { id: 'h-history' }, 'History'), h('span', { class: 'faint' }, 'what happened to the run, oldest first')), list);
  let sig = '';
  return {
    section,
    update(run) {
      if (!Array.isArray(run.events)) return; /* a server without run events */
      const next = JSON.stringify(run.events);
      if (next === sig) return;
      sig = next;
      section.hidden = !run.events.length;
      list.replaceChildren(...run.events.map((e) => h('li', { 'data-event': e.type, class: e.type === 'early_terminated' ? 'early' : null },
        h('time', { datetime: e.time, title: e.time }, fmtTime(e.time)), h('span', { class: 'what' }, eventText(e)))));
    },
  };
}
