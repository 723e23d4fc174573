// End-to-end tests of the web dashboard: playwright-core drives Debian's
// chromium against a real trainyard server with real agents and real runs.
//
// Run from the repository root: node --test --test-concurrency=1 tests/web/
// ($TRAINYARD_BIN picks the binary; `make web-test` sets it.)
// Every process (server, agents, chromium) is started here, in its own
// process group, and stopped by pid in after(), also when a test fails.
// Screenshots of every page go to build/web-screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const BIN = process.env.TRAINYARD_BIN || path.join(REPO, 'build/asan/bin/trainyard');
const CHROMIUM = '/usr/bin/chromium';
const SHOTS = path.join(REPO, 'build/web-screenshots');
const BAD_LOG_WORDS = ['Sanitizer', 'runtime error:'];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'trainyard-web-'));
// A root agent's tasks run as users of their own, who must traverse to
// their task directories under the agents' work directories here.
fs.chmodSync(tmp, 0o711);
const procs = [];
let failed = false;
let url;
let adminToken;
let viewerToken;
let browser;
let page;
const runs = {};
const pageErrors = [];

/* ------------------------------------------------------------ processes */

function start(name, argv, extraEnv = {}) {
  const log = path.join(tmp, `${name}.log`);
  const fd = fs.openSync(log, 'w');
  const child = spawn(argv[0], argv.slice(1), {
    detached: true, /* its own process group: killed as one */
    stdio: ['ignore', fd, fd],
    env: { ...process.env, ...extraEnv },
  });
  fs.closeSync(fd);
  const p = { name, child, log, exited: false, code: null, signal: null };
  p.done = new Promise((resolve) => child.on('exit', (code, signal) => {
    Object.assign(p, { exited: true, code, signal });
    resolve();
  }));
  procs.push(p);
  return p;
}

async function stop(p, { group = false, timeoutMs = 8000 } = {}) {
  if (p.exited) return;
  try { process.kill(group ? -p.child.pid : p.child.pid, 'SIGTERM'); } catch { /* gone */ }
  const t = setTimeout(() => { try { process.kill(-p.child.pid, 'SIGKILL'); } catch { /* gone */ } }, timeoutMs);
  await p.done;
  clearTimeout(t);
}

/* Last resort if the test process dies: no orphans. */
process.on('exit', () => {
  for (const p of procs) if (!p.exited) { try { process.kill(-p.child.pid, 'SIGKILL'); } catch { /* gone */ } }
});

async function waitFor(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function api(method, p, body, token = adminToken) {
  const res = await fetch(url + '/api/v1' + p, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: json ?? text };
}

/* A training script: reports loss/accuracy each step, logs a line, writes an output file. */
const TRAIN = `
import os, sys, time
steps, dt, speed = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
for i in range(steps):
    loss = 2.0 / (1 + speed * i) + 0.05 * ((i * 7919) % 13) / 13
    print('##metric {"loss": %.5f, "accuracy": %.4f, "step": %d}' % (loss, 1 - 1 / (1 + 0.7 * speed * i), i), flush=True)
    print('epoch %d/%d: loss=%.4f' % (i + 1, steps, loss), flush=True)
    time.sleep(dt)
out = os.environ['TRAINYARD_OUTPUT_DIR']
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, 'model.onnx'), 'wb') as f:
    f.write(b'ONNX' * 256)
print('saved model.onnx', flush=True)
`;

async function submit(spec) {
  const r = await api('POST', '/runs', spec);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.id;
}

function train(experiment, steps, dt, extra = {}, speed = 0.3) {
  return submit({ experiment, command: ['/usr/bin/python3', '-c', TRAIN, String(steps), String(dt), String(speed)], ...extra });
}

async function shot(p, name) {
  await p.evaluate(() => window.scrollTo(0, 0));
  await p.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function login(p, token) {
  await p.goto(url + '/');
  await p.waitForURL(/#\/login/);
  await p.locator('#token').fill(token);
  await p.getByRole('button', { name: 'Sign in' }).click();
  await p.waitForSelector('#runs-table', { timeout: 10000 });
}

/* --------------------------------------------------------------- set-up */

before(async () => {
  try { await setUp(); } catch (e) { failed = true; throw e; }
});

async function setUp() {
  fs.mkdirSync(SHOTS, { recursive: true });
  assert.ok(fs.existsSync(BIN), `trainyard binary not found at ${BIN} (run make)`);
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found (apt-get install chromium)`);

  const data = path.join(tmp, 'server');
  const server = start('server', [BIN, 'server', '--listen', '127.0.0.1:0', '--data', data]);
  await waitFor(() => fs.existsSync(path.join(data, 'server.url')) || (server.exited && Promise.reject(new Error('server exited'))), 15000, 'server.url');
  url = fs.readFileSync(path.join(data, 'server.url'), 'utf8').trim();
  adminToken = fs.readFileSync(path.join(data, 'admin.token'), 'utf8').trim();

  for (const name of ['n1', 'n2']) {
    start(`agent-${name}`, [BIN, 'agent', '--server', url, '--token', adminToken, '--name', name,
      '--listen', '127.0.0.1:0', '--work', path.join(tmp, name), '--cpus', '2', '--gpus', '2', '--grace', '2']);
  }

  /* chromium with a fresh profile; playwright attaches over the DevTools protocol */
  const profile = fs.mkdtempSync(path.join(tmp, 'chromium-profile-'));
  start('chromium', [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
    `--user-data-dir=${profile}`, '--remote-debugging-address=127.0.0.1', '--remote-debugging-port=0', 'about:blank']);
  const portFile = path.join(profile, 'DevToolsActivePort');
  const [port, wsPath] = await waitFor(() => {
    const lines = fs.existsSync(portFile) ? fs.readFileSync(portFile, 'utf8').split('\n') : [];
    return lines.length >= 2 && lines[1] ? lines : null;
  }, 20000, 'chromium DevToolsActivePort');
  browser = await chromium.connectOverCDP(`ws://127.0.0.1:${port}${wsPath}`, { timeout: 15000 });

  for (const name of ['n1', 'n2']) {
    await waitFor(async () => (await api('GET', `/nodes/${name}`)).body.state === 'ready', 20000, `node ${name} ready`);
  }
  const viewer = await api('POST', '/tokens', { name: 'dash-viewer', role: 'viewer' });
  assert.equal(viewer.status, 201);
  viewerToken = viewer.body.secret;

  /* some history so that every page has something to show */
  runs.failed = await submit({ experiment: 'cifar10-resnet', command: ['/usr/bin/python3', '-c', 'import sys; print("bad input shape", file=sys.stderr); sys.exit(3)'], tags: { team: 'vision' } });
  runs.queued = await submit({ experiment: 'bert-finetune', command: ['/usr/bin/python3', '-c', 'pass'], distributed_backend: 'ps', node_count: 3, worker_count: 4, parameter_server_count: 2, tags: { team: 'nlp' } });

  const context = await browser.newContext({ viewport: { width: 1360, height: 860 }, colorScheme: 'light', acceptDownloads: true });
  page = await context.newPage();
  page.setDefaultTimeout(10000);
  page.on('pageerror', (e) => pageErrors.push(e.message));
}

after(async () => {
  try { if (browser) await browser.close(); } catch { /* the process is killed below anyway */ }
  for (const p of [...procs].reverse()) await stop(p, { group: p.name === 'chromium' });
  for (const p of procs) { try { process.kill(-p.child.pid, 'SIGKILL'); } catch { /* already gone */ } }
  if (failed) {
    for (const p of procs) {
      const text = fs.existsSync(p.log) ? fs.readFileSync(p.log, 'utf8') : '';
      console.error(`----- ${p.name} (${p.log}) last lines -----\n${text.split('\n').slice(-25).join('\n')}`);
    }
    console.error(`logs kept in ${tmp}`);
  } else {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

/* A wrapper that remembers failures, so after() can print the logs. */
function t(name, fn, timeout = 40000) {
  test(name, { timeout }, async () => {
    try { await fn(); } catch (e) { failed = true; throw e; }
  });
}

/* ---------------------------------------------------------------- tests */

t('login with a token; a wrong token is refused', async () => {
  await page.goto(url + '/');
  await page.waitForURL(/#\/login/);
  await page.locator('#token').waitFor();
  await shot(page, '01-login');
  await page.locator('#token').fill('ty_not-a-real-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'did not accept' }).waitFor();
  await page.locator('#token').fill(adminToken);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForSelector('#runs-table');
  assert.equal(await page.locator('.session .role').textContent(), 'admin');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('trainyard.token')), adminToken);
});

t('a submitted run appears, turns running, then completed, without a reload', async () => {
  await page.evaluate(() => {
    window.__noReload = true;
    window.__seen = {};
    const record = () => {
      for (const tr of document.querySelectorAll('#runs-table tr[data-run]')) {
        const l = (window.__seen[tr.dataset.run] ||= []);
        if (l[l.length - 1] !== tr.dataset.status) l.push(tr.dataset.status);
      }
    };
    new MutationObserver(record).observe(document.querySelector('#runs-table tbody'),
      { subtree: true, childList: true, attributes: true, attributeFilter: ['data-status'] });
    record();
  });
  runs.a = await train('mnist-cnn', 24, 0.25, { tags: { team: 'vision', lr: '0.01' } }, 0.12);
  const row = page.locator(`#runs-table tr[data-run="${runs.a}"]`);
  await row.waitFor({ timeout: 10000 });
  await page.locator(`#runs-table tr[data-run="${runs.a}"][data-status="running"]`).waitFor({ timeout: 15000 });
  await shot(page, '02-runs-live');
  await page.locator(`#runs-table tr[data-run="${runs.a}"][data-status="completed"]`).waitFor({ timeout: 30000 });
  const seen = await page.evaluate((id) => window.__seen[id], runs.a);
  assert.ok(seen.indexOf('running') >= 0 && seen.indexOf('running') < seen.indexOf('completed'), `statuses seen: ${seen}`);
  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page was reloaded');
  await row.getByText('single').waitFor();
  await row.locator('.metrics-cell').getByText('loss').waitFor();
});

t('run list filters by experiment, status and tag, and pages with a cursor', async () => {
  await page.locator('#f-experiment').fill('cifar10-resnet');
  await page.locator('#f-experiment').press('Enter');
  await page.waitForFunction(() => [...document.querySelectorAll('#runs-table tr[data-run]')].every((tr) => tr.children[2].textContent === 'cifar10-resnet')
    && document.querySelectorAll('#runs-table tr[data-run]').length === 1);
  await page.locator(`tr[data-run="${runs.failed}"][data-status="failed"]`).waitFor();
  await page.evaluate(() => { location.hash = '#/runs?status=queued'; });
  await page.locator(`tr[data-run="${runs.queued}"]`).waitFor();
  assert.equal(await page.locator('#runs-table tr[data-run]').count(), 1);
  await page.evaluate(() => { location.hash = '#/runs?tag=lr:0.01'; });
  await page.waitForFunction((id) => {
    const rows = document.querySelectorAll('#runs-table tr[data-run]');
    return rows.length === 1 && rows[0].dataset.run === id;
  }, runs.a);
  /* one run per page: Older walks back in time, Newer returns */
  await page.evaluate(() => { location.hash = '#/runs?limit=1'; });
  const first = await page.locator('#runs-table tr[data-run]').first().getAttribute('data-run');
  await page.getByRole('button', { name: 'Older →' }).click();
  await page.waitForFunction((id) => {
    const rows = document.querySelectorAll('#runs-table tr[data-run]');
    return rows.length === 1 && rows[0].dataset.run !== id;
  }, first);
  await page.getByRole('button', { name: '← Newer' }).click();
  await page.waitForFunction((id) => document.querySelector('#runs-table tr[data-run]')?.dataset.run === id, first);
  assert.equal(await page.evaluate(() => window.__noReload), true);
});

t('runs show their owner: a column in the list that filters by it, and a field on the run page', async () => {
  const ana = await api('POST', '/tokens', { name: 'ana-lab', role: 'user' });
  assert.equal(ana.status, 201);
  const r = await api('POST', '/runs', { experiment: 'owned-run', command: ['/usr/bin/python3', '-c', 'pass'], compute_target: 'nowhere' }, ana.body.secret);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.body.owner, 'ana-lab');
  await page.evaluate(() => { location.hash = '#/runs'; });
  const row = page.locator(`#runs-table tr[data-run="${r.body.id}"]`);
  await row.locator('td.owner').getByText('ana-lab').waitFor();
  assert.equal(await page.locator(`#runs-table tr[data-run="${runs.failed}"] td.owner`).textContent(), 'admin');
  await row.locator('td.owner a').click();
  await page.waitForFunction((id) => {
    const rows = document.querySelectorAll('#runs-table tr[data-run]');
    return rows.length === 1 && rows[0].dataset.run === id && location.hash.includes('owner=ana-lab');
  }, r.body.id);
  await page.evaluate((id) => { location.hash = `#/runs/${id}`; }, r.body.id);
  await page.locator('dt', { hasText: /^Owner$/ }).waitFor();
  assert.equal(await page.locator('dt:text-is("Owner") + dd').textContent(), 'ana-lab');
  const cancel = await api('POST', `/runs/${r.body.id}/cancel`, {});
  assert.equal(cancel.status, 200);
});

t('run detail: the chart gains points and the log tail grows while it runs; artifacts download', async () => {
  runs.b = await train('mnist-cnn', 40, 0.25, { tags: { team: 'vision', lr: '0.003' } });
  await page.evaluate((id) => { location.hash = `#/runs/${id}`; }, runs.b);
  await page.locator('.title-row .badge.running').waitFor({ timeout: 15000 });
  const loss = page.locator('figure[data-metric="loss"]');
  await loss.waitFor({ timeout: 10000 });
  const points = async () => Number(await loss.getAttribute('data-points'));
  const p0 = await points();
  await waitFor(async () => (await points()) >= p0 + 3, 10000, 'more loss points');
  const lines = () => page.locator('#log .ln').count();
  const l0 = await lines();
  await waitFor(async () => (await lines()) >= l0 + 3, 10000, 'more log lines');
  assert.ok(await page.locator('#log').getByText('epoch 1/40: loss=').count() >= 1);
  await page.locator('figure[data-metric="accuracy"] canvas').waitFor();
  assert.match(await page.locator('tr[data-task="main"] td').nth(2).textContent(), /^n[12]$/);
  await page.getByRole('button', { name: 'Environment of main' }).click();
  await page.locator('tr.env-row').getByText('TRAINYARD_TASK_TYPE=main').waitFor();
  await shot(page, '03-run-running');
  await page.locator('.title-row .badge.completed').waitFor({ timeout: 30000 });
  await waitFor(async () => (await points()) === 40, 10000, 'all 40 loss points');
  const link = page.locator('a[data-artifact="model.onnx"]');
  await link.waitFor({ timeout: 10000 });
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  assert.equal(download.suggestedFilename(), 'model.onnx');
  const saved = path.join(tmp, 'model.onnx');
  await download.saveAs(saved);
  assert.equal(fs.statSync(saved).size, 1024);
  await page.locator('#log').getByText('saved model.onnx').waitFor({ timeout: 10000 });
  /* overlay another run's series */
  await page.locator('#compare-input').fill(runs.a);
  await page.getByRole('button', { name: 'Compare', exact: true }).click();
  await page.waitForFunction(() => document.querySelectorAll('figure[data-metric="loss"] .u-series').length >= 3);
  await shot(page, '04-run-completed-compare');
});

t('cancel from the page stops a run', async () => {
  runs.c = await train('imagenet-vit', 400, 0.25, { tags: { team: 'vision' } });
  await page.evaluate((id) => { location.hash = `#/runs/${id}`; }, runs.c);
  await page.locator('.title-row .badge.running').waitFor({ timeout: 15000 });
  await page.locator('#log .ln').first().waitFor({ timeout: 10000 });
  await page.locator('[data-action="cancel"]').click();
  await page.locator('[data-action="confirm-cancel"]').click();
  await page.locator('.title-row .badge.canceled').waitFor({ timeout: 10000 });
  assert.equal(await page.locator('[data-action="cancel"]').count(), 0);
  const r = await api('GET', `/runs/${runs.c}`);
  assert.equal(r.body.status, 'canceled');
  await waitFor(async () => (await api('GET', `/runs/${runs.c}`)).body.tasks.every((x) => x.status === 'killed'), 10000, 'task killed');
  await waitFor(async () => (await api('GET', '/nodes')).body.items.every((n) => !n.tasks.some((id) => id.startsWith(runs.c))), 10000, 'node released');
});

t('Rerun on a run page submits it again and opens the new run', async () => {
  /* runs.c was canceled above: its page offers Rerun but no Cancel */
  await page.evaluate((id) => { location.hash = `#/runs/${id}`; }, runs.c);
  await page.locator('.title-row .badge.canceled').waitFor({ timeout: 10000 });
  assert.equal(await page.locator('[data-action="cancel"]').count(), 0);
  await page.locator('[data-action="rerun"]').click();
  await page.waitForFunction((id) => /^#\/runs\/run-[0-9a-f]{12}$/.test(location.hash) && !location.hash.endsWith(id), runs.c);
  const newId = await page.evaluate(() => location.hash.slice('#/runs/'.length));
  await page.locator('.chip', { hasText: `trainyard/rerun_of:${runs.c}` }).waitFor({ timeout: 10000 });
  const r = await api('GET', `/runs/${newId}`);
  assert.equal(r.status, 200);
  assert.equal(r.body.tags['trainyard/rerun_of'], runs.c);
  assert.equal(r.body.experiment, 'imagenet-vit');
  const orig = (await api('GET', `/runs/${runs.c}`)).body;
  assert.deepEqual(r.body.spec, { ...orig.spec, tags: { ...orig.spec.tags, 'trainyard/rerun_of': runs.c } });
  await shot(page, '05b-rerun');
  assert.equal((await api('POST', `/runs/${newId}/cancel`)).status, 200);
  await waitFor(async () => (await api('GET', '/nodes')).body.items.every((n) => !n.tasks.some((id) => id.startsWith(newId))), 10000, 'node released');
});

t('a ps run shows each task\'s node, address and TF_CONFIG', async () => {
  runs.ps = await submit({
    experiment: 'resnet50-ps', command: ['/usr/bin/python3', '-c', 'import time; print("training", flush=True); time.sleep(4)'],
    distributed_backend: 'ps', node_count: 2, worker_count: 2, parameter_server_count: 1, tags: { team: 'vision' },
  });
  await page.evaluate((id) => { location.hash = `#/runs/${id}`; }, runs.ps);
  await page.locator('.title-row .badge.running').waitFor({ timeout: 15000 });
  await page.locator('.summary').getByText('ps 2×(2w+1ps)').waitFor();
  const run = (await api('GET', `/runs/${runs.ps}`)).body;
  const ps0 = run.tasks.find((x) => x.name === 'ps-0');
  const w1 = run.tasks.find((x) => x.name === 'worker-1');
  assert.match(await page.locator('tr[data-task="worker-1"] td').nth(3).textContent(), /^127\.0\.0\.1:\d+$/);
  await page.getByRole('button', { name: 'Environment of worker-1' }).click();
  const env = await page.locator('pre[data-env="worker-1"]').textContent();
  const tf = JSON.parse(/^TF_CONFIG=(.*)$/m.exec(env)[1]);
  assert.deepEqual(tf.task, { type: 'worker', index: 1 });
  assert.deepEqual(tf.cluster.ps, [ps0.address]);
  assert.equal(tf.cluster.worker[1], w1.address);
  assert.match(env, new RegExp(`^TRAINYARD_NODE=${w1.node}$`, 'm'));
  await page.getByRole('button', { name: 'Environment of ps-0' }).click();
  await page.locator('.title-row .badge.completed').waitFor({ timeout: 20000 });
  await shot(page, '05-ps-run-tf-config');
});

t('nodes page shows the GPU map; an admin drains and undrains a node', async () => {
  runs.d = await train('llm-pretrain', 400, 0.25, { use_gpu: true, gpus_per_process: 2, tags: { team: 'nlp' } });
  await waitFor(async () => (await api('GET', `/runs/${runs.d}`)).body.status === 'running', 15000, 'GPU run running');
  await page.evaluate(() => { location.hash = '#/nodes'; });
  await page.locator('tr[data-node="n1"]').waitFor();
  await page.locator(`a.gpu[href="#/runs/${runs.d}"]`).first().waitFor({ timeout: 10000 });
  assert.equal(await page.locator(`a.gpu[href="#/runs/${runs.d}"]`).count(), 2);
  const idle = (await api('GET', `/runs/${runs.d}`)).body.tasks[0].node === 'n1' ? 'n2' : 'n1';
  const row = page.locator(`tr[data-node="${idle}"]`);
  await row.getByRole('button', { name: `Drain ${idle}` }).click();
  await page.locator(`tr[data-node="${idle}"][data-state="draining"]`).waitFor();
  assert.equal((await api('GET', `/nodes/${idle}`)).body.state, 'draining');
  await shot(page, '06-nodes-draining');
  await row.getByRole('button', { name: `Undrain ${idle}` }).click();
  await page.locator(`tr[data-node="${idle}"][data-state="ready"]`).waitFor();
  assert.equal((await api('GET', `/nodes/${idle}`)).body.state, 'ready');
});

t('experiments and compute pages', async () => {
  await page.evaluate(() => { location.hash = '#/experiments'; });
  await page.locator('#experiments-table').getByRole('link', { name: 'mnist-cnn' }).waitFor();
  await shot(page, '07-experiments');
  await page.evaluate(() => { location.hash = '#/compute'; });
  const pool = page.locator('[data-pool="default"]');
  await pool.waitFor();
  await pool.getByText('2 of 2 nodes ready').waitFor();
  await pool.getByText('free of 4').first().waitFor();
  await shot(page, '08-compute');
  await page.evaluate(() => { location.hash = '#/runs'; });
  await page.locator(`tr[data-run="${runs.d}"][data-status="running"]`).waitFor();
  await shot(page, '09-runs');
});

t('dark mode renders every page', async () => {
  await page.emulateMedia({ colorScheme: 'dark' });
  await shot(page, '10-dark-runs');
  await page.evaluate((id) => { location.hash = `#/runs/${id}`; }, runs.d);
  await page.locator('figure[data-metric="loss"] canvas').waitFor({ timeout: 10000 });
  await page.waitForTimeout(600); /* a few live points */
  await shot(page, '11-dark-run-live');
  await page.evaluate(() => { location.hash = '#/nodes'; });
  await page.locator(`a.gpu[href="#/runs/${runs.d}"]`).first().waitFor();
  await shot(page, '12-dark-nodes');
  await page.emulateMedia({ colorScheme: 'light' });
});

/* fn(page) in a browser context of its own, signed in with the viewer token. */
async function asViewer(fn) {
  const context = await browser.newContext({ viewport: { width: 1360, height: 860 } });
  try {
    const vp = await context.newPage();
    vp.setDefaultTimeout(10000);
    vp.on('pageerror', (e) => pageErrors.push(`viewer: ${e.message}`));
    await login(vp, viewerToken);
    await fn(vp);
  } finally {
    await context.close();
  }
}

t('a viewer sees no action buttons, and the API refuses it anyway', async () => {
  await asViewer(async (vp) => {
    assert.equal(await vp.locator('.session .role').textContent(), 'viewer');
    await vp.locator(`tr[data-run="${runs.d}"]`).waitFor();
    assert.equal(await vp.locator('[data-action]').count(), 0);
    await vp.evaluate((id) => { location.hash = `#/runs/${id}`; }, runs.d);
    await vp.locator('.title-row .badge.running').waitFor();
    await vp.locator('figure[data-metric="loss"]').waitFor();
    assert.equal(await vp.locator('[data-action]').count(), 0);
    assert.equal(await vp.getByRole('button', { name: /cancel/i }).count(), 0);
    await shot(vp, '13-viewer-run');
    await vp.evaluate(() => { location.hash = '#/nodes'; });
    await vp.locator('tr[data-node="n1"]').waitFor();
    assert.equal(await vp.locator('[data-action]').count(), 0);
    assert.equal(await vp.getByRole('button', { name: /drain/i }).count(), 0);
    const refused = await vp.evaluate(async ([id, token]) => (await fetch(`/api/v1/runs/${id}/cancel`,
      { method: 'POST', headers: { Authorization: `Bearer ${token}` } })).status, [runs.d, viewerToken]);
    assert.equal(refused, 403);
    assert.equal((await api('GET', `/runs/${runs.d}`)).body.status, 'running');
  });
  assert.equal((await api('POST', `/runs/${runs.d}/cancel`)).status, 200);
});

/* A sweep trial: reports the curve in $CURVE ("0.5,0.6"), one report a step, then stays alive a
 * few seconds so that a policy's verdict (made within about a third of a second) finds it running. */
const CURVE_TRIAL = `
import json, os, time
for i, v in enumerate(os.environ["CURVE"].split(",")):
    print("##metric " + json.dumps({"acc": float(v), "step": i}), flush=True)
    time.sleep(0.1)
time.sleep(3)
`;
/* A trial that reports once and then runs until it is stopped. */
const LR_TRIAL = `
import json, os, signal
print("##metric " + json.dumps({"acc": float(os.environ["LR"]) * 10, "step": 0}), flush=True)
signal.pause()
`;

async function canvasInk(p, sel) {
  return p.evaluate((s) => {
    const c = document.querySelector(s);
    if (!c) return 0;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  }, sel);
}

t('sweeps: the list, a sweep page with its trials, charts and a stopped trial, and cancel', async () => {
  /* median stopping over scripted curves, one trial at a time: trial 2 (0.1 below the median 0.55
   * of the others at interval 1) is stopped (tests/integration/test_sweeps.py has the rule) */
  const curves = ['0.5,0.6,0.7', '0.6,0.7,0.8', '0.1,0.2,0.3', '0.9,0.9,0.8'];
  const a = await api('POST', '/sweeps', {
    run: { experiment: 'sweep-curves', command: ['/usr/bin/python3', '-c', CURVE_TRIAL] },
    parameters: { 'env:CURVE': { choice: curves }, 'env:BATCH': { choice: [32] } },
    sampling: 'grid', primary_metric: { name: 'acc', goal: 'maximize' },
    max_total_runs: 4, max_concurrent_runs: 1, early_termination: { policy: 'median_stopping' },
  });
  assert.equal(a.status, 201, JSON.stringify(a.body));
  const sweepA = a.body.id;

  /* the list shows it and follows it live until it completes */
  await page.evaluate(() => { location.hash = '#/sweeps'; window.__noReload = true; });
  const rowA = page.locator(`#sweeps-table tr[data-sweep="${sweepA}"]`);
  await rowA.waitFor();
  assert.equal(await page.locator('#nav a[aria-current="page"]').textContent(), 'Sweeps');
  assert.equal(await rowA.locator('td').nth(2).textContent(), 'sweep-curves');
  assert.equal(await rowA.locator('td').nth(3).textContent(), 'admin');
  await page.locator(`#sweeps-table tr[data-sweep="${sweepA}"][data-status="running"]`).waitFor();
  assert.match(await rowA.locator('.trial-progress .tabular').textContent(), /^[0-4] \/ 4$/);
  await shot(page, '14-sweeps-running');
  await page.locator(`#sweeps-table tr[data-sweep="${sweepA}"][data-status="completed"]`).waitFor({ timeout: 90000 });
  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page was reloaded');
  await rowA.getByText('1 stopped early').waitFor();
  const sa = (await api('GET', `/sweeps/${sweepA}`)).body;
  assert.equal(sa.trials.early_terminated, 1, JSON.stringify(sa));
  assert.match(await rowA.locator('td').nth(5).textContent(), new RegExp(`^${sa.best_run.value} acc ↑ · trial ${sa.best_run.trial}$`));

  /* the sweep page */
  await rowA.locator(`a[href="#/sweeps/${sweepA}"]`).click();
  await page.locator('.title-row .badge.completed').waitFor();
  const items = (await api('GET', `/sweeps/${sweepA}/runs`)).body.items;
  assert.equal(items.length, 4);
  const stopped = items.filter((x) => x.status === 'canceled' && x.reason === 'early_terminated');
  assert.equal(stopped.length, 1, JSON.stringify(items));
  const stoppedRun = (await api('GET', `/runs/${stopped[0].id}`)).body;
  const message = stoppedRun.events.find((e) => e.type === 'early_terminated').data.message;
  assert.ok(message);
  const table = page.locator('#trials-table');
  await table.locator('tbody tr').nth(3).waitFor();
  assert.equal(await table.locator('tbody tr').count(), 4);
  assert.deepEqual(await table.locator('thead th').evaluateAll((ths) => ths.map((th) => th.dataset.sort)),
    ['trial', 'status', 'p:env:CURVE', 'p:env:BATCH', 'value', 'duration']);
  const badgeEl = table.locator(`tr[data-run="${stopped[0].id}"] [data-stopped]`);
  await page.waitForFunction(([id, msg]) => document.querySelector(`#trials-table tr[data-run="${id}"] [data-stopped]`)?.title === msg, [stopped[0].id, message]);
  assert.equal(await badgeEl.textContent(), 'stopped early');
  assert.equal(await table.locator('[data-stopped]').count(), 1);
  assert.equal(await table.locator(`tr[data-run="${stopped[0].id}"] td[data-param="env:CURVE"]`).textContent(), curves[2]);
  /* sorting: the metric column sorts best first, a second click flips it */
  const values = () => table.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.run));
  const byValue = (desc) => [...items].sort((x, y) => (desc ? y.value - x.value : x.value - y.value)).map((x) => x.id);
  await page.locator('#trials-table th[data-sort="value"] button').click();
  assert.equal(await page.locator('#trials-table th[data-sort="value"]').getAttribute('aria-sort'), 'descending');
  assert.deepEqual(await values(), byValue(true));
  await page.locator('#trials-table th[data-sort="value"] button').click();
  assert.equal(await page.locator('#trials-table th[data-sort="value"]').getAttribute('aria-sort'), 'ascending');
  assert.deepEqual(await values(), byValue(false));
  await page.locator('#trials-table th[data-sort="trial"] button').click();
  assert.deepEqual(await values(), [...items].sort((x, y) => x.trial - y.trial).map((x) => x.id));
  /* the summary: the policy and the best run */
  await page.locator('[data-item="Early termination"] dd').getByText('median stopping').waitFor();
  assert.equal(await page.locator('[data-item="Best run"] a.run-id').getAttribute('href'), `#/runs/${sa.best_run.id}`);
  /* parallel coordinates: one line per trial over a categorical axis per parameter and the metric's */
  await page.waitForFunction(() => document.querySelectorAll('#parcoords path.pc-line').length === 4);
  assert.equal(await page.locator('#parcoords path.pc-line.stopped').count(), 1);
  assert.equal(await page.locator('#parcoords g[data-axis="env:CURVE"]').getAttribute('data-scale'), 'categorical');
  assert.equal(await page.locator('#parcoords g[data-axis="acc"]').getAttribute('data-scale'), 'metric');
  for (const d of await page.locator('#parcoords path.pc-line').evaluateAll((ps) => ps.map((x) => x.getAttribute('d')))) {
    assert.equal(d.split('L').length, 3, d); /* through both parameters and the metric */
  }
  /* best so far: the 3 completed trials; the curves: one series per trial, the stopped one dashed */
  await page.waitForFunction(() => document.querySelector('#best-chart')?.dataset.points === '3' && document.querySelector('#curves-chart')?.dataset.series === '4');
  assert.equal(await page.locator('#best-chart .u-legend .u-series').count(), 3);
  assert.equal(await page.locator('#curves-chart .u-legend .u-series').count(), 5);
  await page.locator('#curves-chart .u-legend').getByText(`trial ${stopped[0].trial} (stopped early)`).waitFor();
  await waitFor(async () => (await canvasInk(page, '#best-chart canvas')) > 200, 5000, 'best-so-far drawn');
  await waitFor(async () => (await canvasInk(page, '#curves-chart canvas')) > 200, 5000, 'curves drawn');
  await shot(page, '15-sweep-completed');

  /* a trial's run page: its sweep, its parameters and its history, early termination included */
  await table.locator(`tr[data-run="${stopped[0].id}"] td[data-param="env:CURVE"]`).click();
  await page.waitForURL(new RegExp(`#/runs/${stopped[0].id}$`));
  await page.locator('#run-sweep').waitFor();
  assert.equal(await page.locator('#run-sweep').getAttribute('href'), `#/sweeps/${sweepA}`);
  assert.equal(await page.locator('#run-parameters [data-param="env:CURVE"]').textContent(), `env:CURVE=${curves[2]}`);
  const early = page.locator('#run-history li[data-event="early_terminated"]');
  await early.waitFor();
  assert.ok((await early.textContent()).includes(message));
  assert.ok(await page.locator('#run-history li[data-event="status"]').count() >= 2);
  await shot(page, '16-trial-run-history');

  /* another sweep, still running: log axes for loguniform, and cancel from its page */
  const b = await api('POST', '/sweeps', {
    run: { experiment: 'sweep-lr', command: ['/usr/bin/python3', '-c', LR_TRIAL] },
    parameters: { 'env:LR': { loguniform: [-9, -2] }, 'env:HIDDEN': { choice: [32, 64, 128] } },
    sampling: 'random', seed: 3, primary_metric: { name: 'acc', goal: 'maximize' },
    max_total_runs: 6, max_concurrent_runs: 2,
  });
  assert.equal(b.status, 201, JSON.stringify(b.body));
  const sweepB = b.body.id;
  await waitFor(async () => (await api('GET', `/sweeps/${sweepB}`)).body.trials.running === 2, 20000, 'two trials running');
  await asViewer(async (vp) => {
    await vp.evaluate((id) => { location.hash = `#/sweeps/${id}`; }, sweepB);
    await vp.locator('#trials-table tbody tr').first().waitFor();
    assert.equal(await vp.locator('.title-row .badge.running').count(), 1);
    assert.equal(await vp.locator('[data-action]').count(), 0, 'a viewer may not cancel a sweep');
  });
  await page.evaluate((id) => { location.hash = `#/sweeps/${id}`; }, sweepB);
  await page.locator('.title-row .badge.running').waitFor();
  await page.waitForFunction(() => document.querySelectorAll('#parcoords path.pc-line').length === 2);
  assert.equal(await page.locator('#parcoords g[data-axis="env:LR"]').getAttribute('data-scale'), 'log');
  assert.equal(await page.locator('#trials-table tbody tr[data-status="running"]').count(), 2);
  await shot(page, '17-sweep-running');
  await page.locator('[data-action="cancel-sweep"]').click();
  await page.locator('[data-action="confirm-cancel-sweep"]').click();
  await page.locator('.title-row .badge.canceled').waitFor();
  assert.equal(await page.locator('[data-action="cancel-sweep"]').count(), 0);
  const sb = (await api('GET', `/sweeps/${sweepB}`)).body;
  assert.equal(sb.status, 'canceled');
  assert.equal(sb.trials.created, 2);
  await page.waitForFunction(() => document.querySelectorAll('#trials-table tbody tr[data-status="canceled"]').length === 2);
  /* the list filters by status */
  await page.evaluate(() => { location.hash = '#/sweeps?status=canceled'; });
  await page.waitForFunction(([id]) => {
    const rows = document.querySelectorAll('#sweeps-table tr[data-sweep]');
    return rows.length === 1 && rows[0].dataset.sweep === id;
  }, [sweepB]);
  assert.equal(await page.locator('#f-sweep-status').inputValue(), 'canceled');
  await waitFor(async () => (await api('GET', '/nodes')).body.items.every((n) => !n.tasks.length), 15000, 'nodes released');
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.evaluate((id) => { location.hash = `#/sweeps/${id}`; }, sweepA);
  await page.waitForFunction(() => document.querySelectorAll('#parcoords path.pc-line').length === 4 && document.querySelector('#curves-chart')?.dataset.series === '4');
  await shot(page, '18-dark-sweep');
  await page.emulateMedia({ colorScheme: 'light' });
}, 150000);

t('no script errors in the pages; server and agents stop cleanly, with no sanitizer reports', async () => {
  assert.deepEqual(pageErrors, []);
  await browser.close();
  browser = null;
  for (const name of ['chromium', 'agent-n1', 'agent-n2', 'server']) {
    const p = procs.find((x) => x.name === name);
    await stop(p, { group: name === 'chromium' });
  }
  for (const p of procs.filter((x) => x.name !== 'chromium')) {
    const text = fs.readFileSync(p.log, 'utf8');
    for (const word of BAD_LOG_WORDS) assert.ok(!text.includes(word), `${p.name} log has '${word}':\n${text.slice(-3000)}`);
    assert.equal(p.code, 0, `${p.name} exited with ${p.code ?? p.signal}`);
  }
});
