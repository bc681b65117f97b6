// English and Simplified Chinese. The locale comes from the session (which the server
// took from Accept-Language), or from the switch in the page (kept in localStorage).
// Numbers and dates are formatted by Intl in the chosen locale.

const en = {
  title: 'mpaas console', skip: 'Skip to content', nav: 'Main', app: 'App', language: 'Language',
  signIn: 'Sign in', signOut: 'Sign out', username: 'User name', password: 'Password',
  signInFailed: 'Wrong user name or password.', locked: 'Too many failed attempts. Try again in {s} seconds.',
  signedInAs: 'Signed in as {user} ({role})', overview: 'Overview', releases: 'Releases', packages: 'Packages',
  push: 'Push', analytics: 'Analytics', audit: 'Audit log', loading: 'Loading…', noData: 'No data',
  notAllowed: 'Your role may not see this.', error: 'Error: {m}', showTable: 'Table view',
  activeToday: 'Active users today', crashFree: 'Crash-free users', rollingOut: 'Releases rolling out now',
  recentPushes: 'Recent pushes', dauTrend: 'Daily active users', channel: 'Channel', package: 'Package',
  version: 'Version', rollout: 'Rollout', state: 'State', downloads: 'Downloads', installs: 'Installs',
  failures: 'Failures', failureRate: 'Failure rate', actions: 'Actions', pause: 'Pause', resume: 'Resume',
  rollback: 'Roll back', promote: 'Promote', setRollout: 'Set rollout', confirm: 'Confirm', cancel: 'Cancel',
  autoHalted: 'Auto-halted: {r}', adoption: 'Adoption of {p}', day: 'Day', share: 'Share', devices: 'Devices',
  confirmPause: 'Pause release #{id} ({pkg} {v}) on {ch}: no more devices will be offered it.',
  confirmResume: 'Resume release #{id} ({pkg} {v}) on {ch} at {pct} rollout.',
  confirmRollout: 'Change the rollout of release #{id} ({pkg} {v}) on {ch} from {from} to {to}.',
  confirmPromote: 'Release {pkg} {v} from {ch} on channel {to}.',
  confirmRollback: 'Roll back {pkg} on {ch}: release #{id} ({v}) is replaced by the previous release.',
  done: 'Done: {m}', size: 'Size', files: 'Files', delta: 'Delta from previous', publishedBy: 'Published by',
  publishedAt: 'Published at', kind: 'Kind', sendPush: 'Send a push message', audience: 'Audience',
  audienceValues: 'Devices, users or tags (comma separated)', everyone: 'Everyone', byDevices: 'Devices',
  byUsers: 'Users', byTags: 'Tags', msgTitle: 'Title', msgBody: 'Message', send: 'Send', sent: 'Sent',
  queued: 'Queued', delivered: 'Delivered', arrived: 'Arrived', opened: 'Opened', messages: 'Messages',
  message: 'Message', provider: 'Provider', funnelOf: 'Delivery funnel of message #{id}', show: 'Show',
  created: 'Created', reports: 'Reports', report: 'Report', from: 'From', to: 'To', breakdown: 'Breakdown',
  filter: 'Filter (field=value)', run: 'Run', journeys: 'Core journeys', journey: 'Journey',
  retention: 'Retention', cohort: 'Cohort', users: 'Users', ux: 'Experience', startup: 'Start-up time',
  stability: 'Stability', h5: 'H5 pages', step: 'Step', count: 'Count', conversion: 'Conversion {c}',
  dropped: 'Dropped', action: 'Action', actor: 'Actor', target: 'Target', at: 'At', detail: 'Detail',
  apply: 'Apply', previous: 'Previous', next: 'Next', pageOf: '{a}–{b} of {n}', none: 'none',
  crashFreeUsers: 'Crash-free users', anrRate: 'ANR rate', sessions: 'Sessions', model: 'Device',
  startType: 'Start', loadP50: 'Load p50 (ms)', loadP90: 'Load p90 (ms)', whiteP50: 'White screen p50 (ms)',
  chartOf: 'Chart: {t}', events: 'Events', total: 'Total', newPct: 'New rollout (%)', targetChannel: 'To channel',
  status_active: 'active', status_paused: 'paused', status_halted: 'auto-halted', status_rolled_back: 'rolled back',
};

const zh = {
  title: 'mpaas 控制台', skip: '跳到正文', nav: '主导航', app: '应用', language: '语言',
  signIn: '登录', signOut: '退出登录', username: '用户名', password: '密码',
  signInFailed: '用户名或密码错误。', locked: '失败次数过多，请在 {s} 秒后重试。',
  signedInAs: '已登录：{user}（{role}）', overview: '概览', releases: '发布', packages: '离线包',
  push: '推送', analytics: '分析', audit: '审计日志', loading: '加载中…', noData: '暂无数据',
  notAllowed: '您的角色无权查看此内容。', error: '错误：{m}', showTable: '表格视图',
  activeToday: '今日活跃用户', crashFree: '无崩溃用户率', rollingOut: '正在灰度的发布',
  recentPushes: '最近推送', dauTrend: '日活跃用户', channel: '渠道', package: '包',
  version: '版本', rollout: '灰度比例', state: '状态', downloads: '下载', installs: '安装',
  failures: '失败', failureRate: '失败率', actions: '操作', pause: '暂停', resume: '恢复',
  rollback: '回滚', promote: '晋级', setRollout: '设置灰度', confirm: '确认', cancel: '取消',
  autoHalted: '已自动熔断：{r}', adoption: '{p} 的更新覆盖率', day: '日期', share: '占比', devices: '设备',
  confirmPause: '暂停渠道 {ch} 上的发布 #{id}（{pkg} {v}）：不再向更多设备提供。',
  confirmResume: '以 {pct} 的灰度恢复渠道 {ch} 上的发布 #{id}（{pkg} {v}）。',
  confirmRollout: '将渠道 {ch} 上发布 #{id}（{pkg} {v}）的灰度从 {from} 改为 {to}。',
  confirmPromote: '把 {ch} 上的 {pkg} {v} 发布到渠道 {to}。',
  confirmRollback: '回滚渠道 {ch} 上的 {pkg}：发布 #{id}（{v}）由上一个发布取代。',
  done: '完成：{m}', size: '大小', files: '文件数', delta: '相对上一版本的差分', publishedBy: '发布人',
  publishedAt: '发布时间', kind: '类型', sendPush: '发送推送消息', audience: '推送对象',
  audienceValues: '设备、用户或标签（用逗号分隔）', everyone: '全部', byDevices: '设备',
  byUsers: '用户', byTags: '标签', msgTitle: '标题', msgBody: '内容', send: '发送', sent: '已发送',
  queued: '排队', delivered: '已投递', arrived: '已到达', opened: '已打开', messages: '消息',
  message: '消息', provider: '通道', funnelOf: '消息 #{id} 的送达漏斗', show: '查看',
  created: '创建时间', reports: '报表', report: '报表', from: '开始', to: '结束', breakdown: '维度拆分',
  filter: '筛选（字段=值）', run: '查询', journeys: '核心旅程', journey: '旅程',
  retention: '留存', cohort: '同期群', users: '用户', ux: '体验', startup: '启动耗时',
  stability: '稳定性', h5: 'H5 页面', step: '步骤', count: '人数', conversion: '转化率 {c}',
  dropped: '流失', action: '动作', actor: '操作人', target: '对象', at: '时间', detail: '详情',
  apply: '应用', previous: '上一页', next: '下一页', pageOf: '第 {a}–{b} 条，共 {n} 条', none: '无',
  crashFreeUsers: '无崩溃用户率', anrRate: 'ANR 率', sessions: '会话', model: '机型',
  startType: '启动类型', loadP50: '加载 p50（毫秒）', loadP90: '加载 p90（毫秒）', whiteP50: '白屏 p50（毫秒）',
  chartOf: '图表：{t}', events: '事件', total: '合计', newPct: '新的灰度比例（%）', targetChannel: '目标渠道',
  status_active: '生效中', status_paused: '已暂停', status_halted: '已自动熔断', status_rolled_back: '已回滚',
};

const dictionaries = { en, 'zh-CN': zh };
export const LOCALES = [['en', 'English'], ['zh-CN', '简体中文']];
let current = 'en';

export function setLocale(locale) {
  current = dictionaries[locale] ? locale : 'en';
  document.documentElement.lang = current;
  try {
    localStorage.setItem('mpaas.locale', current);
  } catch {
    /* storage may be off: the session keeps the locale too */
  }
}

export function storedLocale() {
  try {
    return localStorage.getItem('mpaas.locale');
  } catch {
    return null;
  }
}

export const locale = () => current;

export function t(key, vars) {
  const text = dictionaries[current][key] ?? en[key] ?? key;
  return vars ? text.replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? '')) : text;
}

export const num = (n, opts) => (n === null || n === undefined ? '—' : new Intl.NumberFormat(current, opts).format(n));
export const pct = (share, digits = 1) => num(share, { style: 'percent', maximumFractionDigits: digits });
export const bytes = (n) => (n === null || n === undefined ? '—'
  : n < 1024 ? `${num(n)} B` : n < 1048576 ? `${num(n / 1024, { maximumFractionDigits: 1 })} KB`
    : `${num(n / 1048576, { maximumFractionDigits: 1 })} MB`);
export function when(iso) {
  if (!iso) return '—';
  return new Intl.DateTimeFormat(current, { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(iso));
}
export function day(isoDay) {
  const [y, m, d] = isoDay.slice(0, 10).split('-').map(Number);
  return new Intl.DateTimeFormat(current, { month: 'short', day: 'numeric', timeZone: 'UTC' })
    .format(new Date(Date.UTC(y, m - 1, d)));
}
