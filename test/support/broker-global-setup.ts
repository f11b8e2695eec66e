/** Starts one sandbox broker for the whole integration run and removes it afterwards; no broker means a failed run. */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { TestProject } from 'vitest/node';
import { startSandbox, stopSandbox, type SandboxInfo } from '../../src/core/broker/sandbox';
import { claimTestBroker, reapOrphanedTestBrokers } from './reap';

declare module 'vitest' {
  export interface ProvidedContext {
    broker: SandboxInfo;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const reaped = await reapOrphanedTestBrokers();
  if (reaped.length > 0) console.warn(`Stopped ${reaped.length} test broker(s) left running by killed test runs: ${reaped.join(', ')}`);
  const dir = await mkdtemp(join(tmpdir(), 'bridgescope-test-'));
  await claimTestBroker(dir);
  // The RabbitMQ under test: the machine's (default), or 4.0 / 4.3 from a root prepared by scripts/rabbitmq-root.sh.
  // Sandboxes the tests start themselves (and `bridgescope broker start` run by a test) use the same one.
  const rabbitmq = process.env.BRIDGESCOPE_TEST_RABBITMQ?.trim() || 'system';
  process.env.BRIDGESCOPE_RABBITMQ = rabbitmq;
  let info: SandboxInfo;
  try {
    const result = await startSandbox({
      dir,
      nodeName: `bridgescope-test-${process.pid}-${randomBytes(3).toString('hex')}@localhost`,
      timeoutMs: 120_000,
      rabbitmq,
    });
    info = result.info;
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`The integration tests need a RabbitMQ sandbox broker and it could not start: ${(err as Error).message}`);
  }
  project.provide('broker', info);
  const named = `RabbitMQ ${info.version ?? 'of unknown version'} (BRIDGESCOPE_TEST_RABBITMQ=${rabbitmq}${info.root ? `, root ${info.root}` : ''})`;
  console.log(`== Integration and end-to-end tests run on ${named}, node ${info.nodeName}`);
  // `bridgescope ui` keeps its token, port and history under $XDG_CONFIG_HOME: the run's own folder, never the user's;
  // inside the broker's, so that a run stopped by Ctrl-C leaves neither behind (see claimTestBroker).
  const config = join(dir, 'config');
  await mkdir(config);
  process.env.XDG_CONFIG_HOME = config;
  return async () => {
    console.log(`== The integration and end-to-end tests ran on ${named}`);
    await stopSandbox(dir);
    await rm(dir, { recursive: true, force: true });
  };
}
