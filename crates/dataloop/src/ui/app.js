// dataloop web view (see ui.rs). Reads the bearer token from the URL fragment, then draws the
// data from /registry and POST /sql. Every value reaches the DOM through textContent or an SVG
// attribute, never as markup.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';

function token() {
  const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem('dataloop-token', decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem('dataloop-token') || '';
}

async function api(path, body) {
  const init = { headers: { Authorization: 'Bearer ' + token() } };
  if (body !== undefined) {
    init.method = 'POST';
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (!r.ok) throw new Error(path + ': HTTP ' + r.status + ' ' + (await r.text()));
  return r.json();
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

// Horizontal bars: rows = [[label, value]], one bar per row with data-key/data-count.
function bars(target, rows, chart, fmt) {
  const width = 420, bar = 18, gap = 4, left = 130;
  const max = Math.max(1e-9, ...rows.map(r => r[1]));
  const s = svg('svg', { width, height: rows.length * (bar + gap) + 4, 'data-chart': chart });
  rows.forEach(([key, value], i) => {
    const y = i * (bar + gap) + 2;
    s.appendChild(svg('text', { x: left - 6, y: y + 13, 'text-anchor': 'end' }, key));
    s.appendChild(svg('rect', {
      x: left, y, height: bar, width: Math.max(1, (width - left - 60) * value / max),
      fill: '#4a7ab5', 'data-key': key, 'data-count': value,
    }));
    s.appendChild(svg('text', { x: left + (width - left - 60) * value / max + 4, y: y + 13 },
      fmt ? fmt(value) : value));
  });
  document.getElementById(target).replaceChildren(s);
}

// Grouped bars per version: model and constant velocity side by side.
function versionBars(target, versions, pick, chart) {
  const rows = [];
  for (const v of versions) {
    const m = v.pinned && v.pinned[pick];
    if (!m) continue;
    rows.push(['v' + v.version + ' model', m.ade_m]);
    rows.push(['v' + v.version + ' const. vel.', m.cv_ade_m]);
  }
  bars(target, rows, chart, x => x.toFixed(3));
}

function table(target, head, rows, chart) {
  const t = el('table');
  t.setAttribute('data-table', chart);
  const tr = el('tr');
  head.forEach((h, i) => tr.appendChild(el('th', h, i === 0 ? 'l' : '')));
  t.appendChild(tr);
  for (const r of rows) {
    const row = el('tr');
    r.forEach((c, i) => row.appendChild(el('td', c, i === 0 ? 'l' : '')));
    t.appendChild(row);
  }
  document.getElementById(target).replaceChildren(t);
}

function sum(map, key, n) { map.set(key, (map.get(key) || 0) + n); }

async function main() {
  const state = document.getElementById('state');
  try {
    const registry = await api('/registry');
    const counts = await api('/sql', {
      sql: 'SELECT source, log_id, category, count(*) AS clips FROM olap GROUP BY source, log_id, category',
    });
    const pinned = new Set((registry.eval_pin && registry.eval_pin.log_ids) || []);
    const bySource = new Map(), byCategory = new Map(), bySplit = new Map();
    let total = 0;
    for (const r of counts.rows) {
      const n = Number(r.clips);
      total += n;
      sum(bySource, r.source, n);
      sum(byCategory, r.category, n);
      sum(bySplit, pinned.has(r.log_id) ? 'eval' : 'train', n);
    }
    const sorted = m => [...m.entries()].sort((a, b) => b[1] - a[1]);
    bars('by-source', sorted(bySource), 'source');
    bars('by-category', sorted(byCategory), 'category');
    bars('by-split', sorted(bySplit), 'split');
    document.getElementById('totals').textContent =
      total + ' clips in the OLAP store (warehouse version ' + counts.warehouse_version + ')';

    const pin = registry.eval_pin;
    document.getElementById('pin').textContent = pin
      ? 'Logs ' + pin.log_ids.join(', ') + ' at warehouse version ' + pin.warehouse_version +
        ', ' + pin.windows + ' windows, fingerprint ' + pin.fingerprint.slice(0, 16) + '…'
      : 'No evaluation set pinned yet (the first trigger chooses it).';
    const versions = registry.versions || [];
    versionBars('ade-all', versions, 'all', 'ade-all');
    versionBars('ade-moving', versions, 'moving', 'ade-moving');

    const categories = new Set();
    for (const v of versions) {
      if (v.pinned) Object.keys(v.pinned.moving.per_category).forEach(c => categories.add(c));
    }
    const cats = [...categories].sort();
    table('per-category', ['version', ...cats],
      versions.filter(v => v.pinned).map(v => ['v' + v.version, ...cats.map(c => {
        const m = v.pinned.moving.per_category[c];
        return m ? m.ade_m.toFixed(3) + ' / ' + m.cv_ade_m.toFixed(3) + ' (' + m.windows + ')' : '–';
      })]), 'per-category');

    table('history', ['version', 'fired at', 'trigger', 'rule', 'clips', 'mode',
      'training windows', 'warehouse v', 'ADE [m]', 'champion'],
      versions.map(v => ['v' + v.version, v.trigger.fired_at, v.trigger.kind,
        v.trigger.rule || '–', v.trigger.clips, v.mode, v.train_windows, v.warehouse_version,
        v.metrics.ade_m.toFixed(3), registry.champion === v.version ? 'yes' : (v.promoted ? 'was' : 'no')]),
      'history');
    const rows = document.querySelectorAll('#history tr');
    versions.forEach((v, i) => {
      if (v.trigger.kind !== 'manual') return;
      const cell = rows[i + 1].firstChild;
      const a = el('a', 'v' + v.version + ' clips');
      a.href = '/ui?list=' + encodeURIComponent(v.version);
      cell.replaceChildren(a);
    });
    state.textContent = 'ready';
    state.setAttribute('data-ready', 'true');
  } catch (e) {
    state.textContent = String(e.message || e);
    state.className = 'error';
    state.setAttribute('data-ready', 'error');
  }
}

// One small chart per clip of a mined ID list: history (grey), ground truth (green), the
// version's model (blue) and constant velocity (red, dashed), in the agent frame.
function clipChart(c) {
  const size = 220, pad = 12;
  const all = [...c.history, ...c.future, ...c.model, ...c.constant_velocity];
  const xs = all.map(p => p[0]), ys = all.map(p => p[1]);
  const span = Math.max(2, Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys));
  const cx = (Math.max(...xs) + Math.min(...xs)) / 2, cy = (Math.max(...ys) + Math.min(...ys)) / 2;
  const k = (size - 2 * pad) / span;
  const pt = p => ((p[0] - cx) * k + size / 2).toFixed(1) + ',' + (size / 2 - (p[1] - cy) * k).toFixed(1);
  const s = svg('svg', { width: size, height: size + 28, 'data-clip': c.clip_id });
  s.appendChild(svg('rect', { x: 0, y: 0, width: size, height: size, fill: '#fafafa', stroke: '#ddd' }));
  // A nested viewport clips the paths (lanes run far) to the square above the labels.
  const plot = s.appendChild(svg('svg', { x: 0, y: 0, width: size, height: size }));
  const line = (points, color, name, dash) => plot.appendChild(svg('polyline', {
    points: points.map(pt).join(' '), fill: 'none', stroke: color, 'stroke-width': 2,
    'stroke-dasharray': dash || 'none', 'data-path': name, 'data-points': points.length,
  }));
  for (const lane of c.lanes) line(lane, '#cdd6e4', 'lane');
  line(c.history, '#888', 'history');
  line([[0, 0], ...c.future], '#2a2', 'future');
  line([[0, 0], ...c.model], '#36c', 'model');
  line([[0, 0], ...c.constant_velocity], '#c33', 'constant_velocity', '4 3');
  s.appendChild(svg('text', { x: 2, y: size + 12 }, c.category + ' · ' + c.clip_id.slice(-30)));
  s.appendChild(svg('text', { x: 2, y: size + 25 },
    'ADE model ' + c.model_ade_m.toFixed(2) + ' m, const. vel. ' + c.cv_ade_m.toFixed(2) + ' m'));
  return s;
}

async function minedPage(version) {
  const state = document.getElementById('state');
  document.querySelectorAll('h2, section, #totals, #pin, #per-category, #history')
    .forEach(e => e.remove());
  try {
    const view = await api('/mined/' + encodeURIComponent(version) + '?limit=24');
    document.querySelector('h1').textContent = 'dataloop: version ' + view.version +
      ', rule ' + view.rule;
    const intro = el('p', view.ids + ' clips mined; the first ' + view.clips.length +
      ' at warehouse version ' + view.warehouse_version + '. Grey: history, green: ground truth, ' +
      'blue: this version\'s model, red dashed: constant velocity, pale blue: HD-map lane ' +
      'centrelines where the log has a map (agent frame, heading +x).');
    const grid = el('div');
    grid.setAttribute('data-chart', 'mined');
    grid.style.display = 'flex';
    grid.style.flexWrap = 'wrap';
    grid.style.gap = '10px';
    view.clips.forEach(c => grid.appendChild(clipChart(c)));
    document.body.append(intro, grid);
    state.textContent = 'ready';
    state.setAttribute('data-ready', 'true');
  } catch (e) {
    state.textContent = String(e.message || e);
    state.className = 'error';
    state.setAttribute('data-ready', 'error');
  }
}

const list = new URLSearchParams(location.search).get('list');
if (list) minedPage(list); else main();
