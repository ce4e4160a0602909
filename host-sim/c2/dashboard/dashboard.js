// Browser code of the C2 dashboard, served as it is by `e4-c2 serve` (no build step on the
// user's side, hence plain JavaScript): reads the API with the token kept in this tab's
// sessionStorage, and follows the server-sent event stream through fetch (EventSource cannot send
// an Authorization header, and a token in the URL would end up in logs).
/* global document, Node, location, history */
'use strict';

const state = { token: null, lastEventId: null, list: null, plan: null, oldKeys: new Map(), refreshTimer: null };

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

function when(seconds) {
  if (seconds === null || seconds === undefined) return 'never';
  const d = new Date(seconds * 1000);
  const ago = Math.round(Date.now() / 1000 - seconds);
  const span = (s) =>
    s < 90 ? `${s} s` : s < 5400 ? `${Math.round(s / 60)} min` : s < 172800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} days`;
  const rel = ago >= 0 ? `${span(ago)} ago` : `in ${span(-ago)}`;
  return `${d.toISOString().replace('.000Z', 'Z').replace('T', ' ')} (${rel})`;
}

async function api(path) {
  const res = await fetch('/api/' + path, { headers: { authorization: 'Bearer ' + state.token } });
  const body = await res.json();
  if (!res.ok)
    throw Object.assign(new Error(body.error ? body.error.message : 'HTTP ' + res.status), {
      code: body.error && body.error.code,
      status: res.status,
    });
  return body;
}

function setStatus(text, cls) {
  const s = $('#status');
  s.textContent = text;
  s.className = 'status ' + (cls || '');
}

function who(d) {
  return d.name !== null && d.name !== undefined ? d.name : d.id;
}

function renderDevices(list) {
  const body = $('#devices tbody');
  body.replaceChildren();
  $('#device-count').textContent = `(${list.devices.length})`;
  for (const d of list.devices) {
    const topics = el('ul');
    for (const t of d.topics) {
      topics.append(el('li', { 'data-topic': t.topic }, `${t.topic} (${t.role}): ${t.gen} / ${t.ackedGen ?? '-'} / ${t.seenGen ?? '-'}`));
    }
    const pending = el('ul');
    for (const p of d.pending) {
      pending.append(
        el(
          'li',
          { class: p.state === 'queued' ? 'queued' : '' },
          `${p.kind}${p.topic ? ' ' + p.topic : ''}${p.gen !== null ? ' gen ' + p.gen : ''}: ${p.state === 'queued' ? 'queued' : 'at the broker, device seen since: ' + p.seenSince}`,
        ),
      );
    }
    body.append(
      el(
        'tr',
        { 'data-device': who(d) },
        el('td', {}, who(d)),
        el('td', { class: 'mono' }, d.id),
        el('td', { class: 'last-seen' }, when(d.lastSeen)),
        el('td', { class: 'key-gen' }, `${d.keyGen} (${d.ackedKeyGen})`),
        el('td', {}, d.topics.length ? topics : '-'),
        el('td', { class: 'pending', 'data-count': String(d.pending.length) }, d.pending.length ? pending : 'none'),
      ),
    );
  }
}

function renderTopics(list) {
  const body = $('#topics tbody');
  body.replaceChildren();
  $('#topic-count').textContent = `(${list.topics.length})`;
  for (const t of list.topics) {
    const stale = [];
    for (const d of list.devices) {
      const g = d.topics.find((x) => x.topic === t.topic);
      if (g && g.role !== 'sub' && g.seenGen !== null && g.seenGen < t.gen) stale.push(`${who(d)} (gen ${g.seenGen})`);
    }
    const old = state.oldKeys.get(t.topic);
    if (old && old.gen < t.gen && !stale.length) stale.push(`someone (gen ${old.gen}, ${when(old.at / 1000)})`);
    body.append(
      el(
        'tr',
        { 'data-topic': t.topic },
        el('td', {}, t.topic),
        el('td', { class: 'gen' }, String(t.gen)),
        el('td', { class: 'holders' }, t.holders.map((h) => `${who(h)} (${h.role})`).join(', ') || '-'),
        el('td', { class: stale.length ? 'old stale' : 'stale' }, stale.join(', ') || 'nobody seen'),
      ),
    );
  }
}

function renderRules(plan) {
  const body = $('#rules tbody');
  body.replaceChildren();
  if (!plan.next.length) body.append(el('tr', {}, el('td', { colspan: '3' }, 'no rules: keys change only when someone runs a command')));
  for (const p of plan.next) {
    body.append(
      el(
        'tr',
        { 'data-rule': p.rule },
        el('td', {}, p.at === null ? 'on the event' : when(p.at)),
        el('td', { class: 'mono' }, `${p.rule} ${p.kind}`),
        el('td', {}, p.action + (p.targets.length ? ': ' + p.targets.join(', ') : '')),
      ),
    );
  }
}

async function refresh() {
  state.refreshTimer = null;
  try {
    const [list, plan] = await Promise.all([api('list'), api('rules/next')]);
    state.list = list;
    state.plan = plan;
    renderDevices(list);
    renderTopics(list);
    renderRules(plan);
  } catch (e) {
    if (e.status === 401) return logout(e.message);
    setStatus('cannot read the fleet: ' + e.message, 'down');
  }
}

function refreshSoon() {
  if (!state.refreshTimer) state.refreshTimer = setTimeout(refresh, 150);
}

function describe(e) {
  const d = e.detail || {};
  const known = e.device && state.list ? state.list.devices.find((x) => x.id === e.device) : null;
  const dev = d.name || (known && known.name) || e.device;
  const parts = [e.kind];
  if (dev) parts.push(dev);
  if (e.topic) parts.push(e.topic);
  if (d.kind && (e.kind.startsWith('command-') || e.kind.startsWith('rule-'))) parts.push(d.kind);
  if (d.gen !== undefined) parts.push('gen ' + d.gen);
  if (d.current === false) parts.push('(old key)');
  if (d.action) parts.push(d.action);
  if (d.error) parts.push('error: ' + d.error);
  return parts.join(' · ');
}

function addToFeed(e) {
  const feed = $('#feed');
  const li = el('li', { class: 'fresh', 'data-kind': e.kind }, `${new Date(e.at).toISOString().slice(11, 19)}  ${describe(e)}`);
  feed.prepend(li);
  setTimeout(() => li.classList.remove('fresh'), 3000);
  while (feed.children.length > 300) feed.lastChild.remove();
  if (e.kind === 'key-seen' && e.topic) {
    const was = state.oldKeys.get(e.topic);
    if (e.detail.current === false) state.oldKeys.set(e.topic, { gen: e.detail.gen, at: e.at });
    else if (was && was.gen <= e.detail.gen) state.oldKeys.delete(e.topic);
  }
  if (e.kind !== 'command-sent') refreshSoon();
}

/** Reads the text/event-stream from a fetch body: frames separated by a blank line. */
async function follow() {
  for (;;) {
    try {
      const headers = { authorization: 'Bearer ' + state.token };
      if (state.lastEventId) headers['last-event-id'] = state.lastEventId;
      const res = await fetch('/api/events' + (state.lastEventId ? '' : '?replay=50'), { headers });
      if (res.status === 401) return logout('the token was refused');
      if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
      setStatus('live', 'live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const data = frame
            .split('\n')
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('\n');
          if (!data) continue;
          const event = JSON.parse(data);
          if (event.id) {
            state.lastEventId = event.id;
            addToFeed(event);
          }
        }
      }
    } catch (e) {
      setStatus('event stream lost (' + e.message + '); reconnecting', 'down');
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function logout(message) {
  sessionStorage.removeItem('e4-c2-token');
  state.token = null;
  $('#fleet').hidden = true;
  $('#login').hidden = false;
  $('#login-error').textContent = message || '';
  setStatus('signed out');
}

async function start(token) {
  state.token = token;
  try {
    await api('list');
  } catch (e) {
    return logout(e.message);
  }
  sessionStorage.setItem('e4-c2-token', token);
  $('#login').hidden = true;
  $('#fleet').hidden = false;
  await refresh();
  setInterval(refresh, 10000); // last seen / next run move on without events too
  follow();
}

document.addEventListener('DOMContentLoaded', () => {
  // A token handed over in the fragment (never sent to the server) is moved to this tab's storage.
  const m = /^#token=([A-Za-z0-9_-]+)$/.exec(location.hash);
  if (m) {
    sessionStorage.setItem('e4-c2-token', m[1]);
    history.replaceState(null, '', location.pathname);
  }
  $('#login').addEventListener('submit', (ev) => {
    ev.preventDefault();
    start($('#token').value.trim());
  });
  const saved = sessionStorage.getItem('e4-c2-token');
  if (saved) start(saved);
  else logout();
});
