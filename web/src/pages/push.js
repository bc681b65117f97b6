// Push: a form to send a message to devices, users, tags or everyone, the app's
// messages, and each message's delivery funnel by provider.

import { enc, get, post, query } from '../api.js';
import { barOption, chart, funnelOption } from '../charts.js';
import { clear, field, h, message, section, select, table } from '../dom.js';
import { num, pct, t, when } from '../i18n.js';

const STAGES = ['queued', 'sent', 'delivered', 'arrived', 'opened'];

/** queued: deliveries made; sent: tried (not pending); delivered: accepted by the provider. */
function stages(s) {
  return [s.targeted, s.targeted - s.pending, s.sent, s.arrived, s.opened];
}

function funnel(msg) {
  const stats = msg.stats;
  const providers = Object.entries(stats.providers || {});
  const labels = STAGES.map((k) => t(k));
  const total = stages(stats);
  return h('div', { class: 'funnel', dataset: { message: msg.id } },
    chart(t('funnelOf', { id: msg.id }), funnelOption(labels.map((l, i) => [l, total[i]])),
      [t('provider'), ...labels, t('arrived') + ' %'],
      [...providers.map(([name, s]) => [name, ...stages(s).map((n) => num(n)), pct(s.arrival_rate)]),
        [t('total'), ...total.map((n) => num(n)), pct(stats.arrival_rate)]]),
    providers.length ? chart(`${t('provider')}: ${t('funnelOf', { id: msg.id })}`,
      barOption(labels, providers.map(([name, s]) => ({ name, data: stages(s) }))),
      [t('provider'), ...labels], providers.map(([name, s]) => [name, ...stages(s).map((n) => num(n))])) : null);
}

function sendForm(app, onSent) {
  const kind = select('audience', [['all', t('everyone')], ['devices', t('byDevices')], ['users', t('byUsers')], ['tags', t('byTags')]], 'all');
  const values = h('input', { name: 'values', maxLength: 4000, disabled: true });
  const title = h('input', { name: 'title', maxLength: 256 });
  const body = h('textarea', { name: 'body', maxLength: 2048, rows: 3 });
  const status = h('div', { 'aria-live': 'polite' });
  kind.addEventListener('change', () => { values.disabled = kind.value === 'all'; values.required = kind.value !== 'all'; });
  const form = h('form', { class: 'send' }, field(t('audience'), kind), field(t('audienceValues'), values),
    field(t('msgTitle'), title), field(t('msgBody'), body), h('button', { type: 'submit' }, t('send')), status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const list = values.value.split(',').map((v) => v.trim()).filter(Boolean);
    const audience = kind.value === 'all' ? { all: true } : { [kind.value]: list };
    const payload = { audience };
    if (title.value.trim()) payload.title = title.value.trim();
    if (body.value.trim()) payload.body = body.value.trim();
    try {
      const msg = await post(`/api/v1/apps/${enc(app)}/push/messages`, payload);
      status.replaceChildren(message('ok', t('done', { m: `${t('message')} #${msg.id}` })));
      form.reset();
      values.disabled = true;
      await onSent(msg.id);
    } catch (err) {
      status.replaceChildren(message('error', t('error', { m: err.message })));
    }
  });
  return form;
}

export async function renderPush({ app, main }) {
  const list = h('div');
  const detail = h('div', { 'aria-live': 'polite' });
  async function show(id) {
    const msg = await get(`/api/v1/apps/${enc(app)}/push/messages/${id}`);
    clear(detail, section(t('funnelOf', { id }), funnel(msg)));
  }
  async function load() {
    const data = await get(`/api/v1/apps/${enc(app)}/push/messages${query({ limit: 20 })}`);
    clear(list, table(t('messages'), ['#', t('msgTitle'), t('audience'), t('created'), ''],
      data.items.map((m) => [String(m.id), m.title || m.body || '—', Object.keys(m.audience || {}).join(', ') || '—', when(m.created_at),
        h('button', { type: 'button', class: 'small', onclick: () => show(m.id), 'aria-label': `${t('show')} #${m.id}` }, t('show'))]),
      { empty: t('noData') }));
    return data.items;
  }
  main.append(section(t('sendPush'), sendForm(app, async (id) => { await load(); await show(id); })), section(t('messages'), list), detail);
  const items = await load();
  if (items.length) await show(items[0].id);
}
