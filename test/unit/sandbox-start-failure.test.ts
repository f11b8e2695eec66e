import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { bootFailedReason, explainStartFailure, otherVersionsDataRefusal, startSandbox } from '../../src/core/broker/sandbox';
import { upstreamVersion } from '../../src/core/broker/installations';
import { BridgeError } from '../../src/core/errors';

// Real logs, as the node wrote them to node.log in one start (test/fixtures/rabbitmq-logs, one start's lines each):
// RabbitMQ 4.3.6 started on the data of a 3.10.8 node (the new-user trial's crash), and 3.10.8 whose feature_flags file
// was garbled (a BOOT FAILED of 3.10.8's own shape: "Exception during startup:" then the thrown term).
const fixture = (name: string): string => readFileSync(join(__dirname, '..', 'fixtures', 'rabbitmq-logs', name), 'utf8');
const on310Data = fixture('4.3.6-on-3.10.8-data.txt');
const bootFailed310 = fixture('3.10.8-boot-failed.txt');
const ports = { amqp: 10_001, mqtt: 10_002, management: 10_003, dist: 10_004 };
const dir = '/home/ada/.local/state/bridgescope/sandbox';

describe('explainStartFailure', () => {
  it("says a node of another RabbitMQ version made the folder's data, and the three ways out, instead of the crash dump", () => {
    const said = explainStartFailure(on310Data, ports, dir);
    expect(said).toBe(
      `the sandbox folder ${dir} holds a node's data made by another RabbitMQ version, which this one cannot start on ` +
        '(its log: required feature flag `stream_sac_coordinator_unblock_group` is not enabled): start it with the RabbitMQ ' +
        'version it was made with (BRIDGESCOPE_RABBITMQ=system, 4.0 or 4.3, or `broker start --rabbitmq`), use another ' +
        `folder (BRIDGESCOPE_SANDBOX_DIR, or \`broker start --dir\`), or remove ${dir}/mnesia to start afresh (its queues, exchanges and users go with it)`,
    );
    expect(said).not.toMatch(/crash dump/i);
  });

  it('names the version the folder recorded', () => {
    expect(explainStartFailure(on310Data, ports, dir, '3.10.8')).toMatch(/^the sandbox folder \S+ holds a node's data made by another RabbitMQ version \(3\.10\.8\), /);
  });

  it("quotes a BOOT FAILED block's reason line, not the crash dump line", () => {
    expect(explainStartFailure(bootFailed310, ports, dir)).toBe(
      'its boot failed: Feature flags: failed to read the `feature_flags` file at `/tmp/bs-repro4-xt7l/mnesia/bridgescope-b07bcd87@localhost-feature_flags`: 1: syntax error before: erlang',
    );
  });

  it('keeps the last error line when the log has no BOOT FAILED block', () => {
    expect(explainStartFailure('2026-12-07 [info] starting\n2026-12-07 [error] something failed\n', ports, dir)).toBe('2026-12-07 [error] something failed');
  });
});

describe('bootFailedReason', () => {
  // The log from the block's first heading on, as if no error had been logged before it.
  const fromHeading = (log: string): string => {
    const lines = log.split('\n');
    return lines.slice(lines.findIndex((line) => line.endsWith('BOOT FAILED'))).join('\n');
  };

  it('is the first error logged before the block (4.3.6 and 3.10.8)', () => {
    expect(bootFailedReason(on310Data)).toBe(
      'Feature flags: `stream_sac_coordinator_unblock_group`: required feature flag not enabled! It must be enabled before upgrading RabbitMQ.',
    );
    expect(bootFailedReason(bootFailed310)).toMatch(/^Feature flags: failed to read the `feature_flags` file at /);
    // An error of several lines is said in one.
    expect(bootFailedReason(on310Data.split('\n').slice(2).join('\n'))).toBe(
      'Failed to initialize feature flags registry: {disabled_required_feature_flag,stream_sac_coordinator_unblock_group}',
    );
  });

  it("is the block's own error term, in one line, when no error comes before it", () => {
    expect(bootFailedReason(fromHeading(on310Data))).toBe(
      'Error during startup: {error,{failed_to_initialize_feature_flags_registry,{disabled_required_feature_flag,stream_sac_coordinator_unblock_group}}}',
    );
    expect(bootFailedReason(fromHeading(bootFailed310))).toBe(
      'throw:{feature_flags_file_read_error,"/tmp/bs-repro4-xt7l/mnesia/bridgescope-b07bcd87@localhost-feature_flags",{1,erl_parse,["syntax error before: ","erlang"]}}',
    );
  });

  it('is nothing for a log without the block', () => {
    expect(bootFailedReason('Crash dump is being written to: erl_crash.dump...done\n')).toBeUndefined();
  });
});

describe('a start on another RabbitMQ version’s data', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const made of dirs.splice(0)) rmSync(made, { recursive: true, force: true });
  });

  it('is refused before the node boots, naming the version the folder was made with and what to do', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'bridgescope-version-'));
    dirs.push(folder);
    const nodeName = 'bridgescope-0badf00d@localhost';
    const root = '/root/.cache/bridgescope/rabbitmq/forky';
    writeFileSync(join(folder, 'identity.json'), JSON.stringify({ nodeName, ports, rabbitmq: '4.3', root, version: '4.3.6' }));
    mkdirSync(join(folder, 'mnesia', nodeName), { recursive: true });

    const failure = await startSandbox({ dir: folder, rabbitmq: 'system', timeoutMs: 5000 }).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(BridgeError);
    expect((failure as BridgeError).code).toBe('bad-input');
    expect((failure as BridgeError).message).toBe(
      `The sandbox folder ${folder} holds a node's data made with RabbitMQ 4.3.6 (from ${root}), and RabbitMQ from this machine ` +
        'cannot run on another version\'s data: start it with the RabbitMQ it was made with (BRIDGESCOPE_RABBITMQ=4.3, or ' +
        '`broker start --rabbitmq 4.3`), use another folder (BRIDGESCOPE_SANDBOX_DIR, or `broker start --dir`), or remove ' +
        `${join(folder, 'mnesia')} to start afresh (its queues, exchanges and users go with it).`,
    );
    // Refused up front: nothing was written or started.
    expect(existsSync(join(folder, 'node.log'))).toBe(false);
    expect(existsSync(join(folder, 'rabbitmq.conf'))).toBe(false);
  });

  it('lets the same version through from another installation (a root moved or copied, the machine\'s package and a root alike)', () => {
    const made = { nodeName: 'bridgescope-0badf00d@localhost', ports, rabbitmq: '4.3', root: '/old/cache/rabbitmq/forky', version: '4.3.6' };
    const moved = { kind: 'root' as const, root: '/new/cache/rabbitmq/forky', label: '4.3', version: '4.3.6-1' };
    expect(otherVersionsDataRefusal(dir, made, moved, '4.3.6')).toBeUndefined();
    // A machine whose own package is 4.0.5, on the data of the 4.0 root: the same data format.
    const fromRoot40 = { nodeName: made.nodeName, ports, rabbitmq: '4.0', root: '/root/.cache/bridgescope/rabbitmq/trixie', version: '4.0.5' };
    expect(otherVersionsDataRefusal(dir, fromRoot40, { kind: 'system', label: 'system' }, '4.0.5')).toBeUndefined();
    // Another version, or one that cannot be told, is still refused.
    expect(otherVersionsDataRefusal(dir, made, { kind: 'system', label: 'system' }, '3.10.8')).toMatch(/^The sandbox folder .* made with RabbitMQ 4\.3\.6 /);
    expect(otherVersionsDataRefusal(dir, made, { kind: 'system', label: 'system' }, undefined)).toMatch(/cannot run on another version's data/);
    expect(upstreamVersion('4.3.6-1')).toBe('4.3.6');
    expect(upstreamVersion('1:3.10.8-1.1')).toBe('3.10.8');
    // A pre-release is its own version (its data is not the release's).
    expect(upstreamVersion('4.1.0-rc.1')).toBe('4.1.0-rc.1');
  });
});
