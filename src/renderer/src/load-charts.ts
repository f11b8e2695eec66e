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

const clock = (at: number): string => {
  const date = new Date(at);
  return [date.getHours(), date.getMinutes(), date.getSeconds()].map((part) => String(part).padStart(2, '0')).join(':');
};

/** The Watch panel's latency chart: round trip percentiles over wall-clock time, from 0. */
export function watchLatencyOptions(): ChartOptions<'line'> {
  return {
    ...base,
    plugins: { legend: { display: true, position: 'bottom', labels: { boxWidth: 12 } } },
    scales: {
      // Linear in ms, labelled as clock times: points come 4 a second, so category labels would repeat each second.
      x: { type: 'linear', title: { display: true, text: 'time' }, ticks: { maxTicksLimit: 8, callback: (value) => clock(Number(value)) } },
      y: { beginAtZero: true, min: 0, title: { display: true, text: 'round trip (ms)' } },
    },
  };
}
