// Overview of one app: active users today, crash-free users, the releases rolling out
// now and recent pushes. Each part asks only what the role may read.

import { enc, get, query } from '../api.js';
import { chart, lineOption } from '../charts.js';
import { h, message, section, table } from '../dom.js';
import { day, num, pct, t, when } from '../i18n.js';

const ANALYSTS = ['admin', 'analyst'];
const RELEASE_READERS = ['admin', 'release-manager', 'analyst'];
const PUSHERS = ['admin', 'push-operator'];

function tile(label, value) {
  return h('div', { class: 'tile' }, h('span', { class: 'tile-label' }, label), h('strong', { class: 'tile-value' }, value));
}

async function analyticsPart(app) {
  const [active, stability] = await Promise.all([
    get(`/api/v1/analytics/reports/active-users${query({ app, last_days: 14 })}`),
    get(`/api/v1/analytics/reports/stability${query({ app, last_days: 7 })}`),
  ]);
  const days = active.result.days;
  const today = days.length ? days[days.length - 1].dau : 0;
  const crashFree = stability.result.total ? stability.result.total.crash_free_users : null;
  return [
    h('div', { class: 'tiles' }, tile(t('activeToday'), num(today)), tile(t('crashFree'), crashFree === null ? '—' : pct(crashFree, 2))),
    chart(t('dauTrend'), lineOption(days.map((d) => day(d.day)), [{ name: 'DAU', data: days.map((d) => d.dau) }]),
      [t('day'), 'DAU', 'WAU', 'MAU'], days.map((d) => [d.day, num(d.dau), num(d.wau), num(d.mau)])),
  ];
}

async function releasesPart(app) {
  const data = await get(`/api/v1/apps/${enc(app)}/releases${query({ status: 'active', limit: 50 })}`);
  const rolling = data.items.filter((r) => r.rollout < 100 || r.status !== 'active');
  const rows = (rolling.length ? rolling : data.items).map((r) => [r.channel, `${r.package_id} ${r.version}`,
    pct(r.rollout / 100), t(`status_${r.status}`), num(r.counters.installs), num(r.counters.failures)]);
  return table(t('rollingOut'), [t('channel'), t('package'), t('rollout'), t('state'), t('installs'), t('failures')], rows, { empty: t('noData') });
}

async function pushPart(app) {
  const data = await get(`/api/v1/apps/${enc(app)}/push/messages${query({ limit: 5 })}`);
  return table(t('recentPushes'), ['#', t('msgTitle'), t('created')],
    data.items.map((m) => [String(m.id), m.title || m.body || '—', when(m.created_at)]), { empty: t('noData') });
}

export async function renderOverview({ app, can, main }) {
  const parts = [];
  if (can(ANALYSTS)) parts.push([t('analytics'), analyticsPart(app)]);
  if (can(RELEASE_READERS)) parts.push([t('rollingOut'), releasesPart(app)]);
  if (can(PUSHERS)) parts.push([t('recentPushes'), pushPart(app)]);
  const settled = await Promise.allSettled(parts.map(([, p]) => p));
  settled.forEach((result, i) => {
    const body = result.status === 'fulfilled' ? result.value : message('error', t('error', { m: result.reason.message }));
    main.append(section(parts[i][0], body));
  });
}
