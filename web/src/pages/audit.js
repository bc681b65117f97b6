// The audit log, newest first, filtered by app and action, a page at a time.

import { get, query } from '../api.js';
import { clear, field, h, table } from '../dom.js';
import { num, t, when } from '../i18n.js';

const LIMIT = 50;

export async function renderAudit({ app, main }) {
  const appInput = h('input', { name: 'app', value: app, maxLength: 63 });
  const actionInput = h('input', { name: 'action', placeholder: 'release.pause', maxLength: 80 });
  const form = h('form', { class: 'filters' }, field(t('app'), appInput), field(t('action'), actionInput),
    h('button', { type: 'submit' }, t('apply')));
  const out = h('div', { 'aria-live': 'polite' });
  main.append(form, out);
  let offset = 0;
  async function load() {
    const data = await get(`/api/v1/audit${query({ app: appInput.value.trim(), action: actionInput.value.trim(), limit: LIMIT, offset })}`);
    const rows = data.items.map((e) => [when(e.at), e.actor, e.action, e.app || '—', e.target || '—',
      h('code', {}, JSON.stringify(e.detail || {}))]);
    const prev = h('button', { type: 'button', class: 'secondary', disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - LIMIT); load(); } }, t('previous'));
    const next = h('button', { type: 'button', class: 'secondary', disabled: data.next_offset === null, onclick: () => { offset = data.next_offset; load(); } }, t('next'));
    clear(out, table(t('audit'), [t('at'), t('actor'), t('action'), t('app'), t('target'), t('detail')], rows, { empty: t('noData') }),
      h('div', { class: 'pager' }, prev, h('span', {}, t('pageOf', { a: num(data.total ? offset + 1 : 0), b: num(offset + data.items.length), n: num(data.total) })), next));
  }
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    offset = 0;
    load();
  });
  await load();
}
