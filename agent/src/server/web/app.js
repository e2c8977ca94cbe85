// Osprey's live alert view. Plain JS, no build step. Alert text is attacker-controlled:
// every node is built with createElement/textContent, never from HTML strings.
'use strict';

const PRIOS = ['emergency', 'alert', 'critical', 'error', 'warning', 'notice', 'informational', 'debug'];
const SERVER_FILTERS = ['priority', 'rule', 'node', 'namespace', 'pod', 'image'];
const MAX_ITEMS = 10000; // kept in the page (alerts and gaps)
const MAX_ROWS = 500; // drawn in the table
const SVG = 'http://www.w3.org/2000/svg';

const state = { items: [], ids: new Set(), source: null, selected: null, fresh: new Set(), scheduled: false };
const $ = (id) => document.getElementById(id);
const form = $('filters');

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = String(text);
  return e;
}
const prio = (a) => String(a.priority || '').toLowerCase();
const rank = (p) => { const i = PRIOS.indexOf(p); return i < 0 ? PRIOS.length : i; };
const podOf = (a) => (a.pod ? `${a.pod.namespace}/${a.pod.name}` : '');

// ---- filters in the URL ----
function readFilters() {
  const p = new URLSearchParams(location.search);
  for (const name of [...SERVER_FILTERS, 'q']) form.elements[name].value = p.get(name) || '';
}
function filterParams(withQ) {
  const p = new URLSearchParams();
  for (const name of withQ ? [...SERVER_FILTERS, 'q'] : SERVER_FILTERS) {
    const v = form.elements[name].value.trim();
    if (v) p.set(name, v);
  }
  return p;
}
function saveFilters() {
  const qs = filterParams(true).toString();
  history.replaceState(null, '', qs ? `?${qs}` : location.pathname);
}
function setFilter(name, value) {
  form.elements[name].value = value;
  saveFilters();
  if (SERVER_FILTERS.includes(name)) connect(); else schedule();
}

// ---- the stream ----
function connect() {
  if (state.source) state.source.close();
  state.items = []; state.ids.clear(); state.fresh.clear();
  $('error').hidden = true;
  const url = `events?${filterParams(false).toString()}`;
  const es = new EventSource(url);
  state.source = es;
  setConn(false, 'connecting…');
  es.addEventListener('hello', (e) => {
    const h = JSON.parse(e.data);
    setConn(true, `${h.role} ${h.node}`);
  });
  es.addEventListener('alert', (e) => {
    const a = JSON.parse(e.data);
    if (state.ids.has(a.id)) return; // replayed after a reconnection
    state.ids.add(a.id);
    add({ kind: 'alert', a, ts: Date.parse(a.time) || Date.now() });
    state.fresh.add(a.id);
  });
  es.addEventListener('gap', (e) => add({ kind: 'gap', g: JSON.parse(e.data), ts: Date.now() }));
  es.onopen = () => { $('error').hidden = true; };
  es.onerror = () => {
    if (es !== state.source) return;
    if (es.readyState === EventSource.CLOSED) {
      // Refused (a bad filter, too many pages): the server says why in plain text.
      setConn(false, 'disconnected');
      fetch(url).then((r) => r.text()).then((t) => showError(t)).catch((err) => showError(String(err)));
    } else {
      setConn(false, 'reconnecting…');
    }
  };
}
function setConn(on, text) {
  $('conn').className = `dot ${on ? 'on' : 'off'}`;
  $('source').textContent = text;
}
function showError(t) { $('error').textContent = t; $('error').hidden = false; }
function add(item) {
  state.items.push(item);
  if (state.items.length > MAX_ITEMS) {
    for (const x of state.items.splice(0, state.items.length - MAX_ITEMS)) if (x.a) state.ids.delete(x.a.id);
  }
  schedule();
}
function schedule() {
  if (state.scheduled) return;
  state.scheduled = true;
  requestAnimationFrame(() => { state.scheduled = false; render(); });
}

// ---- free-text filter (in the page) ----
function haystack(a) {
  const p = a.process || {}, c = a.container || {};
  return [a.rule, a.output, a.node, a.priority, p.name, p.cmdline, p.exe_path, c.name, c.image, c.id,
    podOf(a), ...(a.tags || [])].join('\n').toLowerCase();
}
function visible() {
  const q = form.elements.q.value.trim().toLowerCase();
  return q ? state.items.filter((x) => x.kind === 'gap' || haystack(x.a).includes(q)) : state.items;
}

// ---- the table ----
function fmtTime(ts) {
  const d = new Date(ts), pad = (n) => String(n).padStart(2, '0');
  return `${d.getMonth() + 1}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function badge(p, label) { return el('span', { class: `badge ${p}` }, label); }
function row(item) {
  if (item.kind === 'gap') {
    const g = item.g;
    const why = { slow_subscriber: 'this page fell behind', not_retained: 'no longer retained',
      spool_overflow: "the agent's spool overflowed" }[g.reason] || g.reason;
    return el('tr', { class: 'gap' }, el('td', { colspan: '7' },
      `⚠ ${g.missed} alert${g.missed === 1 ? '' : 's'} missed from node ${g.node} (${why}; seq ${g.from_seq}–${g.to_seq})`));
  }
  const a = item.a, p = a.process || {}, c = a.container;
  const where = el('td', { class: 'where' });
  if (a.pod) where.append(el('span', { class: 'dim' }, `${a.pod.namespace}/`), a.pod.name);
  if (c) where.append(a.pod ? el('span', { class: 'dim' }, ` · ${c.name || c.id}`) : (c.name || c.id));
  if (!a.pod && !c) where.append(el('span', { class: 'dim' }, 'host'));
  const tr = el('tr', { class: 'alert', 'data-id': a.id },
    el('td', { class: 'time', title: a.time }, fmtTime(item.ts)),
    el('td', { class: 'prio' }, badge(prio(a), a.priority)),
    el('td', { class: 'rule', title: a.rule }, a.rule),
    el('td', { class: 'node' }, a.node),
    where,
    el('td', { class: 'proc', title: p.cmdline || '' }, p.name || '', el('span', { class: 'dim' }, p.pid ? ` ${p.pid}` : '')),
    el('td', { class: 'output', title: a.output }, a.output));
  if (state.selected === a.id) tr.classList.add('selected');
  if (state.fresh.has(a.id)) tr.classList.add('fresh');
  tr.addEventListener('click', () => showDetail(a));
  return tr;
}
function render() {
  const items = visible();
  const body = document.querySelector('#alerts tbody');
  const rows = [];
  for (let i = items.length - 1; i >= 0 && rows.length < MAX_ROWS; i--) rows.push(row(items[i]));
  body.replaceChildren(...rows);
  state.fresh.clear();
  const alerts = items.filter((x) => x.kind === 'alert');
  $('empty').hidden = alerts.length > 0;
  $('n-shown').textContent = alerts.length;
  const recent = Date.now() - 5 * 60e3;
  $('n-recent').textContent = alerts.filter((x) => x.ts >= recent).length;
  $('n-missed').textContent = items.filter((x) => x.kind === 'gap').reduce((n, x) => n + x.g.missed, 0);
  drawCharts(alerts);
}

// ---- charts (SVG, drawn here) ----
function count(alerts, key) {
  const m = new Map();
  for (const x of alerts) { const k = key(x.a); if (k) m.set(k, (m.get(k) || 0) + 1); }
  return [...m.entries()];
}
function hbars(id, entries, opts) {
  const s = $(id);
  const W = s.clientWidth || 300, H = s.clientHeight || 128;
  s.setAttribute('viewBox', `0 0 ${W} ${H}`);
  s.replaceChildren();
  if (!entries.length) { s.append(svg('text', { x: 4, y: 20 }, 'nothing yet')); return; }
  const n = Math.min(entries.length, opts.max || 6);
  const rowH = Math.min(21, H / n), label = Math.min(W * 0.45, 240), max = Math.max(...entries.map((e) => e[1]));
  entries.slice(0, n).forEach(([k, v], i) => {
    const y = i * rowH, w = Math.max(2, (W - label - 50) * v / max);
    const g = svg('g', { class: opts.onClick ? 'clickable' : '' });
    const name = svg('text', { x: 0, y: y + rowH * 0.65 }, k.length > 40 ? `${k.slice(0, 39)}…` : k);
    name.append(svg('title', {}, k));
    g.append(name);
    const bar = svg('rect', { class: 'bar', x: label, y: y + rowH * 0.15, width: w, height: rowH * 0.7, rx: 3 });
    if (opts.color) bar.style.fill = opts.color(k);
    g.append(bar, svg('text', { class: 'value', x: label + w + 6, y: y + rowH * 0.65 }, v));
    if (opts.onClick) g.addEventListener('click', () => opts.onClick(k));
    s.append(g);
  });
}
const prioColor = (p) => `var(--p-${p.toLowerCase()})`;
function timeline(alerts) {
  const s = $('chart-timeline');
  const W = s.clientWidth || 600, H = s.clientHeight || 128, base = H - 18;
  s.setAttribute('viewBox', `0 0 ${W} ${H}`);
  s.replaceChildren();
  const minute = 60e3, now = Math.floor(Date.now() / minute);
  const oldest = alerts.length ? Math.floor(Math.min(...alerts.map((x) => x.ts)) / minute) : now;
  const span = Math.max(30, Math.min(360, now - oldest + 1)); // minutes shown, up to 6 h
  const first = now - span + 1;
  const buckets = new Array(span).fill(0), worst = new Array(span).fill(PRIOS.length);
  for (const x of alerts) {
    const i = Math.floor(x.ts / minute) - first;
    if (i >= 0 && i < span) { buckets[i]++; worst[i] = Math.min(worst[i], rank(prio(x.a))); }
  }
  const max = Math.max(1, ...buckets), bw = (W - 40) / span;
  $('timeline-span').textContent = `(last ${span >= 120 ? `${Math.round(span / 60)} h` : `${span} min`})`;
  s.append(svg('line', { class: 'axis', x1: 36, y1: base + 0.5, x2: W, y2: base + 0.5 }),
    svg('text', { x: 0, y: 12 }, max), svg('text', { x: 0, y: base }, 0));
  buckets.forEach((v, i) => {
    if (!v) return;
    const h = Math.max(2, (base - 8) * v / max);
    const r = svg('rect', { class: 'bar', x: 40 + i * bw, y: base - h, width: Math.max(1, bw - 1), height: h, rx: 1 });
    r.style.fill = prioColor(PRIOS[worst[i]] || 'debug');
    r.append(svg('title', {}, `${fmtTime((first + i) * minute).slice(6, 11)}: ${v} alert${v === 1 ? '' : 's'}`));
    s.append(r);
  });
  const t = (m) => fmtTime(m * minute).slice(6, 11);
  s.append(svg('text', { x: 40, y: H - 3 }, t(first)), svg('text', { x: W - 4, y: H - 3, 'text-anchor': 'end' }, `${t(now)} now`));
}
function drawCharts(alerts) {
  const byPrio = count(alerts, (a) => a.priority).sort((x, y) => rank(x[0].toLowerCase()) - rank(y[0].toLowerCase()));
  hbars('chart-priority', byPrio, { max: 8, color: prioColor, onClick: (k) => setFilter('priority', k.toLowerCase()) });
  const top = (e) => e.sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1));
  hbars('chart-rules', top(count(alerts, (a) => a.rule)), { max: 6, onClick: (k) => setFilter('rule', k) });
  timeline(alerts);
  hbars('chart-nodes', top(count(alerts, (a) => a.node)), { max: 6, onClick: (k) => setFilter('node', k) });
  hbars('chart-pods', top(count(alerts, podOf)), {
    max: 6,
    onClick: (k) => { const [ns, pod] = k.split('/'); form.elements.namespace.value = ns; setFilter('pod', pod); },
  });
}

// ---- an alert's detail ----
function dl(pairs) {
  const d = el('dl');
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === '') continue;
    d.append(el('dt', {}, k), el('dd', {}, typeof v === 'object' ? JSON.stringify(v) : String(v)));
  }
  return d;
}
function showDetail(a) {
  state.selected = a.id;
  const p = a.process || {}, c = a.container, pod = a.pod;
  $('detail-title').replaceChildren(badge(prio(a), a.priority), ' ', a.rule);
  const parts = [
    el('h3', {}, 'Alert'),
    dl([['time', a.time], ['node', a.node], ['id', a.id], ['source', a.source], ['event', a.evt_type],
      ['hostname', a.hostname], ['action', a.action], ['tags', (a.tags || []).join(', ')]]),
    el('h3', {}, 'Output'), el('pre', {}, a.output),
    el('h3', {}, 'Process'),
    dl([['name', p.name], ['pid', p.pid], ['tid', p.tid], ['exe', p.exe_path], ['cmdline', p.cmdline], ['user', p.user]]),
  ];
  const lineage = el('ol', { class: 'lineage' },
    el('li', {}, p.name || '?', el('span', { class: 'dim' }, ` (${p.pid}) ${p.cmdline || ''}`)));
  for (const x of p.ancestors || []) {
    lineage.append(el('li', {}, x.name || '?', el('span', { class: 'dim' }, ` (${x.pid || '?'}) ${x.cmdline || x.exe_path || ''}`)));
  }
  parts.push(el('h3', {}, 'Lineage (process, then its parents)'), lineage);
  if (c) {
    parts.push(el('h3', {}, 'Container'), dl([['id', c.id], ['full id', c.full_id], ['name', c.name], ['image', c.image],
      ['repository', c.image_repository], ['tag', c.image_tag], ['digest', c.image_digest], ['runtime', c.runtime],
      ['privileged', c.privileged]]));
  }
  if (pod) {
    parts.push(el('h3', {}, 'Pod'), dl([['namespace', pod.namespace], ['name', pod.name], ['uid', pod.uid],
      ...Object.entries(pod.labels || {}).map(([k, v]) => [`label ${k}`, v])]));
  }
  parts.push(el('h3', {}, 'Output fields'), dl(Object.entries(a.output_fields || {}).sort()));
  $('detail-body').replaceChildren(...parts);
  $('detail').hidden = false;
  schedule();
}
function closeDetail() { $('detail').hidden = true; state.selected = null; schedule(); }

// ---- wiring ----
let typing;
form.addEventListener('input', (e) => {
  clearTimeout(typing);
  typing = setTimeout(() => {
    saveFilters();
    if (e.target.name === 'q') schedule(); else connect();
  }, e.target.tagName === 'SELECT' ? 0 : 400);
});
form.addEventListener('submit', (e) => e.preventDefault());
$('clear').addEventListener('click', () => { form.reset(); saveFilters(); connect(); });
$('detail-close').addEventListener('click', closeDetail);
document.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeDetail(); });
window.addEventListener('resize', schedule);
setInterval(schedule, 30e3); // the timeline moves on, and "last 5 min" with it
readFilters();
connect();
