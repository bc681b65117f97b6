// The console's shell: session, app picker, language switch, navigation and routing.
// Pages live under /console/<page>; the server answers every such path with this app.

import { ApiError, call, get, setCsrf } from './api.js';
import { disposeCharts } from './charts.js';
import { clear, field, h, message, select } from './dom.js';
import { LOCALES, locale, setLocale, storedLocale, t } from './i18n.js';
import { renderAnalytics } from './pages/analytics.js';
import { renderAudit } from './pages/audit.js';
import { renderOverview } from './pages/overview.js';
import { renderPackages } from './pages/packages.js';
import { renderPush } from './pages/push.js';
import { renderReleases } from './pages/releases.js';
import { renderSignIn } from './pages/signin.js';

const BASE = '/console/';
const ALL = ['admin', 'release-manager', 'analyst', 'push-operator'];
const PAGES = [
  { path: '', key: 'overview', roles: ALL, render: renderOverview },
  { path: 'releases', key: 'releases', roles: ['admin', 'release-manager', 'analyst'], render: renderReleases },
  { path: 'packages', key: 'packages', roles: ['admin', 'release-manager'], render: renderPackages },
  { path: 'push', key: 'push', roles: ['admin', 'push-operator'], render: renderPush },
  { path: 'analytics', key: 'analytics', roles: ['admin', 'analyst'], render: renderAnalytics },
  { path: 'audit', key: 'audit', roles: ['admin'], render: renderAudit },
];

const root = document.getElementById('app');
const state = { session: null, apps: [], app: '' };

function currentPath() {
  const rest = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : '';
  return rest.replace(/\/+$/, '');
}

export function navigate(path, replace = false) {
  const url = BASE + path + (state.app ? `?app=${encodeURIComponent(state.app)}` : '');
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render();
}

function can(roles) {
  return Boolean(state.session) && roles.includes(state.session.role);
}

async function loadSession() {
  try {
    state.session = await get('/console/api/session');
    setCsrf(state.session.csrf_token);
    setLocale(storedLocale() || state.session.locale);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401) throw err;
    state.session = null;
    setLocale(storedLocale() || (navigator.language.startsWith('zh') ? 'zh-CN' : 'en'));
  }
}

async function loadApps() {
  const data = await get('/api/v1/apps?limit=200').catch(() => ({ items: [] }));
  state.apps = data.items.map((a) => a.name);
  const wanted = new URLSearchParams(location.search).get('app') || localStorage.getItem('mpaas.app');
  state.app = state.apps.includes(wanted) ? wanted : state.apps[0] || '';
}

async function signedIn(session) {
  state.session = session;
  setCsrf(session.csrf_token);
  setLocale(storedLocale() || session.locale);
  await loadApps();
  navigate(currentPath() === 'sign-in' ? '' : currentPath(), true);
}

async function signOut() {
  await call('DELETE', '/console/api/session').catch(() => null);
  state.session = null;
  setCsrf('');
  history.pushState(null, '', `${BASE}sign-in`);
  render();
}

async function switchLocale(value) {
  setLocale(value);
  if (state.session) await call('PATCH', '/console/api/session', { locale: value }).catch(() => null);
  render();
}

function header() {
  const lang = select('locale', LOCALES, locale());
  lang.addEventListener('change', () => switchLocale(lang.value));
  const parts = [h('a', { class: 'brand', href: BASE }, t('title')), h('div', { class: 'spacer' })];
  if (state.session) {
    const apps = select('app', state.apps.map((a) => [a, a]), state.app);
    apps.addEventListener('change', () => {
      state.app = apps.value;
      localStorage.setItem('mpaas.app', state.app);
      navigate(currentPath());
    });
    parts.push(field(t('app'), apps));
  }
  parts.push(field(t('language'), lang));
  if (state.session) {
    parts.push(h('span', { class: 'who' }, t('signedInAs', { user: state.session.user, role: state.session.role })),
      h('button', { type: 'button', class: 'secondary', onclick: signOut }, t('signOut')));
  }
  return h('header', { class: 'top' }, parts);
}

function nav(active) {
  const links = PAGES.filter((p) => can(p.roles)).map((p) => h('li', {},
    h('a', { href: BASE + p.path, 'aria-current': p.path === active ? 'page' : undefined }, t(p.key))));
  return h('nav', { 'aria-label': t('nav') }, h('ul', {}, links));
}

async function render() {
  disposeCharts();
  document.title = t('title');
  const path = currentPath();
  const main = h('main', { id: 'main', tabindex: '-1' });
  if (!state.session) {
    clear(root, h('a', { class: 'skip', href: '#main' }, t('skip')), header(), main);
    renderSignIn(main, signedIn);
    return;
  }
  const page = PAGES.find((p) => p.path === path);
  clear(root, h('a', { class: 'skip', href: '#main' }, t('skip')), header(), nav(page ? page.path : null), main);
  if (!page) {
    navigate('', true);
    return;
  }
  document.title = `${t(page.key)} · ${t('title')}`;
  if (!can(page.roles)) {
    main.append(message('error', t('notAllowed')));
    return;
  }
  main.append(h('h1', {}, t(page.key)));
  const ctx = { app: state.app, role: state.session.role, can, main };
  try {
    await page.render(ctx);
  } catch (err) {
    main.append(message('error', t('error', { m: err.message })));
  }
  main.dataset.ready = 'true';
}

document.addEventListener('click', (event) => {
  const link = event.target instanceof Element ? event.target.closest('a[href]') : null;
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(BASE) || url.hash) return;
  event.preventDefault();
  navigate(url.pathname.slice(BASE.length).replace(/\/+$/, ''));
  document.getElementById('main')?.focus();
});
window.addEventListener('popstate', () => render());

(async () => {
  await loadSession();
  if (state.session) await loadApps();
  render();
})();
