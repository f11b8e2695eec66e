/**
 * Renderer scale: how fast the inspector's trace store ingests steps, what 100,000 steps cost in memory,
 * and the frame time while scrolling the trace list in headless Chromium. Run by `bridgescope bench`.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp } from 'vue';
import { createPinia, setActivePinia } from 'pinia';
import { launchUncappedChromium, startUi } from './browser';
import { TRACE_EXPORT_VERSION, type TraceExport, type TraceStep } from '../src/shared/trace';
import { counted } from '../src/shared/describe';
import type { BridgeClient } from '../src/shared/contract';
import { clientKey } from '../src/renderer/src/injection';
import { useTraceViewStore } from '../src/renderer/src/stores/trace-view';

const STEPS = 100_000;
const STEPS_PER_RPC = 10;
const BATCH = 500;

function makeSteps(): TraceStep[] {
  const steps: TraceStep[] = [];
  for (let index = 0; index < STEPS; index += 1) {
    const rpc = Math.floor(index / STEPS_PER_RPC);
    const rpcId = `rpc-${rpc.toString().padStart(6, '0')}`;
    steps.push(
      index % STEPS_PER_RPC === 0
        ? { rpcId, seq: index + 1, at: 1_700_000_000_000 + index, source: 'client', kind: 'composed', detail: { topic: 'rpc_queue', qos: 1, replyTopic: `reply/${rpcId}`, replyStrategy: 'shared', bytes: 80 } }
        : { rpcId, seq: index + 1, at: 1_700_000_000_000 + index, source: 'broker', kind: 'broker.published', detail: { exchange: 'amq.direct', routingKeys: ['rpc_queue'], routedQueues: ['rpc_queue'], leg: 'request' } },
    );
  }
  return steps;
}

/** Steps are made after the first heap reading: they arrive as new objects over IPC in the app too. */
async function ingestBenchmark(): Promise<{ stepsPerSecond: number; heapMiB: number }> {
  const noop: BridgeClient = { invoke: () => Promise.reject(new Error('offline')), on: () => () => undefined };
  const app = createApp({});
  const pinia = createPinia();
  app.provide(clientKey, noop);
  app.use(pinia);
  setActivePinia(pinia);
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const steps = makeSteps();
  const trace = app.runWithContext(() => useTraceViewStore());
  const begin = performance.now();
  for (let index = 0; index < steps.length; index += BATCH) trace.ingest(steps.slice(index, index + BATCH));
  // Reading the list is part of the cost a user pays: the newest-first ids are recomputed once.
  void trace.visibleIds.length;
  const seconds = (performance.now() - begin) / 1000;
  gc?.();
  const heapMiB = (process.memoryUsage().heapUsed - heapBefore) / 1024 / 1024;
  return { stepsPerSecond: steps.length / seconds, heapMiB };
}

async function scrollBenchmark(steps: TraceStep[]): Promise<{ medianFrameMs: number; p95FrameMs: number; frames: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'bridgescope-scale-'));
  const file = join(dir, 'trace.json');
  const exported: TraceExport = { format: 'bridgescope-trace', version: TRACE_EXPORT_VERSION, exportedAt: new Date().toISOString(), dropped: { rpcs: 0, steps: 0 }, steps };
  await writeFile(file, JSON.stringify(exported));
  const ui = await startUi({ BRIDGESCOPE_AMQP_URL: '' });
  const url = ui.url;
  const browser = await launchUncappedChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(url);
    await page.waitForSelector('[data-app-state="ready"]');
    await page.click('[data-testid=tab-trace]');
    await page.setInputFiles('[data-testid=trace-import]', file);
    await page.waitForSelector(`[data-testid=trace-counts] >> text=${counted(STEPS / STEPS_PER_RPC, 'RPC')}`, { timeout: 60_000 });
    // Runs in the page (a string, so this Node-side file needs no DOM types).
    const frames = (await page.evaluate(`(async () => {
      const list = document.querySelector('[data-testid=trace-list]');
      const deltas = [];
      let last = performance.now();
      for (let frame = 0; frame < 240; frame += 1) {
        list.scrollTop += 400;
        await new Promise((resolve) => requestAnimationFrame(() => resolve()));
        const now = performance.now();
        deltas.push(now - last);
        last = now;
      }
      return deltas;
    })()`)) as number[];
    const sorted = frames.slice(10).sort((a, b) => a - b);
    return {
      medianFrameMs: sorted[Math.floor(sorted.length / 2)] ?? Number.NaN,
      p95FrameMs: sorted[Math.floor(sorted.length * 0.95)] ?? Number.NaN,
      frames: sorted.length,
    };
  } finally {
    await browser.close();
    await ui.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const ingest = await ingestBenchmark();
const scroll = await scrollBenchmark(makeSteps());
const result = {
  steps: STEPS,
  ingest: { stepsPerSecond: Math.round(ingest.stepsPerSecond), target: '>= 20000', met: ingest.stepsPerSecond >= 20_000 },
  memory: { heapMiBAt100kSteps: Number(ingest.heapMiB.toFixed(1)), cap: '20,000 RPCs in the inspector; 10,000 RPCs x 64 steps in the core' },
  scroll: { ...scroll, target: 'median < 16 ms', met: scroll.medianFrameMs < 16 },
};
process.stdout.write(
  [
    '',
    `Renderer scale (${STEPS.toLocaleString('en')} steps):`,
    `  ingest            ${result.ingest.stepsPerSecond.toLocaleString('en')} steps/s   target >= 20,000  ${result.ingest.met ? 'met' : 'MISSED'}`,
    `  heap              ${result.memory.heapMiBAt100kSteps} MiB for 100,000 steps, steps included (bounded by the caps)`,
    `  scroll frames     median ${scroll.medianFrameMs.toFixed(2)} ms, p95 ${scroll.p95FrameMs.toFixed(2)} ms over ${scroll.frames} frames   target median < 16 ms  ${result.scroll.met ? 'met' : 'MISSED'}`,
    '',
  ].join('\n'),
);
const out = process.argv[2];
if (out) {
  const previous = JSON.parse(await readFile(out, 'utf8').catch(() => '{}')) as Record<string, unknown>;
  await writeFile(out, JSON.stringify({ ...previous, rendererScale: result }, null, 2));
}
