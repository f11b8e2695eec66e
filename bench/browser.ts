/** What the browser benchmarks share: `bridgescope ui` started as a user would, and a Chromium whose frames are not capped. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

export interface RunningUi {
  child: ChildProcess;
  url: string;
  /** Ctrl-C, then waits until it has cleaned up and exited */
  stop(): Promise<void>;
}

/** Starts `bridgescope ui --no-sandbox` with `env` and resolves with the URL it prints once ready. */
export async function startUi(env: NodeJS.ProcessEnv): Promise<RunningUi> {
  // To profile or sample the host (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"): node flags that NODE_OPTIONS refuses.
  const nodeArgs = (process.env.BRIDGESCOPE_BENCH_UI_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '');
  // A data dir of its own: the benchmark must not take (or write into) the user's history, token and port.
  const dataDir = await mkdtemp(join(tmpdir(), 'bridgescope-bench-ui-'));
  const child = spawn(process.execPath, [...nodeArgs, join(import.meta.dirname, '..', 'bin', 'bridgescope'), 'ui', '--no-sandbox', '--data-dir', dataDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  child.stderr?.resume();
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /BridgeScope is ready: (http:\/\/\S+)/.exec(out);
      if (match?.[1]) resolve(match[1]);
    });
    child.on('exit', (code) => reject(new Error(`bridgescope ui exited (${code})`)));
  });
  return {
    child,
    url,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      await exited;
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Debian's Chromium, headless; without the frame-rate limit, the time between two frames is the work one frame needs. */
export function launchUncappedChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-frame-rate-limit', '--disable-gpu-vsync'],
  });
}
