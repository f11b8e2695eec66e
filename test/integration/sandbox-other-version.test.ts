/**
 * A sandbox folder made by one RabbitMQ and started with another (the new-user trial: the default 3.10.8, then
 * BRIDGESCOPE_RABBITMQ=4.3 on the same folder), on real nodes started here: whatever BRIDGESCOPE_TEST_RABBITMQ says, it
 * needs this machine's RabbitMQ and the 4.3 root (scripts/rabbitmq-root.sh 4.3), and fails saying so when either is missing.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { findRabbitMQ, sandboxStatus, startSandbox, stopSandbox } from '../../src/core/broker/sandbox';
import { resolveRabbitMQ } from '../../src/core/broker/installations';
import { BridgeError } from '../../src/core/errors';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

describe('a sandbox folder started with another RabbitMQ than made it', () => {
  it("is refused up front naming the folder's version, says the same after a crash when the folder has no record, and starts afresh once mnesia is removed", { timeout: 150_000 }, async () => {
    // Both RabbitMQs must be here: a missing one fails this test with its own sentence, never skips it.
    findRabbitMQ();
    resolveRabbitMQ('4.3');
    const dir = await mkdtemp(join(tmpdir(), 'bridgescope-other-version-'));
    cleanups.push(async () => {
      await stopSandbox(dir);
      await rm(dir, { recursive: true, force: true });
    });

    const made = await startSandbox({ dir, rabbitmq: 'system', timeoutMs: 120_000 });
    const madeWith = made.info.version as string;
    expect(madeWith).toMatch(/^3\./);
    expect(await stopSandbox(dir)).toMatchObject({ stopped: true });
    const identity = JSON.parse(await readFile(join(dir, 'identity.json'), 'utf8')) as Record<string, unknown>;
    expect(identity).toMatchObject({ rabbitmq: 'system', version: madeWith });

    // Up front: the node is not booted at all, so its log gets nothing.
    const logBefore = await readFile(join(dir, 'node.log'), 'utf8');
    const refused = await startSandbox({ dir, rabbitmq: '4.3', timeoutMs: 120_000 }).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(BridgeError);
    expect((refused as BridgeError).code).toBe('bad-input');
    expect((refused as BridgeError).message).toContain(`The sandbox folder ${dir} holds a node's data made with RabbitMQ ${madeWith} (this machine's)`);
    expect((refused as BridgeError).message).toContain('BRIDGESCOPE_RABBITMQ=system');
    expect((refused as BridgeError).message).toContain(`remove ${join(dir, 'mnesia')} to start afresh`);
    expect(await readFile(join(dir, 'node.log'), 'utf8')).toBe(logBefore);

    // A folder from before versions were recorded: 4.3.6 boots on 3.10's data and crashes; the log's reason is decoded.
    await writeFile(join(dir, 'identity.json'), JSON.stringify({ nodeName: identity.nodeName, ports: identity.ports }));
    const crashed = await startSandbox({ dir, rabbitmq: '4.3', timeoutMs: 120_000 }).catch((err: unknown) => err);
    expect(crashed).toBeInstanceOf(BridgeError);
    expect((crashed as BridgeError).code).toBe('broker-failed');
    expect((crashed as BridgeError).message).toMatch(
      new RegExp(`stopped during start-up: the sandbox folder ${dir} holds a node's data made by another RabbitMQ version, which this one cannot start on \\(its log: required feature flag \`\\w+\` is not enabled\\)`),
    );
    expect((crashed as BridgeError).message).not.toMatch(/crash dump/i);
    expect((await sandboxStatus(dir)).state).toBe('stopped');

    // The way out the sentence names: without its data the folder starts afresh with 4.3, and records it.
    await rm(join(dir, 'mnesia'), { recursive: true, force: true });
    const fresh = await startSandbox({ dir, rabbitmq: '4.3', timeoutMs: 120_000 });
    expect(fresh.info.version).toMatch(/^4\.3\./);
    expect(JSON.parse(await readFile(join(dir, 'identity.json'), 'utf8'))).toMatchObject({ rabbitmq: '4.3', version: fresh.info.version });
    expect(await stopSandbox(dir)).toMatchObject({ stopped: true });
    expect(existsSync(join(dir, 'mnesia'))).toBe(true);
  });
});
