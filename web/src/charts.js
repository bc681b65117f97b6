// Apache ECharts, trimmed to the four chart types the console draws and the canvas
// renderer. Every chart comes with the same numbers as a table (keyboard and screen
// reader users read the table; the chart canvas is described by its label).

import * as echarts from 'echarts/core';
import { BarChart, FunnelChart, HeatmapChart, LineChart } from 'echarts/charts';
import { GridComponent, LegendComponent, TooltipComponent, VisualMapComponent } from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';
import { h, table } from './dom.js';
import { t } from './i18n.js';

echarts.use([BarChart, FunnelChart, HeatmapChart, LineChart, GridComponent, LegendComponent,
  TooltipComponent, VisualMapComponent, CanvasRenderer]);

const live = new Set();
const PALETTE = ['#1d4ed8', '#b45309', '#047857', '#7c3aed', '#be123c', '#0e7490', '#4d7c0f', '#a21caf'];

/** Dispose every chart of the page being left. */
export function disposeCharts() {
  for (const chart of live) chart.dispose();
  live.clear();
}

window.addEventListener('resize', () => live.forEach((c) => c.resize()));

function mount(box, option, figure) {
  let tries = 0;
  const attempt = () => {
    if (!box.isConnected) {
      if ((tries += 1) < 100) requestAnimationFrame(attempt);
      return;
    }
    const chart = echarts.init(box, null, { renderer: 'canvas' });
    live.add(chart);
    chart.on('finished', () => { figure.dataset.chart = 'drawn'; });
    chart.setOption({ animation: false, color: PALETTE, tooltip: { trigger: 'axis' }, ...option });
  };
  requestAnimationFrame(attempt);
}

/** A chart with its title, an accessible label and a table view of the same data. */
export function chart(title, option, headers, rows, opts = {}) {
  const box = h('div', { class: `chart ${opts.tall ? 'tall' : ''}`, role: 'img', 'aria-label': t('chartOf', { t: title }) });
  const figure = h('figure', { class: 'chart-figure', dataset: { chart: 'pending' } },
    h('figcaption', {}, title), box,
    h('details', { class: 'table-view' }, h('summary', {}, t('showTable')), table(title, headers, rows)));
  mount(box, option, figure);
  return figure;
}

export function lineOption(categories, series, opts = {}) {
  return {
    ...(series.length > 1 ? { legend: { top: 0, type: 'scroll' } } : {}),
    grid: { left: 48, right: 16, top: series.length > 1 ? 32 : 16, bottom: 28 },
    xAxis: { type: 'category', data: categories },
    yAxis: opts.percent ? { type: 'value', max: opts.max, axisLabel: { formatter: (v) => `${Math.round(v * 100)}%` } } : { type: 'value' },
    series: series.map((s) => ({ type: 'line', name: s.name, data: s.data, showSymbol: false, ...(opts.stack ? { stack: opts.stack, areaStyle: {} } : {}) })),
  };
}

export function barOption(categories, series, opts = {}) {
  return {
    ...(series.length > 1 ? { legend: { top: 0 } } : {}),
    grid: { left: opts.left || 56, right: 16, top: series.length > 1 ? 32 : 16, bottom: 28 },
    xAxis: { type: 'category', data: categories },
    yAxis: { type: 'value' },
    series: series.map((s) => ({ type: 'bar', name: s.name, data: s.data })),
  };
}

export function funnelOption(steps) {
  return {
    tooltip: { trigger: 'item' },
    series: [{
      type: 'funnel', sort: 'none', left: '10%', width: '80%', minSize: '8%', gap: 2,
      label: { show: true, position: 'inside', formatter: '{b}: {c}', color: '#fff' },
      data: steps.map(([name, value]) => ({ name, value })),
    }],
  };
}

export function heatmapOption(xs, ys, cells) {
  return {
    tooltip: { position: 'top', trigger: 'item' },
    grid: { left: 88, right: 16, top: 8, bottom: 64 },
    xAxis: { type: 'category', data: xs, splitArea: { show: true } },
    yAxis: { type: 'category', data: ys, inverse: true, splitArea: { show: true } },
    visualMap: { min: 0, max: 1, calculable: false, orient: 'horizontal', left: 'center', bottom: 0, itemHeight: 120, inRange: { color: ['#eff6ff', '#1e3a8a'] } },
    series: [{ type: 'heatmap', data: cells, label: { show: false } }],
  };
}
