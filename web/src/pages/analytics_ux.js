// Retention as a cohort table coloured by share (and a heatmap of the same numbers),
// and the UX pages: start-up time, stability and H5 page timings by version.

import { get, query } from '../api.js';
import { barOption, chart, heatmapOption } from '../charts.js';
import { h, section, table } from '../dom.js';
import { num, pct, t } from '../i18n.js';

/** Background from white to mid blue by share, never darker than dark text can be read on
 * (lightness 62 % keeps a contrast of 5:1 with #111, which WCAG AA asks of normal text). */
function shareCell(share, retained) {
  if (share === null || share === undefined) return h('td', { class: 'empty' }, '—');
  const light = Math.round(97 - share * 35);
  return h('td', { class: 'cohort-cell', style: `background-color: hsl(221 70% ${light}%); color: #111`,
    title: `${num(retained)}` }, pct(share, 0));
}

export async function renderRetention(app, out) {
  const data = await get(`/api/v1/analytics/reports/retention${query({ app, last_days: 21, periods: 8 })}`);
  const { cohorts, periods } = data.result;
  const headers = [t('cohort'), t('users'), ...Array.from({ length: periods }, (_, i) => `D${i}`)];
  const rows = cohorts.map((c) => h('tr', {}, h('th', { scope: 'row' }, c.day), h('td', {}, num(c.size)),
    c.shares.map((s, i) => shareCell(s, c.retained[i]))));
  const cells = cohorts.flatMap((c, y) => c.shares.map((s, x) => (s === null ? null : [x, y, s])).filter(Boolean));
  out.append(section(t('retention'), table(t('retention'), headers, rows, { class: 'data cohort' }),
    chart(t('retention'), heatmapOption(headers.slice(2), cohorts.map((c) => c.day), cells), headers,
      cohorts.map((c) => [c.day, num(c.size), ...c.shares.map((s) => (s === null ? '—' : pct(s, 0)))]), { tall: true })));
}

export async function renderUx(app, out) {
  const [startup, stability, h5] = await Promise.all(['startup', 'stability', 'h5'].map((k) => get(`/api/v1/analytics/reports/${k}${query({ app, last_days: 30 })}`)));
  const cold = startup.result.rows.filter((r) => r.start_type === 'cold');
  const versions = [...new Set(cold.map((r) => r.app_version))].sort();
  const models = [...new Set(cold.map((r) => r.device_model))].sort();
  const series = models.map((m) => ({ name: m, data: versions.map((v) => (cold.find((r) => r.app_version === v && r.device_model === m) || { duration_ms: { p50: null } }).duration_ms.p50) }));
  out.append(section(t('startup'), chart(`${t('startup')} (cold p50, ms)`, barOption(versions, series),
    [t('version'), t('model'), t('startType'), 'n', 'p50', 'p90', 'p99'],
    startup.result.rows.map((r) => [r.app_version, r.device_model, r.start_type, num(r.duration_ms.count), num(r.duration_ms.p50), num(r.duration_ms.p90), num(r.duration_ms.p99)]))));
  const rows = stability.result.rows;
  out.append(section(t('stability'), chart(t('crashFreeUsers'), barOption(rows.map((r) => r.app_version), [{ name: t('crashFreeUsers'), data: rows.map((r) => r.crash_free_users) }]),
    [t('version'), t('users'), t('crashFreeUsers'), t('sessions'), t('anrRate')],
    rows.map((r) => [r.app_version, num(r.users), pct(r.crash_free_users, 2), num(r.sessions), pct(r.anr_rate, 2)]))));
  const pages = h5.result.rows;
  const labels = pages.map((r) => `${r.package_id} ${r.package_version}`);
  out.append(section(t('h5'), chart(t('h5'), barOption(labels, [{ name: t('loadP50'), data: pages.map((r) => r.load_ms.p50) }, { name: t('whiteP50'), data: pages.map((r) => r.white_screen_ms.p50) }]),
    [t('package'), t('loadP50'), t('loadP90'), t('whiteP50')], pages.map((r, i) => [labels[i], num(r.load_ms.p50), num(r.load_ms.p90), num(r.white_screen_ms.p50)]))));
}
