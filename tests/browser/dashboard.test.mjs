// Browser test of the Aegis dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core).
//
// Starts the real bot (AEGIS_WEB_BIN, default target/debug/aegis: `aegis run` on the simulated market, with
// authentication on) with a fresh DATA_DIR and a random JWT_SECRET, then as a user would: creates the admin, logs in, watches positions/PnL
// update live, halts trading through the confirmation dialog and sees the state change, checks the audit view,
// logs out; then a viewer sees no controls and is refused when calling them directly.
// Screenshots go to artifacts/browser/. Exit code 0 = pass.

import { launch } from './chromium.mjs';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const bin = process.env.AEGIS_WEB_BIN || join(root, 'target', 'debug', 'aegis');
const artifacts = join(root, 'artifacts', 'browser');
mkdirSync(artifacts, { recursive: true });

const ADMIN = { user: 'admin', pass: 'night-shift-Operator-42' };
const VIEWER = { user: 'watcher', pass: 'read-only-Viewer-2024' };
const t0 = Date.now();
const log = (m) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);

function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => res(port)); });
  });
}

async function startServer(dataDir) {
  const port = await freePort();
  return new Promise((resolveUrl, reject) => {
    // `aegis run` with its defaults (paper, simulated market, auth on); no .env is read (the file does not exist).
    const child = spawn(bin, ['--env-file', join(dataDir, 'no.env'), 'run'], {
      env: {
        PATH: process.env.PATH, DATA_DIR: join(dataDir, 'data'), API_PORT: String(port),
        JWT_SECRET: randomBytes(33).toString('base64'), AUTH_ENABLED: 'true', LOG_LEVEL: 'info',
        SIM_RATE: process.env.SIM_RATE || '4000', SIM_SPEED: process.env.SIM_SPEED || '300',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not start in 20 s:\n${out}`)), 20000);
    child.stdout.on('data', (d) => {
      out += d;
      // The bot's banner (`dashboard:   https://127.0.0.1:PORT/ ...`); the old demo server's line still works.
      const m = out.match(/dashboard:\s+(https:\/\/[0-9.:]+)\//) || out.match(/LISTENING (https:\/\/[0-9.:]+)/);
      if (m) { clearTimeout(timer); resolveUrl({ child, url: m[1] }); }
    });
    child.stderr.on('data', (d) => { out += d; });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}):\n${out}`)); });
  });
}

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
  log(`screenshot artifacts/browser/${name}.png`);
}

async function apiFromPage(page, method, path, body) {
  return page.evaluate(async ({ method, path, body }) => {
    const m = document.cookie.match(/(?:^|;\s*)__Host-aegis_csrf=([^;]+)/);
    const headers = { 'Content-Type': 'application/json' };
    if (m) headers['X-CSRF-Token'] = m[1];
    const r = await fetch(path, { method, headers, credentials: 'same-origin', body: body ? JSON.stringify(body) : undefined });
    return { status: r.status, text: await r.text() };
  }, { method, path, body });
}

async function login(page, who) {
  await page.locator('#login-user').fill(who.user);
  await page.locator('#login-pass').fill(who.pass);
  await page.locator('#login-submit').click();
  await page.locator('#app-view').waitFor({ state: 'visible', timeout: 10000 });
}

const isNumber = (t) => typeof t === 'string' && t.trim() !== '' && Number.isFinite(Number(t));

// Waits (bounded) until `fn(arg)` returns a truthy value in the page and returns it; a timeout names what was awaited.
async function liveWait(page, what, fn, arg) {
  try {
    const handle = await page.waitForFunction(fn, arg, { timeout: 30000, polling: 250 });
    return await handle.jsonValue();
  } catch (e) {
    throw new Error(`timed out waiting for ${what}: ${e.message}`);
  }
}

// Records the first positions row the page renders with a symbol and a non-zero quantity. A MutationObserver sees
// every snapshot the page draws, where polling could miss a position that opens and closes between two samples.
async function watchPositions(page) {
  await page.evaluate(() => {
    window.__aegisSeenPosition = null;
    const body = document.getElementById('positions-body');
    const check = () => {
      if (window.__aegisSeenPosition) return;
      for (const tr of body.querySelectorAll('tr[data-testid="position-row"]')) {
        const symbol = tr.querySelector('[data-testid="position-symbol"]')?.textContent.trim() ?? '';
        const qty = tr.querySelector('[data-testid="position-qty"]')?.textContent.trim() ?? '';
        const market = tr.querySelector('[data-testid="position-market"]')?.textContent.trim() ?? '';
        if (symbol !== '' && qty !== '' && Number(qty) !== 0) { window.__aegisSeenPosition = { symbol, qty, market }; return; }
      }
    };
    new MutationObserver(check).observe(body, { childList: true });
    check();
  });
}

async function main() {
  const dataDir = mkdtempSync(join(tmpdir(), 'aegis-browser-'));
  const { child, url } = await startServer(dataDir);
  log(`server at ${url}`);
  const { context, close } = await launch('dashboard');
  const problems = [];
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on('console', (m) => { if (m.type() === 'error' && !/401|403|Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));

    // Headers of the page itself.
    const resp = await page.goto(url + '/');
    const h = resp.headers();
    assert.match(h['content-security-policy'], /default-src 'self'/);
    assert.match(h['content-security-policy'], /frame-ancestors 'none'/);
    assert.equal(h['x-frame-options'], 'DENY');
    assert.equal(h['x-content-type-options'], 'nosniff');
    assert.match(h['strict-transport-security'], /max-age=/);
    await page.locator('#login-form').waitFor({ state: 'visible' });
    await shot(page, '01-login');

    // First run: create the admin.
    await page.locator('#show-register').click();
    await page.locator('#reg-user').fill(ADMIN.user);
    await page.locator('#reg-pass').fill(ADMIN.pass);
    await page.locator('#register-submit').click();
    await page.locator('#login-error').filter({ hasText: 'Admin account created' }).waitFor({ timeout: 10000 });
    log('admin registered');

    // A wrong password gets the generic error.
    await page.locator('#login-user').fill(ADMIN.user);
    await page.locator('#login-pass').fill('wrong-password-000');
    await page.locator('#login-submit').click();
    await page.locator('#login-error').filter({ hasText: 'invalid username or password' }).waitFor({ timeout: 10000 });

    await login(page, ADMIN);
    assert.match(await page.locator('#whoami').textContent(), /admin \(admin\)/);
    assert.equal(await page.locator('#controls').isVisible(), true, 'admin sees controls');
    // The session cookie is HttpOnly: page scripts cannot read it.
    const cookies = await page.evaluate(() => document.cookie);
    assert.ok(!cookies.includes('aegis_session'), 'session cookie visible to scripts');
    log('admin logged in');

    // Live updates: the trade count, PnL, positions and equity chart change without a reload.
    await watchPositions(page);
    await page.locator('#live-indicator.on').waitFor({ timeout: 10000 });
    await page.waitForFunction(() => Number(document.getElementById('trade-count').textContent) > 0, null, { timeout: 60000 });
    const trades1 = Number(await page.locator('#trade-count').textContent());
    const pnl1 = (await page.locator('#pnl-total').textContent()).trim();
    log(`first trades seen live: ${trades1}, total PnL ${pnl1}`);
    assert.ok(isNumber(pnl1), `total PnL is not a number: ${JSON.stringify(pnl1)}`);
    await page.waitForFunction((n) => Number(document.getElementById('trade-count').textContent) > n, trades1, { timeout: 60000 });
    const trades2 = Number(await page.locator('#trade-count').textContent());
    log(`more trades arrived live: ${trades2}`);
    assert.ok(trades2 > trades1);

    // Fees alone move the net total on every fill, so it must change while the market trades.
    const pnl2 = await liveWait(page, 'total PnL to change to another number', (before) => {
      const t = document.getElementById('pnl-total').textContent.trim();
      return t !== before && t !== '' && Number.isFinite(Number(t)) ? t : null;
    }, pnl1);
    log(`total PnL changed live: ${pnl1} -> ${pnl2}`);

    // Positions open and close between snapshots, so the observer installed at login reports the first rendered row.
    const seen = await liveWait(page, 'a position row with a symbol and a quantity', () => window.__aegisSeenPosition);
    log(`position seen live: ${seen.symbol} qty ${seen.qty}`);
    assert.match(seen.symbol, /^[A-Z0-9]{3,}/);
    assert.ok(isNumber(seen.qty) && Number(seen.qty) !== 0, `position quantity: ${JSON.stringify(seen.qty)}`);
    // Issue 14: every position row names its market; `aegis run` with its defaults trades futures.
    assert.equal(seen.market, 'futures', `position market: ${JSON.stringify(seen.market)}`);
    for (const body of ['positions-body', 'orders-body']) {
      const heads = await page.locator(`#${body}`).locator('xpath=..').locator('thead th').allTextContents();
      assert.equal(heads[heads.indexOf('Symbol') + 1], 'Market', `${body} header: ${heads.join(' | ')}`);
    }

    // Counts pixels of the curve's stroke (app.js draws it #3fb950 when >= 0, #f85149 when < 0). The empty chart has
    // only grey text and a grey axis, so a count past the threshold means the curve itself was drawn.
    const linePixels = await liveWait(page, 'the equity chart to draw its curve', (min) => {
      const c = document.getElementById('equity-chart');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const near = (i, r, g, b) => Math.abs(d[i] - r) < 24 && Math.abs(d[i + 1] - g) < 24 && Math.abs(d[i + 2] - b) < 24;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 200 && (near(i, 63, 185, 80) || near(i, 248, 81, 73))) n++;
      return n >= min ? n : null;
    }, 100);
    log(`equity chart curve: ${linePixels} pixels`);
    assert.ok((await page.locator('#engine-state').textContent()).startsWith('running'));
    await shot(page, '02-overview-live');

    // Halt through the confirmation dialog; cancel first, then confirm.
    await page.locator('#btn-halt').click();
    await page.locator('#confirm-dialog[open]').waitFor();
    await page.locator('#confirm-cancel').click();
    await page.locator('#control-result').filter({ hasText: 'Cancelled' }).waitFor();
    assert.ok((await page.locator('#engine-state').textContent()).startsWith('running'), 'cancel must not halt');
    await page.locator('#btn-halt').click();
    await page.locator('#confirm-dialog[open]').waitFor();
    await shot(page, '03-halt-confirm');
    await page.locator('#confirm-ok').click();
    await page.locator('#engine-state').filter({ hasText: 'halted' }).waitFor({ timeout: 10000 });
    log(`engine state after halt: ${await page.locator('#engine-state').textContent()}`);
    await shot(page, '04-halted');

    // The audit view shows the halt.
    await page.locator('.tab[data-tab="audit"]').click();
    await page.locator('#audit-body tr', { hasText: 'control.halt' }).first().waitFor({ timeout: 5000 });
    await shot(page, '05-audit');
    await page.locator('.tab[data-tab="trades"]').click();
    await page.locator('#trades-body tr').first().waitFor({ timeout: 5000 });
    // The trades table's Market column, filled from each fill's `market` in the API.
    const tradeHeads = await page.locator('#trades-body').locator('xpath=..').locator('thead th').allTextContents();
    assert.equal(tradeHeads[tradeHeads.indexOf('Symbol') + 1], 'Market', `trades header: ${tradeHeads.join(' | ')}`);
    const tradeMarkets = await page.locator('#trades-body [data-testid="trade-market"]').allTextContents();
    assert.ok(tradeMarkets.length > 0 && tradeMarkets.every((m) => m === 'futures'), `trade markets: ${tradeMarkets.join(',')}`);
    const apiTrades = JSON.parse((await apiFromPage(page, 'GET', '/api/trades?limit=5')).text);
    assert.ok(apiTrades.trades.length > 0 && apiTrades.trades.every((t) => t.market === 'futures'), JSON.stringify(apiTrades.trades[0]));
    await shot(page, '06-trades');
    await page.locator('.tab[data-tab="overview"]').click();

    // The admin creates a viewer (through the API, as the page's own script would, with the CSRF header).
    const reg = await apiFromPage(page, 'POST', '/api/auth/register', { username: VIEWER.user, password: VIEWER.pass, role: 'viewer' });
    assert.equal(reg.status, 201, reg.text);

    // Log out: back to the login form, and the old session is dead.
    await page.locator('#logout').click();
    await page.locator('#login-form').waitFor({ state: 'visible', timeout: 5000 });
    const me = await apiFromPage(page, 'GET', '/api/auth/me');
    assert.equal(me.status, 401);
    log('logged out');

    // The viewer: no controls, no audit tab, and direct calls are refused.
    await login(page, VIEWER);
    assert.match(await page.locator('#whoami').textContent(), /watcher \(viewer\)/);
    assert.equal(await page.locator('#controls').isVisible(), false, 'viewer must not see controls');
    assert.equal(await page.locator('.tab[data-tab="audit"]').isVisible(), false, 'viewer must not see audit');
    for (const [path, body] of [['/api/control/resume', {}], ['/api/control/halt', {}], ['/api/control/kill', { flatten: true }], ['/api/control/breaker/reset', { scope: 'global' }]]) {
      const r = await apiFromPage(page, 'POST', path, body);
      assert.equal(r.status, 403, `${path}: ${r.status} ${r.text}`);
    }
    const audit = await apiFromPage(page, 'GET', '/api/audit');
    assert.equal(audit.status, 403);
    assert.ok((await page.locator('#engine-state').textContent()).startsWith('halted'), 'viewer resume must not have resumed');
    await shot(page, '07-viewer');
    await page.locator('#logout').click();
    await page.locator('#login-form').waitFor({ state: 'visible', timeout: 5000 });

    assert.deepEqual(problems, [], 'browser reported errors (CSP violations or script errors)');
    log('PASS');
  } finally {
    await close();
    child.kill('SIGTERM');
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => { console.error(`FAIL: ${e.stack || e}`); process.exit(1); });
