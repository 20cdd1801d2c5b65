// Aegis dashboard. Vanilla JS, no build step, no third-party code. Every value from the server is written with
// textContent (never parsed as markup), so nothing the API returns can become markup or script.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const state = { me: null, csrf: null, es: null, snap: null, skewMs: 0, tradesPage: 0, timer: null };

  // ---------- HTTP ----------
  async function api(method, path, body) {
    const headers = { 'Accept': 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
    const res = await fetch(path, {
      method, headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await res.json(); } catch (_) { data = null; }
    return { ok: res.ok, status: res.status, data };
  }

  // ---------- helpers ----------
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function row(cells) {
    const tr = document.createElement('tr');
    for (const c of cells) tr.appendChild(c instanceof Node ? c : el('td', c));
    return tr;
  }
  function fill(tbody, rows) {
    tbody.replaceChildren(...rows);
  }
  function signed(v) {
    const td = el('td', v);
    const n = Number(v);
    if (n > 0) td.className = 'pos'; else if (n < 0) td.className = 'neg';
    return td;
  }
  function setMoney(id, v) {
    const e = $(id);
    e.textContent = v === undefined ? '-' : v;
    const n = Number(v);
    e.classList.toggle('pos', n > 0);
    e.classList.toggle('neg', n < 0);
  }
  function utc(ms) {
    return new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
  }
  function dur(ms) {
    if (ms <= 0) return '-';
    const s = Math.ceil(ms / 1000);
    const m = Math.floor(s / 60);
    return m > 0 ? `${m}m ${String(s % 60).padStart(2, '0')}s` : `${s}s`;
  }
  function ns(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(2) + ' ms';
    if (v >= 1e3) return (v / 1e3).toFixed(1) + ' µs';
    return v + ' ns';
  }
  function scopeName(s) {
    return s.scope === 'global' ? 'global' : s.mode;
  }

  // ---------- views ----------
  function showLogin(msg) {
    closeLive();
    state.me = null; state.csrf = null;
    $('app-view').hidden = true;
    $('login-view').hidden = false;
    $('register-form').hidden = true;
    $('login-form').hidden = false;
    $('login-error').textContent = msg || '';
    $('login-user').focus();
  }

  async function showApp(me) {
    state.me = me;
    state.csrf = me.csrf_token;
    $('login-view').hidden = true;
    $('app-view').hidden = false;
    $('whoami').textContent = `${me.username} (${me.role})`;
    const admin = me.role === 'admin';
    for (const e of document.querySelectorAll('.admin-only')) e.hidden = !admin;
    selectTab('overview');
    const r = await api('GET', '/api/snapshot');
    if (r.ok) render(r.data);
    openLive();
    if (!state.timer) state.timer = setInterval(tick, 1000);
  }

  function selectTab(name) {
    for (const b of document.querySelectorAll('.tab')) b.classList.toggle('active', b.dataset.tab === name);
    for (const p of document.querySelectorAll('.tab-panel')) p.hidden = p.id !== `tab-${name}`;
    if (name === 'trades') loadTrades();
    if (name === 'audit') loadAudit();
  }

  // ---------- live updates ----------
  function openLive() {
    closeLive();
    const es = new EventSource('/api/events');
    state.es = es;
    es.addEventListener('snapshot', (ev) => {
      $('live-indicator').className = 'live on';
      try { render(JSON.parse(ev.data)); } catch (_) { /* ignore a malformed frame */ }
    });
    es.onerror = async () => {
      $('live-indicator').className = 'live off';
      // The stream ends when the session expires or is revoked: check, and go back to login if so.
      const r = await api('GET', '/api/auth/me');
      if (r.status === 401) showLogin('Your session ended. Please sign in again.');
    };
  }
  function closeLive() {
    if (state.es) { state.es.close(); state.es = null; }
    $('live-indicator').className = 'live off';
  }

  // ---------- rendering ----------
  function render(s) {
    state.snap = s;
    state.skewMs = s.now_ms - Date.now();
    const st = s.status;
    const badge = $('mode-badge');
    badge.textContent = st.trading_mode.toUpperCase();
    badge.className = `badge ${st.trading_mode}-mode`;
    const health = $('health');
    health.textContent = `health: ${st.health}`;
    health.className = 'pill ' + (st.health === 'ok' ? 'ok' : st.health === 'degraded' ? 'warn' : 'bad');
    const eng = $('engine-state');
    let engText = st.engine;
    if (st.halt_reason) engText += ` (${st.halt_reason})`;
    if (st.killed) engText += ' · KILLED';
    eng.textContent = engText;
    eng.className = 'pill ' + (st.engine === 'running' ? 'ok' : st.engine === 'halted' ? 'warn' : 'bad');
    $('feed-state').textContent = `feed ${st.feed_source}: ${st.feed} (${st.feed_age_ms} ms)`;

    setMoney('pnl-day', s.pnl.day);
    setMoney('pnl-hour', s.pnl.hour);
    setMoney('pnl-total', s.pnl.total);
    setMoney('pnl-unrealized', s.pnl.unrealized);
    setMoney('pnl-funding', s.pnl.funding_total);
    // Fees as PnL counts them (BNB valued at fill time), then as charged per asset; unpriced ones are flagged.
    const perAsset = Object.entries(s.pnl.fees_by_asset || {}).map(([a, v]) => `${v} ${a}`).join(', ');
    let fees = `${s.pnl.fees_total}${perAsset ? ` · ${perAsset}` : ''}`;
    if (s.pnl.unconverted_fees) fees += ` · ${s.pnl.unconverted_fees} UNPRICED (not in PnL)`;
    $('pnl-fees').textContent = fees;
    $('trade-count').textContent = s.trade_count;
    $('latency-kpi').textContent = `${ns(s.latency.p50_ns)} / ${ns(s.latency.p99_ns)}`;

    fill($('positions-body'), s.positions.map((p) => {
      const tr = row([
        p.symbol, p.market, p.mode, p.qty, p.entry_price, p.mark_price, signed(p.unrealized_pnl), signed(p.realized_pnl), p.notional_usd,
      ]);
      // Stable hooks for the browser test, so it does not depend on column order or text.
      tr.dataset.testid = 'position-row';
      tr.cells[0].dataset.testid = 'position-symbol';
      tr.cells[1].dataset.testid = 'position-market';
      tr.cells[3].dataset.testid = 'position-qty';
      return tr;
    }));
    $('positions-empty').hidden = s.positions.length > 0;
    const liqs = s.liquidations || [];
    fill($('liquidations-body'), liqs.map((l) => {
      const tr = row([
        new Date(l.ts_ms).toISOString().replace('T', ' ').slice(0, 19), l.kind.toUpperCase(), l.symbol, l.mode,
        l.side, l.price, l.qty, signed(l.realized_pnl), l.fee, l.client_id,
      ]);
      tr.dataset.testid = 'liquidation-row';
      tr.className = 'bad';
      return tr;
    }));
    $('liquidations-empty').hidden = liqs.length > 0;
    fill($('orders-body'), s.open_orders.map((o) => {
      const tr = row([
        o.client_id, o.symbol, o.market, o.mode, o.side, o.order_type, o.price, o.qty, o.filled, o.status,
      ]);
      tr.dataset.testid = 'order-row';
      tr.cells[2].dataset.testid = 'order-market';
      return tr;
    }));
    fill($('allocation-body'), s.limits.allocation.map((a) => {
      const cap = Number(a.capital_usd);
      const pct = cap > 0 ? Math.min(100, (100 * Number(a.used_usd)) / cap) : 0;
      const meter = document.createElement('meter');
      meter.min = 0; meter.max = 100; meter.value = pct; meter.high = 80; meter.optimum = 0;
      const td = el('td'); td.appendChild(meter); td.appendChild(el('span', ` ${pct.toFixed(0)}%`));
      return row([a.mode, a.enabled ? 'yes' : 'no', `${a.capital_usd} (${a.capital_percent}%)`, a.used_usd, td,
        `${a.open_positions} / ${a.max_positions}`, a.max_usd_per_position]);
    }));
    $('limit-pos').textContent = s.limits.max_position_usd;
    $('limit-loss').textContent = s.limits.max_daily_loss_usd;
    $('limit-loss-used').textContent = s.limits.daily_loss_used_usd;
    renderBreakers();
    drawEquity($('equity-chart'), s.pnl.equity_curve);
    drawHistogram($('latency-chart'), s.latency.p99_histogram);
  }

  function renderBreakers() {
    const s = state.snap;
    if (!s) return;
    const now = Date.now() + state.skewMs;
    fill($('breakers-body'), s.breakers.map((b) => {
      const left = b.tripped && b.until_ms ? b.until_ms - now : 0;
      const stateTd = el('td', b.tripped ? 'TRIPPED' : 'armed', b.tripped ? 'tripped' : 'armed');
      return row([scopeName(b.scope), stateTd, b.reason || '-', dur(left)]);
    }));
  }

  function tick() { renderBreakers(); }

  // ---------- charts (canvas, no library) ----------
  function prep(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || canvas.width;
    const h = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = '12px system-ui, sans-serif';
    return { ctx, w, h };
  }
  function emptyMsg(ctx, w, h, msg) {
    ctx.fillStyle = '#8b98a9';
    ctx.textAlign = 'center';
    ctx.fillText(msg, w / 2, h / 2);
  }

  function drawEquity(canvas, points) {
    const { ctx, w, h } = prep(canvas);
    if (!points || points.length < 2) { emptyMsg(ctx, w, h, 'waiting for fills…'); return; }
    const xs = points.map((p) => p.ts_ms);
    const ys = points.map((p) => Number(p.equity));
    const x0 = Math.min(...xs), x1 = Math.max(...xs);
    let y0 = Math.min(0, ...ys), y1 = Math.max(0, ...ys);
    if (y1 === y0) { y1 += 1; y0 -= 1; }
    const pad = { l: 56, r: 10, t: 10, b: 22 };
    const X = (x) => pad.l + ((x - x0) / Math.max(1, x1 - x0)) * (w - pad.l - pad.r);
    const Y = (y) => h - pad.b - ((y - y0) / (y1 - y0)) * (h - pad.t - pad.b);
    ctx.strokeStyle = '#2b3340';
    ctx.beginPath(); ctx.moveTo(pad.l, Y(0)); ctx.lineTo(w - pad.r, Y(0)); ctx.stroke();
    ctx.fillStyle = '#8b98a9'; ctx.textAlign = 'right';
    ctx.fillText(y1.toFixed(2), pad.l - 6, pad.t + 10);
    ctx.fillText(y0.toFixed(2), pad.l - 6, h - pad.b);
    ctx.textAlign = 'left';
    ctx.fillText(utc(x0).slice(11), pad.l, h - 6);
    ctx.textAlign = 'right';
    ctx.fillText(utc(x1).slice(11), w - pad.r, h - 6);
    const last = ys[ys.length - 1];
    ctx.strokeStyle = last >= 0 ? '#3fb950' : '#f85149';
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach((p, i) => { const x = X(p.ts_ms), y = Y(Number(p.equity)); if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y); });
    ctx.stroke();
    ctx.lineWidth = 1;
  }

  function drawHistogram(canvas, buckets) {
    const { ctx, w, h } = prep(canvas);
    if (!buckets || buckets.length === 0) { emptyMsg(ctx, w, h, 'waiting for engine stats…'); return; }
    const max = Math.max(...buckets.map((b) => b.count));
    const pad = { l: 10, r: 10, t: 10, b: 22 };
    const bw = (w - pad.l - pad.r) / buckets.length;
    buckets.forEach((b, i) => {
      const bh = max > 0 ? ((h - pad.t - pad.b) * b.count) / max : 0;
      ctx.fillStyle = '#58a6ff';
      ctx.fillRect(pad.l + i * bw + 2, h - pad.b - bh, Math.max(1, bw - 4), bh);
      ctx.fillStyle = '#8b98a9';
      ctx.textAlign = 'center';
      if (buckets.length <= 16 || i % 2 === 0) ctx.fillText('≤' + ns(b.le_ns), pad.l + i * bw + bw / 2, h - 6);
    });
  }

  // ---------- trades & audit ----------
  async function loadTrades() {
    const r = await api('GET', `/api/trades?page=${state.tradesPage}&limit=50`);
    if (!r.ok) return;
    $('trades-page').textContent = `page ${state.tradesPage + 1} of ${Math.max(1, Math.ceil(r.data.total / 50))} (${r.data.total} trades)`;
    fill($('trades-body'), r.data.trades.map((t) => {
      const tr = row([
        utc(t.ts_ms), t.symbol, t.market, t.mode, t.side, t.price, t.qty, `${t.fee} ${t.fee_asset}`, signed(t.realized_pnl), t.intent, t.client_id,
      ]);
      tr.dataset.testid = 'trade-row';
      tr.cells[2].dataset.testid = 'trade-market';
      return tr;
    }));
  }

  async function loadAudit() {
    const r = await api('GET', '/api/audit?limit=200');
    if (!r.ok) return;
    fill($('audit-body'), r.data.entries.map((a) => row([
      a.id, utc(a.ts_ms), a.actor, a.ip || '-', a.action, el('td', JSON.stringify(a.detail), 'detail'),
    ])));
  }

  // ---------- controls ----------
  function confirmDialog(title, text) {
    return new Promise((resolve) => {
      const d = $('confirm-dialog');
      $('confirm-title').textContent = title;
      $('confirm-text').textContent = text;
      d.returnValue = '';
      d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
      d.showModal();
    });
  }

  async function control(title, text, path, body) {
    if (!(await confirmDialog(title, text))) { $('control-result').textContent = 'Cancelled.'; return; }
    const r = await api('POST', path, body);
    $('control-result').textContent = r.ok
      ? `${title}: sent${r.data && r.data.audited === false ? ' (audit write failed!)' : ''}.`
      : `${title}: refused (${r.status}: ${r.data && r.data.error ? r.data.error : 'error'}).`;
  }

  // ---------- wiring ----------
  function wire() {
    $('login-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      $('login-error').textContent = '';
      const r = await api('POST', '/api/auth/login', { username: $('login-user').value, password: $('login-pass').value });
      $('login-pass').value = '';
      if (!r.ok) { $('login-error').textContent = (r.data && r.data.error) || 'Sign-in failed.'; return; }
      const me = await api('GET', '/api/auth/me');
      if (me.ok) showApp(me.data); else showLogin('Sign-in failed.');
    });
    $('show-register').addEventListener('click', () => { $('login-form').hidden = true; $('register-form').hidden = false; $('reg-user').focus(); });
    $('show-login').addEventListener('click', () => showLogin());
    $('register-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      $('register-error').textContent = '';
      const r = await api('POST', '/api/auth/register', { username: $('reg-user').value, password: $('reg-pass').value });
      $('reg-pass').value = '';
      if (!r.ok) { $('register-error').textContent = (r.data && r.data.error) || 'Could not create the account.'; return; }
      showLogin('Admin account created. Sign in.');
      $('login-user').value = r.data.username;
    });
    $('logout').addEventListener('click', async () => {
      await api('POST', '/api/auth/logout', {});
      showLogin('Signed out.');
    });
    for (const b of document.querySelectorAll('.tab')) b.addEventListener('click', () => selectTab(b.dataset.tab));
    $('btn-halt').addEventListener('click', () => control('Halt', 'Stop opening new positions? Exits keep working.', '/api/control/halt', {}));
    $('btn-resume').addEventListener('click', () => control('Resume', 'Resume opening positions? (Does not override a tripped breaker.)', '/api/control/resume', {}));
    $('btn-kill').addEventListener('click', () => {
      const flatten = $('kill-flatten').checked;
      control('Kill switch', flatten ? 'Halt, cancel every open order AND close every position at market?' : 'Halt and cancel every open order (positions stay open)?',
        '/api/control/kill', { flatten });
    });
    $('btn-reset').addEventListener('click', () => {
      const scope = $('reset-scope').value;
      control('Reset breaker', `Reset the ${scope} circuit breaker before its cooldown ends?`, '/api/control/breaker/reset', { scope });
    });
    $('trades-prev').addEventListener('click', () => { state.tradesPage = Math.max(0, state.tradesPage - 1); loadTrades(); });
    $('trades-next').addEventListener('click', () => { state.tradesPage += 1; loadTrades(); });
    $('trades-refresh').addEventListener('click', loadTrades);
    $('audit-refresh').addEventListener('click', loadAudit);
    window.addEventListener('resize', () => { if (state.snap) render(state.snap); });
  }

  async function boot() {
    wire();
    const r = await api('GET', '/api/auth/me');
    if (r.ok) showApp(r.data); else showLogin();
  }

  document.addEventListener('DOMContentLoaded', boot);
})();
