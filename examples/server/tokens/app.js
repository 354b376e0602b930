// The tokens page of the example server: plain JavaScript, no build step.
//
// Every value from the server or the user is rendered with textContent
// (never innerHTML), so a token named `<img src=x onerror=alert(1)>` shows
// as text. The session lives in this closure only (not in storage): a
// reload asks for the account again.
'use strict';

(function () {
  let session = null;

  const $ = (id) => document.getElementById(id);

  // An element with text content and attributes; children appended.
  function el(tag, text, attrs, children) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  function status(message, isError) {
    const node = $('status');
    node.textContent = message || '';
    node.classList.toggle('error', Boolean(isError));
  }

  // RFC 3339 → "YYYY-MM-DD HH:MM:SS UTC"; null → fallback.
  function when(value, fallback) {
    if (!value) return fallback;
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    return date.toISOString().slice(0, 19).replace('T', ' ') + ' UTC';
  }

  class ApiError extends Error {
    constructor(status, body) {
      const message = body && typeof body.message === 'string' ? body.message : 'HTTP ' + status;
      super(message);
      this.status = status;
      this.code = body && body.error;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: 'Bearer ' + session };
    const init = { method, headers, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch('/api/tokens' + path, init);
    let data = null;
    try {
      data = await res.json();
    } catch (_) {
      data = null;
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }

  // Shows an API failure; a session that ended sends the user to log in.
  function failed(err) {
    if (err instanceof ApiError && err.status === 401) {
      logout();
      status('Your session has ended: log in again.', true);
      return;
    }
    status(err.message || String(err), true);
  }

  function logout() {
    session = null;
    hideSecret();
    $('app').hidden = true;
    $('whoami').hidden = true;
    $('login-section').hidden = false;
  }

  async function login(event) {
    event.preventDefault();
    const account = $('account').value.trim();
    if (!account) return;
    status('Logging in…');
    let res;
    try {
      res = await fetch('/api/login', {
        method: 'POST',
        headers: { 'X-Account': account },
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (err) {
      status('The server did not answer: ' + err.message, true);
      return;
    }
    const data = await res.json().catch(() => null);
    if (!res.ok || !data || typeof data.session !== 'string') {
      status((data && data.message) || 'Login failed (HTTP ' + res.status + ')', true);
      return;
    }
    session = data.session;
    $('whoami').textContent = 'Signed in as ' + data.account + ' · ' + data.tenant;
    $('whoami').hidden = false;
    $('login-section').hidden = true;
    $('app').hidden = false;
    status('');
    try {
      await loadGrid();
      await loadTokens();
    } catch (err) {
      failed(err);
    }
  }

  async function loadGrid() {
    const grid = await api('GET', '/grid');
    const defaults = new Set(grid.default_scopes || []);
    const rows = $('grid').tBodies[0];
    const boxes = $('create-scopes');
    rows.replaceChildren();
    boxes.replaceChildren();
    for (const scope of grid.scopes) {
      const soon = scope.status === 'soon';
      const badge = el('span', soon ? 'Soon' : 'Enforced', {
        class: soon ? 'badge-soon' : 'badge-enforced',
      });
      rows.appendChild(
        el('tr', null, { 'data-scope': scope.name }, [
          el('td', null, {}, [el('code', scope.name)]),
          el('td', scope.description),
          el('td', null, {}, [badge]),
        ]),
      );
      const box = el('input', null, { type: 'checkbox', name: 'scope', value: scope.name });
      box.checked = defaults.has(scope.name);
      boxes.appendChild(el('label', null, {}, [box, document.createTextNode(' ' + scope.name + (soon ? ' (soon)' : ''))]));
    }
  }

  async function loadTokens() {
    const keys = [];
    let cursor = null;
    for (let page = 0; page < 20; page++) {
      const query = '?limit=100' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : '');
      const data = await api('GET', query);
      keys.push(...data.keys);
      cursor = data.next_cursor;
      if (!cursor) break;
    }
    const rows = $('tokens').tBodies[0];
    rows.replaceChildren(...keys.map(row));
  }

  function row(key) {
    const scopes = key.scopes && key.scopes.length ? key.scopes.join(', ') : '(none)';
    const tr = el('tr', null, { 'data-id': key.id }, [
      el('td', key.name, { class: 'name' }),
      el('td', null, { class: 'prefix' }, [el('code', key.display_prefix)]),
      el('td', scopes, { class: 'scopes' }),
      el('td', when(key.created_at, ''), { class: 'created' }),
      el('td', when(key.expires_at, 'Never'), { class: 'expires' }),
      el('td', when(key.last_used_at, 'Never'), { class: 'last-used' }),
      el('td', key.state, { class: 'state' }),
    ]);
    const actions = el('td');
    if (key.state === 'active') {
      const button = el('button', 'Revoke', { type: 'button', class: 'revoke' });
      button.addEventListener('click', () => revoke(key));
      actions.appendChild(button);
    } else {
      tr.classList.add('inactive');
    }
    tr.appendChild(actions);
    return tr;
  }

  async function revoke(key) {
    const ok = window.confirm(
      'Revoke the token "' + key.name + '" (' + key.display_prefix + '…)? ' +
        'Anything using it stops working at once.',
    );
    if (!ok) return;
    try {
      await api('POST', '/' + encodeURIComponent(key.id) + '/revoke', {});
      status('Revoked "' + key.name + '".');
      await loadTokens();
    } catch (err) {
      failed(err);
    }
  }

  async function create(event) {
    event.preventDefault();
    hideSecret();
    const name = $('create-name').value;
    const scopes = Array.from(
      document.querySelectorAll('#create-scopes input[name=scope]:checked'),
      (box) => box.value,
    );
    try {
      const created = await api('POST', '', {
        name,
        scopes,
        expires_in: $('create-expiry').value,
      });
      $('secret').textContent = created.token;
      $('secret-box').hidden = false;
      $('create-name').value = '';
      status('Created "' + created.key.name + '".');
      await loadTokens();
    } catch (err) {
      failed(err);
    }
  }

  function hideSecret() {
    $('secret').textContent = '';
    $('copy-status').textContent = '';
    $('secret-box').hidden = true;
  }

  async function copy() {
    const token = $('secret').textContent;
    try {
      await navigator.clipboard.writeText(token);
      $('copy-status').textContent = 'Copied';
    } catch (_) {
      // No clipboard permission: select the token for a manual copy.
      const range = document.createRange();
      range.selectNodeContents($('secret'));
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      $('copy-status').textContent = 'Selected: press Ctrl+C to copy';
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', login);
    $('create-form').addEventListener('submit', create);
    $('refresh').addEventListener('click', () => loadTokens().then(() => status('')).catch(failed));
    $('copy').addEventListener('click', copy);
    $('secret-done').addEventListener('click', hideSecret);
  });
})();
