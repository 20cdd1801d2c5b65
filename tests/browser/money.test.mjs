// Browser check of the money views in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core):
// opens the dashboard of an already running bot (AEGIS_URL; started by tests/tests/live_money.rs in testnet mode
// against binance-sim, auth off) and checks that the page itself shows what the exchange says: the liquidation
// row (kind, symbol, its realized PnL), the funding total and the BNB fees per asset. Expected values come from
// the simulator's own books (EXPECT_* variables). Screenshot in artifacts/browser/. Exit code 0 = pass.

import { mkdirSync } from 'node:fs';
import { launch } from './chromium.mjs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const here = dirname(fileURLToPath(import.meta.url));
const artifacts = join(resolve(here, '..', '..'), 'artifacts', 'browser');
mkdirSync(artifacts, { recursive: true });
// Exact decimal strings compared without floats: "-1.50000000" and "-1.5" are the same amount.
const dec = (v) => String(v).trim().replace(/^\+/, '').replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
const need = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const url = need('AEGIS_URL');
const expected = {
  realized: need('EXPECT_LIQ_REALIZED'), symbol: need('EXPECT_LIQ_SYMBOL'),
  funding: need('EXPECT_FUNDING'), bnb: need('EXPECT_FEES_BNB'),
};

async function main() {
  const { context, close } = await launch('money');
  const problems = [];
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    await page.goto(url + '/');
    // Auth is off in this run: the app opens without a login.
    await page.locator('#app-view').waitFor({ state: 'visible', timeout: 15000 });
    await page.locator('#live-indicator.on').waitFor({ timeout: 15000 });
    const row = page.locator('tr[data-testid="liquidation-row"]').first();
    await row.waitFor({ timeout: 15000 });
    const cells = await row.locator('td').allTextContents();
    // Columns: time, kind, symbol, mode, side, price, qty, realized, fee, client id.
    assert.equal(cells[1], 'LIQUIDATION', `kind: ${cells}`);
    assert.equal(cells[2], expected.symbol, `symbol: ${cells}`);
    assert.equal(dec(cells[7]), dec(expected.realized), `realized PnL shown vs the exchange's: ${cells}`);
    assert.match(cells[9], /^autoclose-/, `client id: ${cells}`);
    assert.equal(await page.locator('#liquidations-empty').isVisible(), false);
    // Funding and per-asset fees as the exchange booked them, to the last unit (decimal strings, not floats).
    const funding = (await page.locator('#pnl-funding').textContent()).trim();
    assert.equal(dec(funding), dec(expected.funding), `funding shown: ${funding}, exchange ${expected.funding}`);
    // "<fees in USDT> · <amount> BNB": the BNB amount as charged.
    const fees = await page.locator('#pnl-fees').textContent();
    const bnb = fees.match(/([-0-9.]+) BNB/);
    assert.ok(bnb && dec(bnb[1]) === dec(expected.bnb), `fees per asset shown: ${fees}, exchange ${expected.bnb} BNB`);
    await page.screenshot({ path: join(artifacts, 'money-liquidation.png'), fullPage: true });
    assert.deepEqual(problems, [], 'browser reported errors');
    console.log('PASS');
  } finally {
    await close();
  }
}

main().then(() => process.exit(0), (e) => { console.error(`FAIL: ${e.stack || e}`); process.exit(1); });
