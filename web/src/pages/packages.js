// Published packages: versions, sizes, the delta size from the previous version (the
// size of the stored patch, read with HEAD), and who published what and when.

import { call, enc, get, query } from '../api.js';
import { barOption, chart } from '../charts.js';
import { bytes, num, t, when } from '../i18n.js';
import { h, section, table } from '../dom.js';

async function deltaSize(app, pkg, fromVersion) {
  const url = `/api/v1/apps/${enc(app)}/packages/${enc(pkg.kind)}/${enc(pkg.id)}/${enc(pkg.version)}/deltas/${enc(fromVersion)}`;
  try {
    const response = await call('HEAD', url);
    return response.ok ? Number(response.headers.get('Content-Length')) : null;
  } catch {
    return null;
  }
}

export async function renderPackages({ app, main }) {
  const data = await get(`/api/v1/apps/${enc(app)}/packages${query({ limit: 200 })}`);
  const lines = new Map();
  for (const p of data.items) {
    const key = `${p.kind} ${p.id}`;
    lines.set(key, [...(lines.get(key) || []), p]);
  }
  for (const [key, versions] of lines) {
    versions.sort((a, b) => a.created_at.localeCompare(b.created_at));
    const deltas = await Promise.all(versions.map((p, i) => (i ? deltaSize(app, p, versions[i - 1].version) : null)));
    const rows = versions.map((p, i) => [p.version, bytes(p.size), num(p.file_count),
      i ? `${versions[i - 1].version} → ${p.version}: ${bytes(deltas[i])}` : '—', p.created_by, when(p.created_at)]);
    main.append(section(key,
      table(key, [t('version'), t('size'), t('files'), t('delta'), t('publishedBy'), t('publishedAt')], rows.reverse()),
      chart(`${key}: ${t('size')}`, barOption(versions.map((p) => p.version), [
        { name: t('size'), data: versions.map((p) => p.size) },
        { name: t('delta'), data: deltas.map((d) => d || 0) },
      ]), [t('version'), t('size'), t('delta')], versions.map((p, i) => [p.version, bytes(p.size), bytes(deltas[i])]))));
  }
  if (!lines.size) main.append(h('p', {}, t('noData')));
}
