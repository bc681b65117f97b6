// Releases per channel with their counters, the auto-halt reason, an adoption chart,
// and (for release managers) the rollout actions, each behind a confirmation.

import { enc, get, post, query } from '../api.js';
import { barOption, chart, lineOption } from '../charts.js';
import { confirmChange } from '../confirm.js';
import { clear, field, h, message, section, table } from '../dom.js';
import { day, num, pct, t } from '../i18n.js';

const MANAGERS = ['admin', 'release-manager'];
const ANALYSTS = ['admin', 'analyst'];

function names(r) {
  return { id: r.id, pkg: r.package_id, v: r.version, ch: r.channel, pct: pct(r.rollout / 100) };
}

function actionsFor(r, run) {
  const base = `/api/v1/apps/${enc(r.app)}/releases/${r.id}`;
  const buttons = [];
  const add = (label, handler) => buttons.push(h('button', { type: 'button', class: 'small', onclick: handler,
    'aria-label': `${label} #${r.id} ${r.package_id} ${r.version} (${r.channel})` }, label));
  if (r.status === 'active') {
    add(t('pause'), () => run(t('confirmPause', names(r)), () => post(`${base}/pause`)));
  }
  if (r.status === 'paused' || r.status === 'halted') {
    add(t('resume'), () => run(t('confirmResume', names(r)), () => post(`${base}/resume`)));
  }
  if (r.status !== 'rolled_back') {
    add(t('setRollout'), async () => {
      const input = h('input', { name: 'rollout', type: 'number', min: 0, max: 100, step: 'any', value: r.rollout, required: true });
      const answer = await confirmChange(t('setRollout'), [field(t('newPct'), input)]);
      if (!answer) return;
      const to = Number(answer.rollout);
      const text = t('confirmRollout', { ...names(r), from: pct(r.rollout / 100), to: pct(to / 100) });
      await run(text, () => post(`${base}/rollout`, { rollout: to }));
    });
    add(t('promote'), async () => {
      const input = h('input', { name: 'channel', value: 'production', required: true, pattern: '[a-z0-9][a-z0-9-]{0,62}' });
      const answer = await confirmChange(t('promote'), [field(t('targetChannel'), input)]);
      if (!answer) return;
      await run(t('confirmPromote', { ...names(r), to: answer.channel }), () => post(`${base}/promote`, { channel: answer.channel }));
    });
    add(t('rollback'), () => run(t('confirmRollback', names(r)),
      () => post(`/api/v1/apps/${enc(r.app)}/channels/${enc(r.channel)}/rollback`, { id: r.package_id, kind: r.kind })));
  }
  return h('td', { class: 'actions' }, buttons);
}

function stateCell(r) {
  const label = h('span', { class: `badge ${r.status}` }, t(`status_${r.status}`));
  const reason = r.status === 'halted' && r.status_reason ? h('div', { class: 'reason' }, t('autoHalted', { r: r.status_reason }))
    : r.status_reason ? h('div', { class: 'reason' }, r.status_reason) : null;
  return h('td', {}, label, reason);
}

function channelTable(channel, rows, manage, run) {
  const headers = ['#', t('package'), t('version'), t('rollout'), t('state'), t('downloads'), t('installs'), t('failures'), t('failureRate')];
  if (manage) headers.push(t('actions'));
  return table(`${t('channel')}: ${channel}`, headers, rows.map((r) => h('tr', { dataset: { release: r.id } },
    h('td', {}, String(r.id)), h('td', {}, `${r.kind} ${r.package_id}`), h('td', {}, r.version),
    h('td', {}, pct(r.rollout / 100)), stateCell(r), h('td', {}, num(r.counters.downloads)),
    h('td', {}, num(r.counters.installs)), h('td', {}, num(r.counters.failures)),
    h('td', {}, r.failure_rate === null ? '—' : pct(r.failure_rate, 2)),
    manage ? actionsFor(r, run) : null)));
}

function countersChart(items) {
  const labels = items.map((r) => `#${r.id} ${r.package_id} ${r.version}`);
  const series = [['downloads', t('downloads')], ['installs', t('installs')], ['failures', t('failures')]]
    .map(([key, name]) => ({ name, data: items.map((r) => r.counters[key]) }));
  return chart(`${t('installs')} / ${t('failures')}`, barOption(labels, series),
    ['#', ...series.map((s) => s.name)], labels.map((l, i) => [l, ...series.map((s) => num(s.data[i]))]));
}

async function adoptionChart(app, packageId) {
  const data = await get(`/api/v1/analytics/reports/adoption${query({ app, package_id: packageId, last_days: 30 })}`);
  const days = data.result.days;
  const versions = [...new Set(days.flatMap((d) => d.versions.map((v) => v.version)))].sort();
  const series = versions.map((v) => ({ name: v, data: days.map((d) => (d.versions.find((x) => x.version === v) || { share: 0 }).share) }));
  return chart(t('adoption', { p: packageId }), lineOption(days.map((d) => day(d.day)), series, { stack: 'share', percent: true, max: 1 }),
    [t('day'), ...versions], days.map((d, i) => [d.day, ...series.map((s) => pct(s.data[i]))]));
}

export async function renderReleases(ctx) {
  const { app, can, main } = ctx;
  const status = h('div', { 'aria-live': 'polite', class: 'status' });
  const body = h('div');
  main.append(status, body);
  const manage = can(MANAGERS);
  const run = async (text, action) => {
    if (!(await confirmChange(text))) return;
    try {
      await action();
      status.replaceChildren(message('ok', t('done', { m: text })));
    } catch (err) {
      status.replaceChildren(message('error', t('error', { m: err.message })));
    }
    await load();
  };
  async function load() {
    const data = await get(`/api/v1/apps/${enc(app)}/releases${query({ limit: 200 })}`);
    const channels = new Map();
    for (const r of data.items) channels.set(r.channel, [...(channels.get(r.channel) || []), r]);
    const parts = [...channels].map(([channel, rows]) => section(`${t('channel')}: ${channel}`, channelTable(channel, rows, manage, run)));
    if (data.items.length) parts.push(section(t('installs'), countersChart(data.items.slice(0, 12))));
    if (can(ANALYSTS) || manage) { // the adoption report is open to release managers too
      for (const packageId of [...new Set(data.items.filter((r) => r.kind === 'offline').map((r) => r.package_id))].slice(0, 3)) {
        parts.push(section(t('adoption', { p: packageId }), await adoptionChart(app, packageId).catch((err) => message('error', t('error', { m: err.message })))));
      }
    }
    clear(body, parts.length ? parts : message('info', t('noData')));
  }
  await load();
}
