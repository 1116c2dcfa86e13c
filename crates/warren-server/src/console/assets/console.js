// The Warren debug console: no framework, no build step, no requests anywhere but this server.
// Requests are signed in the page like the REST API (HMAC-SHA256 with WebCrypto: the secret
// never leaves the browser) or carry the operator token.
'use strict';

const $ = (id) => document.getElementById(id);
const MAX_ROWS = 500;
let session = null; // { app, key, secret, token, abort }
let channelsTimer = null;

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
}

async function hmac(secret, text) {
  const enc = new TextEncoder();
  const key = await crypto.subtle.importKey('raw', enc.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return hex(await crypto.subtle.sign('HMAC', key, enc.encode(text)));
}

// The URL and headers of a request to `path` with `params`, signed or with the token.
async function request(method, path, params) {
  const all = Object.entries(params).filter(([, v]) => v !== undefined && v !== '');
  const headers = {};
  if (session.token) {
    headers.Authorization = 'Bearer ' + session.token;
  } else {
    if (!crypto.subtle) throw new Error('WebCrypto is unavailable here (use HTTPS or the operator token)');
    all.push(['auth_key', session.key], ['auth_timestamp', String(Math.floor(Date.now() / 1000))], ['auth_version', '1.0']);
    const canonical = all
      .map(([k, v]) => [k.toLowerCase(), v])
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .map(([k, v]) => k + '=' + v)
      .join('&');
    all.push(['auth_signature', await hmac(session.secret, method + '\n' + path + '\n' + canonical)]);
  }
  const query = all.map(([k, v]) => encodeURIComponent(k) + '=' + encodeURIComponent(v)).join('&');
  return { url: path + (query ? '?' + query : ''), init: { method, headers } };
}

async function call(method, path, params) {
  const { url, init } = await request(method, path, params);
  const response = await fetch(url, init);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.status + ' ' + response.statusText);
  return body;
}

function setStatus(text, kind) {
  const s = $('status');
  s.textContent = text;
  s.className = 'status ' + kind;
}

function cell(row, text) {
  const td = document.createElement('td');
  td.textContent = text == null ? '' : String(text);
  row.appendChild(td);
}

function time(ms) {
  const d = new Date(ms);
  return d.toTimeString().slice(0, 8) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

function details(e) {
  switch (e.type) {
    case 'api_publish': return e.event + ' ' + e.data;
    case 'client_event': return e.event + ' ' + e.data + ' (from ' + e.socket_id + (e.user_id ? ', user ' + e.user_id : '') + ')';
    case 'connection_opened': return e.socket_id + (e.remote ? ' from ' + e.remote : '');
    case 'connection_closed': return e.socket_id + ' ' + e.reason + (e.code ? ' ' + e.code : '') + traffic(e.traffic);
    case 'traffic': return e.socket_id + traffic(e.traffic);
    case 'subscribed': case 'unsubscribed': return e.socket_id;
    case 'member_added': case 'member_removed': return 'user ' + e.user_id;
    case 'webhook_sent': return e.url + ' ' + (e.events || []).join(',') + ' ' + (e.status || e.error || '');
    default: return JSON.stringify(e);
  }
}

function traffic(t) {
  return t ? ` (in ${t.messages_in} msgs/${t.bytes_in} B, out ${t.messages_out} msgs/${t.bytes_out} B)` : '';
}

function logEvent(e) {
  const body = $('log').tBodies[0];
  const row = document.createElement('tr');
  row.dataset.type = e.type;
  if (e.type === 'dropped') {
    row.className = 'dropped';
    cell(row, time(Date.now())); cell(row, ''); cell(row, 'dropped');
    cell(row, ''); cell(row, e.count + ' events dropped: the page reads too slowly');
  } else {
    cell(row, time(e.at_ms)); cell(row, e.node); cell(row, e.type);
    cell(row, e.channel); cell(row, details(e));
  }
  body.insertBefore(row, body.firstChild);
  while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
  if (['subscribed', 'unsubscribed', 'member_added', 'member_removed'].includes(e.type)) refreshChannels();
}

async function stream(abort) {
  const { url, init } = await request('GET', '/monitor', {
    app_id: session.app,
    channel_prefix: $('filter-channel').value.trim(),
    event: $('filter-event').value.trim(),
  });
  const response = await fetch(url, { ...init, signal: abort.signal });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error || String(response.status));
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error('the server closed the stream');
    pending += decoder.decode(value, { stream: true });
    let end;
    while ((end = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, end).trimEnd();
      pending = pending.slice(end + 1);
      if (!line.startsWith('data: ')) continue;
      const e = JSON.parse(line.slice(6));
      if (e.type === 'attached') setStatus('live: ' + (session.app || 'every app'), 'on');
      else logEvent(e);
    }
  }
}

async function refreshChannels() {
  if (!session || !session.app) return;
  try {
    const answer = await call('GET', '/console/api/channels', { app_id: session.app });
    $('connections').textContent = answer.connections_here + ' connections on this node';
    const body = $('channels').tBodies[0];
    body.replaceChildren();
    for (const c of answer.channels) {
      const row = document.createElement('tr');
      row.dataset.channel = c.name;
      cell(row, c.name); cell(row, c.subscription_count); cell(row, c.user_count ?? '');
      if (c.name.startsWith('presence-')) {
        row.className = 'presence';
        row.addEventListener('click', () => showMembers(c.name));
      }
      body.appendChild(row);
    }
  } catch (e) {
    $('connections').textContent = e.message;
  }
}

async function showMembers(channel) {
  $('members-of').textContent = channel;
  const list = $('members');
  list.replaceChildren();
  try {
    const answer = await call('GET', '/console/api/members', { app_id: session.app, channel });
    for (const u of answer.users) {
      const li = document.createElement('li');
      li.textContent = u.id + (u.user_info ? ' ' + JSON.stringify(u.user_info) : '');
      list.appendChild(li);
    }
  } catch (e) {
    list.textContent = e.message;
  }
}

function connect(event) {
  event.preventDefault();
  if (session) session.abort.abort();
  clearInterval(channelsTimer);
  session = {
    app: $('app-id').value.trim(),
    key: $('key').value.trim(),
    secret: $('secret').value,
    token: $('token').value.trim(),
    abort: new AbortController(),
  };
  if (!session.token && !(session.app && session.key && session.secret)) {
    setStatus('give the app id, key and secret, or the operator token', 'error');
    return;
  }
  setStatus('connecting', 'off');
  const current = session;
  stream(current.abort).catch((e) => {
    if (!current.abort.signal.aborted) setStatus('stopped: ' + e.message, 'error');
  });
  refreshChannels();
  channelsTimer = setInterval(refreshChannels, 5000);
}

async function trigger(event) {
  event.preventDefault();
  const result = $('trigger-result');
  if (!session || !session.app) {
    result.textContent = 'connect to an app first';
    return;
  }
  try {
    await call('POST', '/console/api/trigger', {
      app_id: session.app,
      channel: $('trigger-channel').value.trim(),
      event: $('trigger-event').value.trim(),
      data: $('trigger-data').value,
    });
    result.textContent = 'sent';
  } catch (e) {
    result.textContent = 'refused: ' + e.message;
  }
}

$('connect-form').addEventListener('submit', connect);
$('trigger-form').addEventListener('submit', trigger);
$('clear-log').addEventListener('click', () => $('log').tBodies[0].replaceChildren());
