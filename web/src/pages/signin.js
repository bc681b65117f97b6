// Sign-in: user name and password; a refusal says so, a lock-out says how long to wait.

import { ApiError, call } from '../api.js';
import { field, h, message } from '../dom.js';
import { t } from '../i18n.js';

export function renderSignIn(main, onSignedIn) {
  const username = h('input', { name: 'username', autocomplete: 'username', required: true, maxLength: 64 });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true, maxLength: 256 });
  const status = h('div', { 'aria-live': 'polite' });
  const button = h('button', { type: 'submit' }, t('signIn'));
  const form = h('form', { class: 'card sign-in', novalidate: false },
    h('h1', {}, t('signIn')), field(t('username'), username), field(t('password'), password), button, status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    button.disabled = true;
    status.replaceChildren();
    try {
      const session = await call('POST', '/console/api/session', { username: username.value, password: password.value });
      await onSignedIn(session);
    } catch (err) {
      const locked = err instanceof ApiError && err.status === 429;
      const text = locked ? t('locked', { s: err.retryAfter || '?' })
        : err instanceof ApiError && err.status === 401 ? t('signInFailed') : t('error', { m: err.message });
      status.replaceChildren(message('error', text));
      password.value = '';
      password.focus();
    } finally {
      button.disabled = false;
    }
  });
  main.append(form);
  username.focus();
}
