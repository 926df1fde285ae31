// sluice dashboard: plain JavaScript, no libraries, no external assets.
// Every view refreshes every REFRESH_MS with a fixed number of API calls, whatever the
// number of integrations (the list is one call to GET /v1/integrations/status).
'use strict';

const REFRESH_MS = 5000;
const TOKEN_KEY = 'sluice.adminToken';
const STATES = ['active', 'failing', 'paused', 'probing', 'disabled'];

const $ = (sel, root = document) => root.querySelector(sel);

// ---- tiny DOM helper ----------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const svgNS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// ---- formatting ---------------------------------------------------------------------
const nf = new Intl.NumberFormat('en-US');
const fmtInt = n => (n === null || n === undefined) ? '—' : nf.format(n);
function fmtCompact(n) {
  if (n === null || n === undefined) return '—';
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(1) + 'B';
  if (a >= 1e6) return (n / 1e6).toFixed(1) + 'M';
  if (a >= 1e4) return (n / 1e3).toFixed(1) + 'k';
  return nf.format(Math.round(n * 10) / 10);
}
function fmtSeconds(sec) {
  if (sec === null || sec === undefined) return '—';
  if (sec < 1) return sec.toFixed(1) + ' s';
  if (sec < 90) return Math.round(sec) + ' s';
  if (sec < 5400) return Math.round(sec / 60) + ' min';
  if (sec < 172800) return (sec / 3600).toFixed(1) + ' h';
  return (sec / 86400).toFixed(1) + ' d';
}
function fmtTime(ms) {
  if (!ms) return '—';
  const d = new Date(ms);
  const same = new Date().toDateString() === d.toDateString();
  return same ? d.toLocaleTimeString() : d.toLocaleString();
}
function fmtAgo(ms) {
  if (!ms) return '—';
  const sec = (Date.now() - ms) / 1000;
  if (sec < 0) return 'in ' + fmtSeconds(-sec);
  return fmtSeconds(sec) + ' ago';
}
function pill(state) {
  return h('span', { class: 'pill pill-' + state, 'data-state': state }, state);
}

// ---- API ----------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.error)) || ('HTTP ' + status));
    this.status = status;
  }
}
async function api(method, path, body) {
  const opts = { method, headers: { Authorization: 'Bearer ' + sessionStorage.getItem(TOKEN_KEY) } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { detail: text }; }
  if (r.status === 401) { signOut('The token was refused: give the admin token or a project token.'); throw new ApiError(401, data); }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}
const get = path => api('GET', path);

// ---- sign in ------------------------------------------------------------------------
function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  stopTimer();
  $('#app').hidden = true;
  $('#signin').hidden = false;
  $('#signin-error').textContent = message || '';
  $('#token').value = '';
  $('#token').focus();
}
async function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    await get('/v1/dashboard/overview');
  } catch (e) {
    if (e.status !== 401) { sessionStorage.removeItem(TOKEN_KEY); $('#signin-error').textContent = 'Cannot reach sluice: ' + e.message; }
    return;
  }
  $('#signin').hidden = true;
  $('#app').hidden = false;
  route();
}

// ---- routing and refresh --------------------------------------------------------------
let timer = null;
let current = null; // { refresh: async () => void }
function stopTimer() { if (timer) clearTimeout(timer); timer = null; }
function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query || '') };
}
function route() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return;
  stopTimer();
  const { parts, params } = parseHash();
  let nav = 'overview';
  const view = $('#view');
  view.replaceChildren();
  if (parts[0] === 'integrations' && parts[1]) { nav = 'integrations'; current = integrationView(view, parts[1]); }
  else if (parts[0] === 'integrations') { nav = 'integrations'; current = listView(view, params); }
  else if (parts[0] === 'environments') { nav = 'environments'; current = environmentsView(view); }
  else current = overviewView(view);
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', a.dataset.nav === nav);
  tick();
}
async function tick() {
  stopTimer();
  const mine = current;
  try {
    await mine.refresh();
    if (mine !== current) return;
    $('#banner').hidden = true;
    $('#updated').textContent = 'Updated ' + new Date().toLocaleTimeString();
  } catch (e) {
    if (mine !== current || e.status === 401) return;
    $('#banner').hidden = false;
    $('#banner').textContent = 'Cannot load: ' + e.message;
  }
  if (mine === current && sessionStorage.getItem(TOKEN_KEY)) timer = setTimeout(tick, REFRESH_MS);
}

// ---- overview -------------------------------------------------------------------------
// Ingest rate per environment from two consecutive answers (stored impressions / time).
const ingestPrev = new Map();
function ingestRates(ov) {
  const rates = new Map();
  for (const e of ov.environments) {
    const prev = ingestPrev.get(e.id);
    if (prev && ov.now > prev.now) rates.set(e.id, Math.max(0, (e.impressions - prev.impressions) * 1000 / (ov.now - prev.now)));
    ingestPrev.set(e.id, { now: ov.now, impressions: e.impressions });
  }
  return rates;
}
function stat(label, value, opts = {}) {
  return h(opts.href ? 'a' : 'div', { class: 'stat ' + (opts.cls || ''), href: opts.href, 'data-stat': opts.key },
    h('div', { class: 'stat-label' }, label),
    h('div', { class: 'stat-value' }, value),
    opts.sub ? h('div', { class: 'stat-sub' }, opts.sub) : null);
}
function overviewView(root) {
  const states = h('div', { class: 'stats' });
  const envs = h('div', { class: 'card' });
  root.append(h('h1', {}, 'Overview'), states, h('h2', {}, 'Ingest by environment'), envs);
  return {
    async refresh() {
      const ov = await get('/v1/dashboard/overview');
      const sm = ov.summary;
      const rates = ingestRates(ov);
      const totalRate = [...rates.values()].reduce((a, b) => a + b, 0);
      states.replaceChildren(
        stat('Integrations', fmtInt(sm.integrations), { href: '#/integrations', key: 'integrations', sub: ov.live ? 'counted now' : 'as of ' + fmtTime(sm.at) }),
        ...STATES.map(st => stat(st[0].toUpperCase() + st.slice(1), fmtInt(sm.states[st] || 0),
          { href: '#/integrations?state=' + st, cls: 'stat-' + st + ((sm.states[st] || 0) > 0 ? ' nonzero' : ''), key: st })),
        stat('Total lag', fmtCompact(sm.lagImpressions), { key: 'lag', sub: 'impressions · oldest ' + fmtSeconds(sm.maxLagSeconds) }),
        stat('Ingest', rates.size ? fmtCompact(totalRate) + '/s' : '—', { key: 'ingest', sub: 'impressions per second' }));
      envs.replaceChildren(envTable(ov, rates));
    },
  };
}
function envTable(ov, rates) {
  if (!ov.environments.length) return h('p', { class: 'empty' }, 'No environments yet. Create one with sluice env create.');
  return h('table', { class: 'table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Environment'), h('th', {}, 'Project'), h('th', {}, 'SDK keys'),
      h('th', { class: 'num' }, 'Stored impressions'), h('th', { class: 'num' }, 'Ingest'))),
    h('tbody', {}, ov.environments.map(e => h('tr', { 'data-env': e.id },
      h('td', {}, h('div', { class: 'strong' }, e.name), h('div', { class: 'sub mono' }, e.id)),
      h('td', {}, e.project),
      h('td', { class: 'mono' }, e.sdkKeys.length ? e.sdkKeys.join(', ') : '—'),
      h('td', { class: 'num' }, fmtInt(e.impressions)),
      h('td', { class: 'num' }, rates.has(e.id) ? fmtCompact(rates.get(e.id)) + '/s' : '…')))));
}
function environmentsView(root) {
  const card = h('div', { class: 'card' });
  root.append(h('h1', {}, 'Environments'), h('p', { class: 'muted' }, 'SDK keys are masked. Ingest rates are measured between refreshes.'), card);
  return { async refresh() { const ov = await get('/v1/dashboard/overview'); card.replaceChildren(envTable(ov, ingestRates(ov))); } };
}

// ---- integrations list --------------------------------------------------------------
const COLUMNS = [
  { key: 'name', label: 'Integration', get: i => i.name.toLowerCase() },
  { key: 'state', label: 'State', get: i => STATES.indexOf(i.state) },
  { key: 'project', label: 'Project', get: i => i.project },
  { key: 'lagImpressions', label: 'Lag', num: true, get: i => i.lagImpressions },
  { key: 'lagSeconds', label: 'Oldest', num: true, get: i => i.lagSeconds },
  { key: 'deliveredImpressions', label: 'Delivered', num: true, get: i => i.deliveredImpressions },
  { key: 'failedAttempts', label: 'Failed', num: true, get: i => i.failedAttempts },
  { key: 'lastError', label: 'Last error', get: i => i.lastError || '' },
];
function listView(root, params) {
  const q = { state: params.get('state') || '', project: params.get('project') || '', text: params.get('q') || '', limit: params.get('limit') || '100' };
  let cursors = [null]; // cursor of each page seen; the last is the current page's
  let next = null;
  let sort = { key: 'name', dir: 1 };
  let rows = [];
  let debounce = null;

  const stateSel = h('select', { id: 'filter-state', onchange: e => { q.state = e.target.value; restart(); } },
    h('option', { value: '' }, 'All states'), STATES.map(st => h('option', { value: st }, st)));
  stateSel.value = q.state;
  const projectSel = h('select', { id: 'filter-project', onchange: e => { q.project = e.target.value; restart(); } }, h('option', { value: '' }, 'All projects'));
  get('/v1/projects').then(ps => {
    for (const p of ps) projectSel.append(h('option', { value: p.id }, p.name + ' (' + p.id + ')'));
    projectSel.value = q.project;
  }).catch(() => {});
  const limitSel = h('select', { id: 'page-size', onchange: e => { q.limit = e.target.value; restart(); } },
    ['50', '100', '500', '1000'].map(n => h('option', { value: n }, n + ' per page')));
  limitSel.value = q.limit;
  const search = h('input', { id: 'filter-text', type: 'search', placeholder: 'Search name or id', value: q.text,
    oninput: e => { clearTimeout(debounce); debounce = setTimeout(() => { q.text = e.target.value.trim(); restart(); }, 300); } });
  const table = h('div', { class: 'card table-wrap' });
  const pager = h('div', { class: 'pager' });
  const count = h('span', { class: 'muted', id: 'list-count' });
  root.append(h('div', { class: 'title-row' }, h('h1', {}, 'Integrations'), count),
    h('div', { class: 'filters' }, stateSel, projectSel, search, limitSel), table, pager);

  function restart() { cursors = [null]; tick(); }
  function draw() {
    const col = COLUMNS.find(c => c.key === sort.key);
    const shown = rows.slice().sort((a, b) => {
      const x = col.get(a), y = col.get(b);
      return (x < y ? -1 : x > y ? 1 : 0) * sort.dir || (a.id < b.id ? -1 : 1);
    });
    const head = h('tr', {}, COLUMNS.map(c => h('th', {
      class: (c.num ? 'num ' : '') + 'sortable' + (sort.key === c.key ? ' sorted' : ''), 'data-sort': c.key,
      onclick: () => { sort = { key: c.key, dir: sort.key === c.key ? -sort.dir : (c.num ? -1 : 1) }; draw(); },
    }, c.label, sort.key === c.key ? (sort.dir > 0 ? ' ▲' : ' ▼') : '')));
    const body = shown.map(i => h('tr', { class: 'row-link', 'data-id': i.id, onclick: () => { location.hash = '#/integrations/' + encodeURIComponent(i.id); } },
      h('td', {}, h('a', { class: 'strong', href: '#/integrations/' + encodeURIComponent(i.id) }, i.name), h('div', { class: 'sub mono' }, i.id)),
      h('td', {}, pill(i.state), i.state === 'paused' && i.pausedUntil ? h('div', { class: 'sub' }, 'probe ' + fmtAgo(i.pausedUntil)) : null,
        i.manuallyPaused ? h('div', { class: 'sub' }, 'by hand') : null),
      h('td', {}, i.project),
      h('td', { class: 'num' }, fmtInt(i.lagImpressions)),
      h('td', { class: 'num' }, i.lagImpressions ? fmtSeconds(i.lagSeconds) : '—'),
      h('td', { class: 'num' }, fmtInt(i.deliveredImpressions)),
      h('td', { class: 'num' + (i.failedAttempts ? ' bad' : '') }, fmtInt(i.failedAttempts)),
      h('td', { class: 'error-cell', title: i.lastError || '' }, i.lastError || '')));
    table.replaceChildren(h('table', { class: 'table', id: 'integrations-table' }, h('thead', {}, head), h('tbody', {}, body)),
      ...(shown.length ? [] : [h('p', { class: 'empty' }, 'No integrations match.')]));
    const page = cursors.length;
    count.textContent = rows.length + (next ? '+' : '') + ' shown';
    pager.replaceChildren(
      h('button', { class: 'btn', id: 'prev-page', disabled: page === 1, onclick: () => { cursors.pop(); tick(); } }, '← Previous'),
      h('span', { class: 'muted' }, 'Page ' + page + ' · in id order; a column sorts this page'),
      h('button', { class: 'btn', id: 'next-page', disabled: !next, onclick: () => { cursors.push(next); tick(); } }, 'Next →'));
  }
  return {
    async refresh() {
      const p = new URLSearchParams({ limit: q.limit });
      if (q.state) p.set('state', q.state);
      if (q.project) p.set('project', q.project);
      if (q.text) p.set('q', q.text);
      const c = cursors[cursors.length - 1];
      if (c) p.set('cursor', c);
      const page = await get('/v1/integrations/status?' + p);
      rows = page.integrations;
      next = page.nextCursor;
      draw();
    },
  };
}

// ---- charts (inline SVG) --------------------------------------------------------------
function chart(title, points, opts) {
  const W = 560, H = 170, L = 48, R = 12, T = 12, B = 24;
  const box = h('div', { class: 'chart card' }, h('div', { class: 'chart-title' }, title, h('span', { class: 'chart-now' }, points.length ? opts.fmt(points[points.length - 1].v) : '—')));
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img', 'aria-label': title });
  if (points.length < 2) {
    svg.append(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'chart-empty' }, 'collecting samples…'));
    box.append(svg);
    return box;
  }
  const t0 = points[0].t, t1 = points[points.length - 1].t;
  // Three gridline steps of a round size (1, 2 or 5 × 10^k) above the highest point.
  const top = Math.max(...points.map(p => p.v));
  const raw = (top > 0 ? top : 1) / 3;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(v => v >= raw);
  const vmax = step * 3;
  const x = t => L + (W - L - R) * (t1 === t0 ? 1 : (t - t0) / (t1 - t0));
  const y = v => T + (H - T - B) * (1 - v / vmax);
  for (let i = 0; i <= 3; i++) {
    const v = vmax * i / 3;
    svg.append(s('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }),
      s('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, opts.fmt(v)));
  }
  svg.append(s('text', { x: L, y: H - 6, class: 'axis' }, new Date(t0).toLocaleTimeString()),
    s('text', { x: W - R, y: H - 6, 'text-anchor': 'end', class: 'axis' }, new Date(t1).toLocaleTimeString()));
  const line = points.map((p, i) => (i ? 'L' : 'M') + x(p.t).toFixed(1) + ' ' + y(p.v).toFixed(1)).join(' ');
  svg.append(s('path', { d: line + ` L ${x(t1).toFixed(1)} ${y(0)} L ${x(t0).toFixed(1)} ${y(0)} Z`, class: 'area ' + opts.cls }),
    s('path', { d: line, class: 'line ' + opts.cls }));
  box.append(svg);
  return box;
}

// ---- integration page -----------------------------------------------------------------
function integrationView(root, id) {
  const enc = encodeURIComponent(id);
  const local = []; // samples taken by this page (status polls), merged after the server's
  const header = h('div', { class: 'title-row' });
  const notice = h('div', { class: 'notice', id: 'action-result', hidden: true });
  const stats = h('div', { class: 'stats' });
  const charts = h('div', { class: 'charts' });
  const chartNote = h('p', { class: 'muted small', id: 'chart-note' });
  const pauses = h('div', { class: 'card' });
  const attempts = h('div', { class: 'card table-wrap' });
  const gaps = h('div', { class: 'card' });
  const replays = h('div', { class: 'card' });
  const config = h('div', { class: 'card' });
  root.append(h('a', { href: '#/integrations', class: 'back' }, '← Integrations'), header, notice, stats,
    h('h2', {}, 'Lag and delivery'), chartNote, charts,
    h('div', { class: 'two-col' },
      h('div', {}, h('h2', {}, 'Pause history'), pauses, h('h2', {}, 'Gaps'), gaps, h('h2', {}, 'Replay jobs'), replays),
      h('div', {}, h('h2', {}, 'Configuration'), config)),
    h('h2', {}, 'Recent attempts'), attempts);

  async function act(label, method, path, body) {
    notice.hidden = false;
    notice.className = 'notice';
    notice.textContent = label + '…';
    try {
      const r = await api(method, path, body);
      notice.className = 'notice ok';
      if (path.endsWith('/test')) notice.textContent = r.delivered ? `Test batch delivered: HTTP ${r.status} in ${r.durationMs} ms` : `Test batch failed: ${r.error || 'HTTP ' + r.status} (${r.durationMs} ms)`;
      else if (path.endsWith('/replay')) notice.textContent = 'Replay ' + r.id + ' started';
      else notice.textContent = label + ' done';
      if (path.endsWith('/test') && !r.delivered) notice.className = 'notice bad';
    } catch (e) {
      notice.className = 'notice bad';
      notice.textContent = label + ' failed: ' + e.message;
    }
    tick();
  }

  return {
    async refresh() {
      const [st, at, gp, rp, hist, cfg] = await Promise.all([
        get(`/v1/integrations/${enc}/status`), get(`/v1/integrations/${enc}/attempts`), get(`/v1/integrations/${enc}/gaps`),
        get(`/v1/integrations/${enc}/replays`), get(`/v1/integrations/${enc}/history`), get(`/v1/integrations/${enc}`)]);
      const paused = st.state === 'paused';
      header.replaceChildren(
        h('div', {}, h('h1', {}, cfg.name, ' ', pill(st.state)), h('div', { class: 'sub mono' }, id + ' · ' + cfg.url)),
        h('div', { class: 'actions' },
          paused && st.manuallyPaused ? h('button', { class: 'btn btn-primary', id: 'resume', onclick: () => act('Resume', 'POST', `/v1/integrations/${enc}/resume`) }, 'Resume')
            : paused ? h('button', { class: 'btn btn-primary', id: 'resume', onclick: () => act('Resume', 'POST', `/v1/integrations/${enc}/resume`) }, 'Resume now')
              : h('button', { class: 'btn', id: 'pause', disabled: st.state === 'disabled', onclick: () => act('Pause', 'POST', `/v1/integrations/${enc}/pause`) }, 'Pause'),
          h('button', { class: 'btn', id: 'send-test', onclick: () => act('Send test', 'POST', `/v1/integrations/${enc}/test`) }, 'Send test')));
      const nextProbe = st.pausedUntil ? 'next probe ' + fmtAgo(st.pausedUntil) + ' (' + fmtTime(st.pausedUntil) + ')'
        : st.manuallyPaused ? 'paused by hand' : null;
      stats.replaceChildren(
        stat('State', pill(st.state), { key: 'state', sub: nextProbe || (st.state === 'probing' ? 'a probe batch decides' : st.state === 'failing' ? 'every attempt since the last success failed' : null) }),
        stat('Lag', fmtInt(st.lagImpressions), { key: 'lag', sub: st.lagImpressions ? 'oldest ' + fmtSeconds(st.lagSeconds) : 'caught up' }),
        stat('Delivered', fmtInt(st.deliveredImpressions), { key: 'delivered', sub: 'last success ' + fmtAgo(st.lastSuccess) }),
        stat('Failed attempts', fmtInt(st.failedAttempts), { key: 'failed', cls: st.failedAttempts ? 'stat-warn' : '', sub: 'error rate ' + st.errorRatePercent + '%' }),
        stat('Pauses', fmtInt(st.pauseCount), { key: 'pauses' }),
        ...(st.lastError ? [stat('Last error', h('span', { class: 'error-text' }, st.lastError), { key: 'last-error', cls: 'stat-wide' })] : []));

      // Charts: the server's ring (last hour) then this page's own samples.
      const now = Date.now();
      local.push({ t: now, lagImpressions: st.lagImpressions, deliveredImpressions: st.deliveredImpressions });
      while (local.length > 720) local.shift();
      const lastServer = hist.samples.length ? hist.samples[hist.samples.length - 1].t : 0;
      const all = hist.samples.concat(local.filter(p => p.t > lastServer)).filter(p => p.t >= now - 3600e3);
      const rate = [];
      for (let i = 1; i < all.length; i++) {
        const dt = (all[i].t - all[i - 1].t) / 1000;
        if (dt > 0) rate.push({ t: all[i].t, v: Math.max(0, all[i].deliveredImpressions - all[i - 1].deliveredImpressions) / dt });
      }
      chartNote.textContent = hist.tracked
        ? `Last hour: a server-side sample every ${hist.intervalMs / 1000} s, then this page's own samples every ${REFRESH_MS / 1000} s.`
        : `Since this page opened (a sample every ${REFRESH_MS / 1000} s): the server keeps history for the first 2,000 integrations only, or has not sampled this one yet.`;
      charts.replaceChildren(
        chart('Lag (impressions)', all.map(p => ({ t: p.t, v: p.lagImpressions })), { cls: 'c-lag', fmt: fmtCompact }),
        chart('Delivered impressions/s', rate, { cls: 'c-rate', fmt: v => fmtCompact(v) + '/s' }));

      pauses.replaceChildren(st.pauseHistory.length ? h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Paused at'), h('th', {}, 'Reason'), h('th', { class: 'num' }, 'Failure rate'), h('th', {}, 'Probe at'))),
        h('tbody', {}, st.pauseHistory.slice().sort((x, y) => y.pausedAt - x.pausedAt).map(p => h('tr', {},
          h('td', { class: 'nowrap' }, fmtTime(p.pausedAt)), h('td', {}, p.reason), h('td', { class: 'num' }, p.failureRatePercent + '%'),
          h('td', { class: 'nowrap' }, fmtTime(p.pausedAt + p.cooldownMs)))))) : h('p', { class: 'empty' }, 'Never paused by protection.'));

      const gapRows = gp.gaps.slice().sort((x, y) => y.recordedAt - x.recordedAt);
      gaps.replaceChildren(gapRows.length ? h('table', { class: 'table', id: 'gaps-table' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Recorded'), h('th', {}, 'Environment'), h('th', { class: 'num' }, 'Impressions'), h('th', {}, 'Window'), h('th', {}, 'Reason'), h('th', {}, ''))),
        h('tbody', {}, gapRows.map(g => h('tr', { 'data-gap': g.id },
          h('td', { class: 'nowrap' }, fmtTime(g.recordedAt)), h('td', { class: 'mono' }, g.environmentId), h('td', { class: 'num' }, fmtInt(g.impressions)),
          h('td', {}, g.from ? fmtTime(g.from) + ' – ' + fmtTime(g.to) : 'offsets ' + g.fromOffset + '–' + g.toOffset),
          h('td', {}, g.reason),
          h('td', {}, g.closedBy ? h('span', { class: 'pill pill-active' }, 'replayed') :
            h('button', { class: 'btn btn-small replay-gap', 'data-gap': g.id, onclick: () => act('Replay', 'POST', `/v1/integrations/${enc}/replay`, { gapId: g.id }) }, 'Replay'))))))
        : h('p', { class: 'empty' }, 'No gaps: nothing was skipped.'));

      const jobs = rp.replays.slice().sort((a, b) => b.createdAt - a.createdAt);
      replays.replaceChildren(jobs.length ? h('table', { class: 'table', id: 'replays-table' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Job'), h('th', {}, 'State'), h('th', {}, 'Progress'), h('th', { class: 'num' }, 'Delivered'), h('th', {}, 'Started'))),
        h('tbody', {}, jobs.map(j => {
          const pct = j.totalOffsets ? Math.min(100, Math.round(100 * j.scannedOffsets / j.totalOffsets)) : (j.state === 'done' ? 100 : 0);
          return h('tr', { 'data-job': j.id, 'data-job-state': j.state },
            h('td', {}, h('div', { class: 'mono' }, j.id), h('div', { class: 'sub' }, j.gapId ? 'gap ' + j.gapId : fmtTime(j.from) + ' – ' + fmtTime(j.to))),
            h('td', {}, h('span', { class: 'pill pill-job-' + j.state }, j.state), j.lastError ? h('div', { class: 'sub error-text' }, j.lastError) : null),
            h('td', {}, h('div', { class: 'progress' }, h('div', { class: 'progress-bar', style: 'width:' + pct + '%' })), h('div', { class: 'sub' }, pct + '%')),
            h('td', { class: 'num' }, fmtInt(j.deliveredImpressions)),
            h('td', { class: 'nowrap' }, fmtTime(j.createdAt)));
        }))) : h('p', { class: 'empty' }, 'No replays.'));

      attempts.replaceChildren(at.attempts.length ? h('table', { class: 'table', id: 'attempts-table' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Time'), h('th', {}, 'Kind'), h('th', {}, 'Environment'), h('th', {}, 'Batch'),
          h('th', { class: 'num' }, 'Impressions'), h('th', {}, 'Result'), h('th', { class: 'num' }, 'Duration'))),
        h('tbody', {}, at.attempts.slice().sort((x, y) => y.time - x.time).slice(0, 50).map(a => h('tr', {},
          h('td', { class: 'nowrap' }, fmtTime(a.time)), h('td', {}, a.kind), h('td', { class: 'mono' }, a.environmentId), h('td', { class: 'mono sub' }, a.batchId),
          h('td', { class: 'num' }, fmtInt(a.impressions)),
          h('td', { class: a.error ? 'error-text' : 'ok-text' }, a.error ? a.error : 'HTTP ' + a.status),
          h('td', { class: 'num' }, a.durationMs + ' ms'))))) : h('p', { class: 'empty' }, 'No attempts yet.'));

      const rowsOf = obj => Object.entries(obj).filter(([k]) => k !== 'protection' && k !== 'headers').map(([k, v]) =>
        h('tr', {}, h('th', {}, k), h('td', { class: 'mono' }, Array.isArray(v) ? v.join(', ') : v === null ? '—' : String(v))));
      config.replaceChildren(h('table', { class: 'table kv', id: 'config-table' }, h('tbody', {}, rowsOf(cfg),
        h('tr', {}, h('th', {}, 'headers'), h('td', { class: 'mono' }, Object.keys(cfg.headers || {}).length ? Object.entries(cfg.headers).map(([k, v]) => k + ': ' + v).join('\n') : '—')),
        Object.entries(cfg.protection || {}).map(([k, v]) => h('tr', {}, h('th', {}, 'protection.' + k), h('td', { class: 'mono' }, String(v)))))));
    },
  };
}

// ---- start ----------------------------------------------------------------------------
$('#signin-form').addEventListener('submit', e => { e.preventDefault(); signIn($('#token').value.trim()); });
$('#signout').addEventListener('click', () => signOut(''));
window.addEventListener('hashchange', route);
if (sessionStorage.getItem(TOKEN_KEY)) { $('#app').hidden = false; route(); } else { $('#signin').hidden = false; }
