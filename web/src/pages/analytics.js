// Analytics: reports with a date range, breakdown and filters; the saved core journeys;
// retention as a coloured cohort table; and the experience (UX) pages.

import { enc, get, post, query } from '../api.js';
import { barOption, chart, funnelOption, lineOption } from '../charts.js';
import { clear, field, h, message, section, select, table } from '../dom.js';
import { day, num, pct, t } from '../i18n.js';
import { renderRetention, renderUx } from './analytics_ux.js';

const VIEWS = [['reports', 'reports'], ['journeys', 'journeys'], ['retention', 'retention'], ['ux', 'ux']];
const KINDS = ['events', 'active-users', 'new-returning', 'stickiness'];
const FIELDS = ['', 'os', 'platform', 'app_version', 'device_model', 'channel', 'source', 'os_version'];
const MAX_SERIES = 8;

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function eventsChart(result) {
  const series = result.series.map((s) => ({ name: s.breakdown ? `${s.event} · ${s.breakdown}` : s.event, points: s.points }))
    .sort((a, b) => b.points.reduce((n, p) => n + p.events, 0) - a.points.reduce((n, p) => n + p.events, 0)).slice(0, MAX_SERIES);
  const buckets = [...new Set(series.flatMap((s) => s.points.map((p) => p.bucket)))].sort();
  const data = series.map((s) => ({ name: s.name, data: buckets.map((b) => (s.points.find((p) => p.bucket === b) || { events: 0 }).events) }));
  return chart(t('events'), lineOption(buckets.map((b) => day(b)), data), [t('day'), ...data.map((s) => s.name)],
    buckets.map((b, i) => [b.slice(0, 10), ...data.map((s) => num(s.data[i]))]), { tall: true });
}

function reportChart(kind, result) {
  if (kind === 'events') return eventsChart(result);
  if (kind === 'active-users') {
    const d = result.days;
    const series = ['dau', 'wau', 'mau'].map((k) => ({ name: k.toUpperCase(), data: d.map((x) => x[k]) }));
    return chart(t('users'), lineOption(d.map((x) => day(x.day)), series), [t('day'), 'DAU', 'WAU', 'MAU', 'DAU/MAU'],
      d.map((x) => [x.day, num(x.dau), num(x.wau), num(x.mau), pct(x.stickiness)]));
  }
  if (kind === 'new-returning') {
    const d = result.days;
    return chart(t('users'), barOption(d.map((x) => day(x.day)), [{ name: 'new', data: d.map((x) => x.new) }, { name: 'returning', data: d.map((x) => x.returning) }]),
      [t('day'), 'new', 'returning'], d.map((x) => [x.day, num(x.new), num(x.returning)]));
  }
  const counts = result.persons_by_days_active;
  const labels = counts.map((_, i) => String(i + 1));
  return chart(t('users'), barOption(labels, [{ name: t('users'), data: counts }]), [t('day'), t('users')], labels.map((l, i) => [l, num(counts[i])]));
}

function reportsView(app, out) {
  const today = new Date();
  const kind = select('kind', KINDS.map((k) => [k, k]), 'active-users');
  const from = h('input', { name: 'from', type: 'date', value: isoDay(new Date(today.getTime() - 13 * 86400000)), required: true });
  const to = h('input', { name: 'to', type: 'date', value: isoDay(today), required: true });
  const breakdown = select('breakdown', FIELDS.map((f) => [f, f || t('none')]), '');
  const filter = h('input', { name: 'filter', placeholder: 'os=Android', maxLength: 200 });
  const result = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'filters' }, field(t('report'), kind), field(t('from'), from), field(t('to'), to),
    field(t('breakdown'), breakdown), field(t('filter'), filter), h('button', { type: 'submit' }, t('run')));
  async function run() {
    const params = { app, from: from.value, to: to.value, filter: filter.value.trim() ? [filter.value.trim()] : [] };
    if (kind.value === 'events' && breakdown.value) params.breakdown = breakdown.value;
    try {
      const data = await get(`/api/v1/analytics/reports/${kind.value}${query(params)}`);
      clear(result, reportChart(kind.value, data.result));
    } catch (err) {
      clear(result, message('error', t('error', { m: err.message })));
    }
  }
  form.addEventListener('submit', (event) => { event.preventDefault(); run(); });
  out.append(section(t('reports'), form, result));
  return run();
}

async function journeysView(app, out) {
  const data = await get(`/api/v1/analytics/saved-reports${query({ app, limit: 100 })}`);
  const journeys = data.items.filter((r) => r.kind === 'funnel' && r.name.startsWith('journey.'));
  const picker = select('journey', journeys.map((j) => [j.name, j.name.slice('journey.'.length)]), journeys[0] && journeys[0].name);
  const result = h('div', { 'aria-live': 'polite' });
  async function show() {
    const name = picker.value;
    const ran = await post(`/api/v1/analytics/saved-reports/${enc(app)}/${enc(name)}/run`);
    const group = ran.result.groups[0] || { steps: [], conversion: null };
    const saved = journeys.find((j) => j.name === name);
    clear(result, h('p', {}, saved ? saved.description : ''), h('p', { class: 'conversion' }, t('conversion', { c: pct(group.conversion) })),
      chart(name, funnelOption(group.steps.map((s) => [s.event, s.count])), [t('step'), t('count'), t('dropped')],
        group.steps.map((s) => [s.event, num(s.count), num(s.dropped)]), { tall: true }));
  }
  picker.addEventListener('change', show);
  out.append(section(t('journeys'), field(t('journey'), picker), result));
  if (journeys.length) await show();
  else result.append(message('info', t('noData')));
}

export async function renderAnalytics({ app, main }) {
  const wanted = new URLSearchParams(location.search).get('view');
  const current = VIEWS.some(([v]) => v === wanted) ? wanted : 'reports';
  const out = h('div');
  const tabs = h('div', { class: 'subnav', role: 'group', 'aria-label': t('analytics') }, VIEWS.map(([v, key]) => h('a', {
    href: `/console/analytics?app=${enc(app)}&view=${v}`, 'aria-current': v === current ? 'page' : undefined,
    onclick: (event) => { event.preventDefault(); history.pushState(null, '', event.currentTarget.href); main.replaceChildren(h('h1', {}, t('analytics'))); renderAnalytics({ app, main }); },
  }, t(key))));
  main.append(tabs, out);
  if (current === 'reports') await reportsView(app, out);
  else if (current === 'journeys') await journeysView(app, out);
  else if (current === 'retention') await renderRetention(app, out);
  else await renderUx(app, out);
  main.dataset.view = current;
}
