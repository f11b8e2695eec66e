/** The charts' axes: the Load panel's two and the Watch panel's latency chart, each from 0 with its unit. */
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

/** The Watch panel's latency chart: round trip percentiles over wall-clock time, from 0. */
export function watchLatencyOptions(): ChartOptions<'line'> {
  return {
    ...base,
    plugins: { legend: { display: true, position: 'bottom', labels: { boxWidth: 12 } } },
    scales: {
      x: { title: { display: true, text: 'time' }, ticks: { maxTicksLimit: 8, autoSkip: true } },
      y: { beginAtZero: true, min: 0, title: { display: true, text: 'round trip (ms)' } },
    },
  };
}
