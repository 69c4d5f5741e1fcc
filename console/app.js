// portcullis console: a small hash-routed app over the admin API (/api/*).
// No framework: a few helpers build DOM nodes (never HTML strings from data, so captured
// bytes can never become markup), and each page is one function.
'use strict';

(() => {
  const POLL_MS = 700;
  const OUTCOMES = [
    'forwarded', 'queued', 'delivered', 'retry', 'dead', 'duplicate', 'in_flight',
    'invalid_signature', 'replay', 'bad_request', 'forbidden', 'handshake', 'not_found',
    'method_not_allowed', 'too_large', 'body_timeout', 'upstream_error', 'upstream_unavailable',
    'upstream_timeout', 'store_error', 'queue_error', 'certificate_unavailable', 'overloaded',
    'draining', 'internal_error',
  ];
  const TIMES = [['', 'any time'], ['15', 'last 15 minutes'], ['60', 'last hour'], ['1440', 'last 24 hours']];

  const main = document.getElementById('main');
  let session = { signed_in: false, token_required: true, actor: null };
  let stopPage = () => {};
  // The router's generation: a page still loading when the operator moves on sees it change
  // and neither draws nor keeps polling.
  let gen = 0;

  // ---- DOM helpers ----------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const SVG = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    for (const c of children.flat()) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
  }
  function show(...nodes) {
    main.replaceChildren(...nodes);
  }
  const pad = (n) => String(n).padStart(2, '0');
  const fmtClock = (ms) => {
    const t = new Date(ms);
    return `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
  };
  // Local time, compact and sortable: 2026-12-01 03:26:00.
  const fmtTime = (ms) => {
    if (ms === null || ms === undefined) return '—';
    const t = new Date(ms);
    return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${fmtClock(ms)}`;
  };
  const fmtMs = (v) => (v === null || v === undefined ? '—' : `${Number(v).toFixed(1)} ms`);
  const dash = (v) => (v === null || v === undefined || v === '' ? '—' : String(v));
  function outcomeClass(o) {
    if (['forwarded', 'delivered', 'queued', 'duplicate'].includes(o)) return 'ok';
    if (['retry', 'in_flight', 'replay'].includes(o)) return 'warn';
    if (['invalid_signature', 'forbidden', 'bad_request', 'handshake'].includes(o)) return 'refused';
    return 'bad';
  }
  const badge = (o) => h('span', { class: `badge ${outcomeClass(o)}`, 'data-outcome': o }, o);

  // ---- the API ----------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }
  async function api(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, 'the admin listener does not answer');
    }
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch (e) {
      json = null;
    }
    if (res.status === 401 && path !== '/api/session') {
      session.signed_in = false;
      location.hash = '#/signin';
      throw new ApiError(401, 'signed out');
    }
    if (!res.ok) {
      const msg = (json && json.error) || `${res.status} ${res.statusText}`;
      const err = new ApiError(res.status, res.status === 501 ? `not available in this version (${msg})` : msg);
      err.json = json;
      throw err;
    }
    return json;
  }
  function errorBox(e) {
    return h('p', { class: 'error', role: 'alert' }, e instanceof ApiError ? e.message : String(e));
  }

  // ---- the session --------------------------------------------------------------------------
  async function loadSession() {
    try {
      session = await api('GET', '/api/session');
    } catch (e) {
      session = { signed_in: false, token_required: true, actor: null };
    }
    renderWho();
  }
  function renderWho() {
    const who = document.getElementById('who');
    document.getElementById('nav').hidden = !session.signed_in;
    if (!session.signed_in) return who.replaceChildren();
    if (!session.token_required) {
      return who.replaceChildren(
        h('span', { class: 'muted', title: 'No admin.token is configured: the listener is open on loopback' },
          'open on loopback (no token configured)'),
      );
    }
    who.replaceChildren(
      h('span', { class: 'muted' }, `signed in as ${session.actor}`),
      h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out'),
    );
  }
  async function signOut() {
    try {
      await api('DELETE', '/api/session');
    } catch (e) { /* the cookie is gone either way on the next call */ }
    session.signed_in = false;
    renderWho();
    location.hash = '#/signin';
  }

  function signInPage() {
    const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true });
    const status = h('p', { id: 'signin-status', role: 'status' });
    const form = h('form', { class: 'card signin', id: 'signin' },
      h('h1', {}, 'Sign in'),
      h('p', { class: 'muted' }, 'Give one of the admin tokens (admin.token in the configuration). It is kept in an HttpOnly cookie as a derived value, never in the page.'),
      h('label', { for: 'token' }, 'Admin token'),
      input,
      h('button', { type: 'submit' }, 'Sign in'),
      status);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      status.textContent = 'Signing in…';
      status.className = '';
      try {
        await api('POST', '/api/session', { token: input.value });
        input.value = '';
        await loadSession();
        location.hash = '#/deliveries';
      } catch (e) {
        status.textContent = e.status === 401 ? 'Wrong token.' : `Sign-in failed: ${e.message}`;
        status.className = 'error';
        input.select();
      }
    });
    show(form);
    input.focus();
  }

  // ---- deliveries ---------------------------------------------------------------------------
  let routeNames = null;
  async function routeOptions() {
    if (routeNames) return routeNames;
    try {
      const r = await api('GET', '/api/routes');
      routeNames = r.routes.map((x) => x.name);
    } catch (e) {
      routeNames = [];
    }
    return routeNames;
  }
  function queryOf(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
    const t = q.toString();
    return t ? `?${t}` : '';
  }
  function hashParams() {
    const i = location.hash.indexOf('?');
    return new URLSearchParams(i < 0 ? '' : location.hash.slice(i + 1));
  }

  async function deliveriesPage() {
    const hp = hashParams();
    const filters = { route: hp.get('route') || '', outcome: hp.get('outcome') || '', minutes: hp.get('minutes') || '' };
    const routes = await routeOptions();
    const select = (name, label, options) => h('label', {},
      label,
      h('select', { name, onchange: applyFilters },
        options.map(([v, t]) => h('option', { value: v, selected: v === filters[name] }, t))));
    const form = h('form', { class: 'filters', 'aria-label': 'Filters' },
      select('route', 'Route', [['', 'all routes'], ...routes.map((r) => [r, r])]),
      select('outcome', 'Outcome', [['', 'all outcomes'], ...OUTCOMES.map((o) => [o, o])]),
      select('minutes', 'Time', TIMES));
    function applyFilters() {
      const f = new FormData(form);
      location.hash = `#/deliveries${queryOf({ route: f.get('route'), outcome: f.get('outcome'), minutes: f.get('minutes') })}`;
    }
    const live = h('span', { class: 'live', role: 'status' }, 'live');
    const tbody = h('tbody', { id: 'deliveries' });
    const table = h('table', { class: 'grid' },
      h('caption', { class: 'sr' }, 'Deliveries, newest first'),
      h('thead', {}, h('tr', {},
        [['Time', 'w-time'], ['Id', 'w-id'], ['Route', ''], ['Outcome', 'w-outcome'], ['Status', 'w-num'],
          ['Upstream', 'w-num'], ['Latency', 'w-lat'], ['Event key', 'w-key']].map(([c, w]) => h('th', { scope: 'col', class: w || null }, c)))),
      tbody);
    const more = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Older deliveries');
    const err = h('div', {});
    const empty = h('p', { class: 'muted', hidden: true }, 'No delivery recorded yet (matching these filters).');
    show(h('div', { class: 'bar' }, h('h1', {}, 'Deliveries'), live), form, err, table, empty, more);

    const myGen = gen;
    const seen = new Map();
    let next = null;
    let newest = 0;
    const baseSince = filters.minutes ? Date.now() - Number(filters.minutes) * 60000 : null;
    const base = { route: filters.route, outcome: filters.outcome };
    const row = (d) => h('tr', { 'data-id': d.id, 'data-outcome': d.outcome },
      h('td', {}, fmtTime(d.time_ms)),
      h('td', {}, h('a', { href: `#/deliveries/${encodeURIComponent(d.id)}`, class: 'mono' }, d.id.slice(-10))),
      h('td', {}, d.route),
      h('td', {}, badge(d.outcome), d.replay_of ? h('span', { class: 'muted' }, ' replay') : null),
      h('td', {}, dash(d.status)),
      h('td', {}, dash(d.upstream_status)),
      h('td', {}, fmtMs(d.latency_ms)),
      h('td', { class: 'mono ellipsis', title: d.event_key || '' }, dash(d.event_key)));
    function add(list, atTop) {
      const fresh = list.filter((d) => !seen.has(d.id));
      fresh.sort((a, b) => (a.id < b.id ? 1 : -1));
      for (const d of fresh) {
        const tr = row(d);
        seen.set(d.id, tr);
        newest = Math.max(newest, d.time_ms);
        if (atTop) {
          // Keep the table sorted by id (newest first) even when a slow one lands late.
          const after = [...tbody.children].find((r) => r.dataset.id < d.id);
          tbody.insertBefore(tr, after || null);
          tr.classList.add('new');
        } else tbody.append(tr);
      }
      empty.hidden = seen.size > 0;
    }
    try {
      const first = await api('GET', `/api/deliveries${queryOf({ ...base, since: baseSince, limit: 50 })}`);
      add(first.deliveries, false);
      next = first.next;
      more.hidden = !next;
    } catch (e) {
      err.replaceChildren(errorBox(e));
    }
    more.addEventListener('click', async () => {
      try {
        const page = await api('GET', `/api/deliveries${queryOf({ ...base, since: baseSince, before: next, limit: 50 })}`);
        add(page.deliveries, false);
        next = page.next;
        more.hidden = !next;
      } catch (e) {
        err.replaceChildren(errorBox(e));
      }
    });
    // Live: ask for what was recorded since the newest one seen (less a minute, as a
    // delivery is recorded when it ends, and a slow one ends after later arrivals).
    let stopped = false;
    let timer = null;
    async function poll() {
      if (stopped || myGen !== gen) return;
      if (document.hidden) {
        // A tab in the background asks for nothing; it catches up when shown again.
        timer = setTimeout(poll, POLL_MS);
        return;
      }
      try {
        const since = Math.max(baseSince || 0, newest ? newest - 60000 : 0) || null;
        const page = await api('GET', `/api/deliveries${queryOf({ ...base, since, limit: 100 })}`);
        add(page.deliveries, true);
        live.textContent = 'live';
        live.className = 'live';
      } catch (e) {
        live.textContent = `paused: ${e.message}`;
        live.className = 'live off';
      }
      if (!stopped) timer = setTimeout(poll, POLL_MS);
    }
    timer = setTimeout(poll, POLL_MS);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  // ---- one delivery -------------------------------------------------------------------------
  function fields(pairs) {
    return h('dl', { class: 'fields' }, pairs.filter(([, v]) => v !== undefined).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v instanceof Node ? v : dash(v))]));
  }
  function decodeBody(capture) {
    if (typeof capture.body_text === 'string') return capture.body_text;
    try {
      const bin = atob(capture.body || '');
      const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch (e) {
      return null;
    }
  }
  function copyButton(label, text) {
    const b = h('button', { type: 'button', class: 'secondary small' }, label);
    b.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(text);
        b.textContent = 'Copied';
      } catch (e) {
        // Without clipboard access (plain HTTP on a non-local name), select the text instead.
        const pre = b.parentElement.nextElementSibling;
        if (pre) window.getSelection().selectAllChildren(pre);
        b.textContent = 'Selected: press Ctrl+C';
      }
      setTimeout(() => { b.textContent = label; }, 2000);
    });
    return b;
  }
  function stepText(st) {
    if (typeof st === 'string') return st;
    if (st && typeof st === 'object') {
      const name = st.step || st.name || st.check || '';
      const text = st.detail || st.message || st.text || st.explanation || '';
      const mark = st.ok === true || st.passed === true ? '✓ ' : st.ok === false || st.passed === false ? '✗ ' : '';
      return `${mark}${name}${name && text ? ': ' : ''}${text}` || JSON.stringify(st);
    }
    return String(st);
  }
  function diagnosisView(diag, d) {
    if (!diag) {
      return h('p', { class: 'muted' }, d.detail ? `Reason: ${d.detail}` : 'No diagnosis for this delivery.');
    }
    if (typeof diag === 'string') return h('div', { class: 'diagnosis' }, h('p', { class: 'diagnosis-summary' }, diag));
    const lines = diag.lines || diag.steps || [];
    const source = diag.source === 'capture'
      ? 'Checked again on the captured bytes with the route\'s current secrets.'
      : diag.not_on_capture_because ? `From the record only: ${diag.not_on_capture_because}.` : null;
    return h('div', { class: 'diagnosis' },
      h('p', { class: 'diagnosis-summary' }, diag.summary || d.detail || ''),
      diag.step ? h('p', {}, 'Failing check: ', h('strong', {}, diag.step)) : null,
      lines.length ? h('ul', { class: 'steps' }, lines.map((st) => h('li', {}, stepText(st)))) : null,
      source ? h('p', { class: 'muted small' }, source) : null);
  }
  function timelineView(items) {
    if (!Array.isArray(items) || items.length === 0) return h('p', { class: 'muted' }, 'No timeline.');
    return h('ol', { class: 'timeline' }, items.map((t) => {
      const steps = Array.isArray(t.steps) ? t.steps.map(stepText).join(' → ') : '';
      const extra = steps || [
        t.status !== undefined && t.status !== null ? `status ${t.status}` : null,
        t.upstream_status !== undefined && t.upstream_status !== null ? `upstream ${t.upstream_status}` : null,
        t.detail || null,
      ].filter(Boolean).join(' · ');
      const label = t.kind || t.label || '';
      const link = t.id && !t.this ? h('a', { href: `#/deliveries/${encodeURIComponent(t.id)}`, class: 'mono small' }, t.id.slice(-10)) : null;
      return h('li', { class: t.this ? 'this' : null },
        h('time', {}, t.time_ms ? fmtClock(t.time_ms) : ''),
        label ? h('strong', {}, `${label} `) : null,
        t.outcome ? badge(t.outcome) : null,
        extra ? h('span', { class: 'muted' }, ` ${extra} `) : null, link);
    }));
  }
  function captureView(c) {
    if (!c) return h('p', { class: 'muted' }, 'The request was not captured (or its capture has expired). Set capture on the route to keep the bytes.');
    const headerText = c.headers.map(([k, v]) => `${k}: ${v}`).join('\n');
    const body = decodeBody(c);
    return h('div', { class: 'capture' },
      h('p', {}, h('span', { class: 'mono' }, `${c.method} ${c.target}`),
        c.truncated ? h('span', { class: 'badge warn' }, 'truncated') : null,
        c.verified ? h('span', { class: 'badge ok' }, 'verified') : h('span', { class: 'badge refused' }, 'not verified')),
      h('div', { class: 'bar' }, h('h3', {}, 'Headers'), copyButton('Copy headers', headerText)),
      h('pre', { class: 'code', tabindex: '0' }, headerText),
      h('div', { class: 'bar' }, h('h3', {}, 'Body'), copyButton('Copy body', body === null ? (c.body || '') : body)),
      h('pre', { class: 'code', tabindex: '0' }, body === null ? `(binary, base64)\n${c.body || ''}` : body));
  }
  async function deliveryPage(id) {
    const myGen = gen;
    show(h('p', { class: 'muted' }, 'Loading…'));
    let d;
    try {
      d = await api('GET', `/api/deliveries/${encodeURIComponent(id)}`);
      if (myGen !== gen) return;
    } catch (e) {
      show(h('p', {}, h('a', { href: '#/deliveries' }, '← Deliveries')), errorBox(e));
      return;
    }
    const result = h('div', { id: 'replay-result', role: 'status' });
    let replay = null;
    if (d.replayable) {
      replay = h('button', { type: 'button', id: 'replay' }, 'Replay');
      replay.addEventListener('click', async () => {
        replay.disabled = true;
        result.replaceChildren(h('p', { class: 'muted' }, 'Sending…'));
        try {
          const r = await api('POST', `/api/deliveries/${encodeURIComponent(id)}/replay`, { force: false });
          result.replaceChildren(h('p', { class: 'result' }, 'Replay: ', badge(r.outcome || 'sent'),
            ` status ${dash(r.status)}, upstream ${dash(r.upstream_status)} `,
            r.replay_id ? h('a', { href: `#/deliveries/${encodeURIComponent(r.replay_id)}` }, 'open the replay') : null));
        } catch (e) {
          result.replaceChildren(errorBox(e));
        }
        replay.disabled = false;
      });
    }
    const why = !d.replayable && d.replay_refused_because ? h('p', { class: 'muted' }, `Not replayable: ${d.replay_refused_because}`) : null;
    show(
      h('p', {}, h('a', { href: '#/deliveries' }, '← Deliveries')),
      h('div', { class: 'bar' }, h('h1', {}, 'Delivery ', h('span', { class: 'mono' }, d.id)), badge(d.outcome)),
      h('div', { class: 'cols' },
        h('section', { class: 'card' }, h('h2', {}, 'Record'), fields([
          ['Time', fmtTime(d.time_ms)], ['Route', d.route], ['Provider', d.provider],
          ['Request', `${d.method} ${d.path}`], ['Client', d.client], ['Request id', d.request_id],
          ['Status', d.status], ['Event key', d.event_key], ['Secret index', d.secret_index],
          ['Latency', fmtMs(d.latency_ms)], ['Upstream status', d.upstream_status],
          ['Upstream time', fmtMs(d.upstream_latency_ms)], ['Attempts', d.attempts],
          ['Reason', d.detail],
          ['Replay of', d.replay_of ? h('a', { href: `#/deliveries/${encodeURIComponent(d.replay_of)}`, class: 'mono' }, d.replay_of) : undefined],
        ])),
        h('section', { class: 'card' }, h('h2', {}, 'Diagnosis'), diagnosisView(d.diagnosis, d),
          h('h2', {}, 'Timeline'), timelineView(d.timeline),
          h('div', { class: 'actions' }, replay, why), result)),
      h('section', { class: 'card' }, h('h2', {}, 'Captured request'), captureView(d.capture)));
  }

  // ---- dead letters -------------------------------------------------------------------------
  async function deadLettersPage() {
    const err = h('div', {});
    const tbody = h('tbody', {});
    show(h('h1', {}, 'Dead letters'), err,
      h('table', { class: 'grid' },
        h('caption', { class: 'sr' }, 'Dead letters'),
        h('thead', {}, h('tr', {}, [['Id', 'w-id'], ['Route', 'w-route'], ['Event id', 'w-outcome'], ['Attempts', 'w-num'], ['Age', 'w-num'],
          ['Last error', ''], ['', 'w-actions']].map(([c, w]) => h('th', { scope: 'col', class: w || null }, c)))),
        tbody));
    try {
      const r = await api('GET', '/api/dead-letters');
      const list = r.dead_letters || [];
      if (list.length === 0) tbody.append(h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No dead letters.')));
      for (const l of list) {
        tbody.append(h('tr', { 'data-id': l.id },
          h('td', {}, h('a', { class: 'mono', href: `#/dead-letters/${encodeURIComponent(l.id)}?route=${encodeURIComponent(l.route)}` }, String(l.id).slice(-12))),
          h('td', {}, l.route), h('td', { class: 'mono' }, dash(l.event_id)), h('td', {}, dash(l.attempts)),
          h('td', {}, l.age_secs !== undefined ? `${l.age_secs} s` : '—'),
          h('td', {}, dash(l.last_error)),
          h('td', {}, deadActions(l.id, l.route, err))));
      }
    } catch (e) {
      err.replaceChildren(errorBox(e));
    }
  }
  function deadActions(id, route, out, after) {
    const q = route ? `?route=${encodeURIComponent(route)}` : '';
    const replay = h('button', { type: 'button', class: 'small' }, 'Replay');
    const purge = h('button', { type: 'button', class: 'small danger' }, 'Purge');
    replay.addEventListener('click', async () => {
      try {
        const r = await api('POST', `/api/dead-letters/${encodeURIComponent(id)}/replay${q}`);
        out.replaceChildren(h('p', { class: 'result', role: 'status' }, `Replayed ${r.replayed ?? 1}: back in the queue.`));
        if (after) after(); else deadLettersPage();
      } catch (e) {
        out.replaceChildren(errorBox(e));
      }
    });
    purge.addEventListener('click', async () => {
      if (!window.confirm(`Delete dead letter ${id} for good? It cannot be replayed afterwards.`)) return;
      try {
        const r = await api('DELETE', `/api/dead-letters/${encodeURIComponent(id)}${q}`);
        out.replaceChildren(h('p', { class: 'result', role: 'status' }, `Purged ${r.purged ?? 1}.`));
        if (after) after(); else deadLettersPage();
      } catch (e) {
        out.replaceChildren(errorBox(e));
      }
    });
    return h('span', { class: 'actions' }, replay, purge);
  }
  // A letter's id is unique only within its route: every call names the route.
  async function deadLetterPage(id, route) {
    const err = h('div', {});
    show(h('p', {}, h('a', { href: '#/dead-letters' }, '← Dead letters')), err);
    try {
      const q = route ? `?route=${encodeURIComponent(route)}` : '';
      const l = await api('GET', `/api/dead-letters/${encodeURIComponent(id)}${q}`);
      const rq = l.request || l;
      const headers = Array.isArray(rq.headers)
        ? rq.headers.map((p) => (Array.isArray(p) ? `${p[0]}: ${p[1]}` : `${p.name}: ${p.value}`)).join('\n')
        : Object.entries(rq.headers || {}).map(([k, v]) => `${k}: ${v}`).join('\n');
      const body = typeof rq.body_text === 'string' ? rq.body_text : `(binary, base64)\n${rq.body || ''}`;
      main.append(
        h('div', { class: 'bar' }, h('h1', {}, 'Dead letter ', h('span', { class: 'mono' }, l.id)),
          deadActions(l.id, l.route, err, () => { location.hash = '#/dead-letters'; })),
        h('section', { class: 'card' }, fields([
          ['Route', l.route], ['Event id', l.event_id], ['Attempts', l.attempts],
          ['Age', l.age_secs !== undefined ? `${l.age_secs} s` : undefined], ['Dead since', l.dead_at_ms ? fmtTime(l.dead_at_ms) : undefined],
          ['Last error', l.last_error], ['Request', rq.method ? `${rq.method}${rq.query ? ` ?${rq.query}` : ''}` : undefined],
          ['First seen', l.first_seen_ms ? fmtTime(l.first_seen_ms) : undefined], ['Request id', l.request_id],
        ])),
        h('section', { class: 'card' },
          h('div', { class: 'bar' }, h('h3', {}, 'Headers'), copyButton('Copy headers', headers)),
          h('pre', { class: 'code', tabindex: '0' }, headers),
          h('div', { class: 'bar' }, h('h3', {}, 'Body'), copyButton('Copy body', body)),
          h('pre', { class: 'code', tabindex: '0' }, body)));
    } catch (e) {
      err.replaceChildren(errorBox(e));
    }
  }

  // ---- routes and the chart -----------------------------------------------------------------
  const PALETTE = ['#2f7ed8', '#e4572e', '#29a36a', '#f2a541', '#8e5cc4', '#17becf', '#c44e89', '#7f7f7f', '#b5bd00', '#6b4226'];
  function chart(stats) {
    const series = (stats.series || []).filter((x) => x.counts.some((n) => n > 0));
    if (series.length === 0) return h('p', { class: 'muted', id: 'chart-empty' }, 'No delivery in the last hour.');
    const n = Math.max(...series.map((x) => x.counts.length));
    const W = 1100; const H = 260; const L = 40; const B = 24; const T = 10;
    const totals = Array.from({ length: n }, (_, i) => series.reduce((a, x) => a + (x.counts[i] || 0), 0));
    const max = Math.max(1, ...totals);
    const bw = (W - L - 10) / n;
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': 'Outcomes per minute per route, last hour' });
    for (const f of [0, 0.5, 1]) {
      const v = Math.round(max * f);
      svg.append(s('line', { x1: L, x2: W - 10, y1: y(v), y2: y(v), class: 'gridline' }),
        s('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, String(v)));
    }
    const base = new Array(n).fill(0);
    series.forEach((x, k) => {
      const color = PALETTE[k % PALETTE.length];
      x.counts.forEach((c, i) => {
        if (!c) return;
        const rect = s('rect', { x: L + i * bw + 1, y: y(base[i] + c), width: Math.max(1, bw - 2), height: y(base[i]) - y(base[i] + c), fill: color },
          s('title', {}, `${fmtClock(stats.from_ms + i * stats.bucket_ms)} ${x.route} ${x.outcome}: ${c}`));
        base[i] += c;
        svg.append(rect);
      });
    });
    for (let i = 0; i < n; i += 10) {
      svg.append(s('text', { x: L + i * bw, y: H - 6, class: 'axis' }, fmtClock(stats.from_ms + i * stats.bucket_ms).slice(0, 5)));
    }
    const legend = h('ul', { class: 'legend' }, series.map((x, k) => h('li', {},
      h('span', { class: `swatch c${k % PALETTE.length}` }), `${x.route} · ${x.outcome} (${x.counts.reduce((a, b) => a + b, 0)})`)));
    return h('figure', { class: 'figure' }, svg, h('figcaption', {}, legend,
      stats.truncated ? h('p', { class: 'muted' }, 'Counted from the newest events only (too many to count all).') : null));
  }
  async function routesPage() {
    const err = h('div', {});
    const chartBox = h('div', { id: 'chart' }, h('p', { class: 'muted' }, 'Loading the chart…'));
    const tbody = h('tbody', {});
    show(h('h1', {}, 'Routes'), err,
      h('table', { class: 'grid' },
        h('caption', { class: 'sr' }, 'Routes and their secrets'),
        h('thead', {}, h('tr', {}, [['Route', 'w-route'], ['Provider', 'w-outcome'], ['Upstream', ''], ['Delivery', 'w-num'], ['Secrets (rotation state)', 'w-secrets']]
          .map(([c, w]) => h('th', { scope: 'col', class: w || null }, c)))),
        tbody),
      h('h2', {}, 'Outcomes per minute, last hour'), chartBox);
    try {
      const r = await api('GET', '/api/routes');
      for (const rt of r.routes) {
        const secrets = h('ul', { class: 'secrets' }, (rt.secrets || []).map((sc) => h('li', {},
          h('span', { class: 'mono' }, `#${sc.index}`),
          ` last matched ${sc.last_matched_ms ? fmtTime(sc.last_matched_ms) : 'never'}`,
          sc.expires_at ? h('span', { class: Date.parse(sc.expires_at) < Date.now() ? 'badge bad' : 'badge warn' }, `expires ${sc.expires_at}`) : null)));
        tbody.append(h('tr', { 'data-route': rt.name },
          h('td', {}, h('a', { href: `#/deliveries?route=${encodeURIComponent(rt.name)}` }, rt.name)),
          h('td', {}, rt.provider), h('td', { class: 'mono ellipsis', title: rt.upstream }, rt.upstream),
          h('td', {}, rt.delivery), h('td', {}, secrets)));
      }
    } catch (e) {
      err.replaceChildren(errorBox(e));
    }
    try {
      chartBox.replaceChildren(chart(await api('GET', '/api/stats?minutes=60')));
    } catch (e) {
      chartBox.replaceChildren(errorBox(e));
    }
  }

  // ---- the router ---------------------------------------------------------------------------
  async function route() {
    gen += 1;
    stopPage();
    stopPage = () => {};
    const path = location.hash.replace(/^#/, '').split('?')[0] || '/deliveries';
    if (!session.signed_in && path !== '/signin') {
      await loadSession();
      if (!session.signed_in) {
        location.hash = '#/signin';
        return;
      }
    }
    for (const a of document.querySelectorAll('#nav a')) {
      if (path.startsWith(`/${a.dataset.section}`)) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    let stop;
    if (parts[0] === 'signin') signInPage();
    else if (parts[0] === 'deliveries' && parts[1]) await deliveryPage(parts[1]);
    else if (parts[0] === 'dead-letters' && parts[1]) {
      await deadLetterPage(parts[1], new URLSearchParams(location.hash.split('?')[1] || '').get('route'));
    }
    else if (parts[0] === 'dead-letters') await deadLettersPage();
    else if (parts[0] === 'routes') await routesPage();
    else stop = await deliveriesPage();
    if (typeof stop === 'function') stopPage = stop;
  }
  window.addEventListener('hashchange', route);
  loadSession().then(route);
})();
