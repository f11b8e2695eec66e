/** The Load panel's two charts' axes: both from 0, each with its unit. */
import type { ChartOptions } from 'chart.js';

const base = { animation: false, responsive: true, maintainAspectRatio: false } as const;

export function histogramOptions(): ChartOptions<'bar'> {
  return {
    ...base,
    scales: {
      x: { title: { display: true, text: 'latency (ms)' } },
      y: { beginAtZero: true, min: 0, ticks: { precision: 0 }, title: { display: true, text: 'requests' } },
    },
  };
}

// From 0, so a steady run does not look like a wild one.
export function throughputOptions(): ChartOptions<'line'> {
  return {
    ...base,
    scales: {
      x: { title: { display: true, text: 'time since start (s)' } },
      y: { beginAtZero: true, min: 0, title: { display: true, text: 'requests/s' } },
    },
  };
}
