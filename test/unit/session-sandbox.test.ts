import { describe, expect, it } from 'vitest';
import type { SandboxView } from '../../src/shared/contract';
import { SandboxController } from '../../src/core/session/sandbox';
import { FakeNode, Journal, runningInfo } from './session-fakes';

function controller(node: FakeNode): { sandbox: SandboxController; views: SandboxView[] } {
  const views: SandboxView[] = [];
  const sandbox: SandboxController = new SandboxController({ dir: '/tmp/fake', node, onChange: () => views.push(sandbox.view) });
  return { sandbox, views };
}

describe('the sandbox controller', () => {
  it('reuses a node already running in its folder, without starting one and without owning it', async () => {
    const node = new FakeNode();
    node.statusAnswers.push({ state: 'running', info: runningInfo(7) });
    const { sandbox, views } = controller(node);
    expect(await sandbox.start()).toMatchObject({ state: 'running', ownedByApp: false, nodeName: 'fake@localhost' });
    expect(views.map((view) => view.state)).toEqual(['running']);
  });

  it('goes starting, then running and owned, with the start-up warnings, when it starts the node itself', async () => {
    const journal = new Journal();
    const { sandbox, views } = controller(new FakeNode(journal));
    const view = await sandbox.start();
    expect(journal.entries).toEqual(['node.start']);
    expect(views.map((shown) => shown.state)).toEqual(['starting', 'running']);
    expect(view).toMatchObject({ state: 'running', ownedByApp: true, warnings: ['port 5672 was taken'] });
    expect(sandbox.profile()).toMatchObject({ name: 'Sandbox broker', amqpUrl: 'amqp://guest:guest@127.0.0.1:1', exchange: 'amq.direct' });
  });

  it('counts a start still running as the app\'s own: a stop meanwhile waits for it, then stops the node (a quit during start-up leaves nothing behind)', async () => {
    const journal = new Journal();
    const node = new FakeNode(journal);
    let finishStart: () => void = () => undefined;
    const start = node.start.bind(node);
    node.start = () => new Promise((resolve) => (finishStart = () => resolve(start())));
    const { sandbox } = controller(node);
    const starting = sandbox.start();
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(sandbox.view.state).toBe('starting');
    expect(sandbox.owned).toBe(true);
    const stopping = sandbox.stop();
    finishStart();
    await starting;
    expect(await stopping).toMatchObject({ stopped: true });
    expect(journal.entries).toEqual(['node.start', 'node.stop']);
    expect(sandbox.owned).toBe(false);
  });

  it('shows failed with the reason, and rethrows it, when the node cannot start', async () => {
    const node = new FakeNode();
    node.failStart = new Error('rabbitmq-server is not installed');
    const { sandbox } = controller(node);
    await expect(sandbox.start()).rejects.toThrow('rabbitmq-server is not installed');
    expect(sandbox.view).toEqual({ state: 'failed', message: 'rabbitmq-server is not installed' });
    expect(sandbox.profile()).toBeUndefined();
  });

  it('says the node was stopped outside the app when a check finds it gone, dropping the start-up warnings', async () => {
    const { sandbox } = controller(new FakeNode());
    await sandbox.start();
    await sandbox.check();
    expect(sandbox.view.state).toBe('stopped');
    expect(sandbox.view.message).toMatch(/stopped outside the app/);
    expect(sandbox.view.warnings).toBeUndefined();
    // The URLs stay, so the user can start it again and reconnect.
    expect(sandbox.profile()).toBeDefined();
  });

  it('no longer owns a node someone restarted outside the app (another pid)', async () => {
    const node = new FakeNode();
    const { sandbox } = controller(node);
    await sandbox.start();
    node.statusAnswers.push({ state: 'running', info: runningInfo(node.pid + 1) });
    await sandbox.check();
    expect(sandbox.view).toMatchObject({ state: 'running', ownedByApp: false });
    expect(sandbox.replaced).toBe(true);
    expect(sandbox.owned).toBe(false);
  });

  it('does not take a node started after its own stop for one that replaced its own', async () => {
    const node = new FakeNode();
    const { sandbox } = controller(node);
    await sandbox.start();
    await sandbox.stop();
    node.statusAnswers.push({ state: 'running', info: runningInfo(node.pid + 1) });
    await sandbox.start();
    expect(sandbox.replaced).toBe(false);
  });

  it('tells a node alive but not answering (unreachable) from one that is gone', async () => {
    const node = new FakeNode();
    const { sandbox } = controller(node);
    await sandbox.start();
    node.statusAnswers.push({ state: 'stale', dir: '/tmp/fake', info: runningInfo(node.pid), reason: 'the node is alive but not answering' });
    await sandbox.check();
    expect(sandbox.view).toMatchObject({ state: 'unreachable', message: 'The sandbox broker: the node is alive but not answering.' });
  });

  it('says a node whose process went while its record is still there (a stop caught half way) is not running, as a stopped one', async () => {
    const node = new FakeNode();
    const { sandbox } = controller(node);
    await sandbox.start();
    node.statusAnswers.push({ state: 'stale', dir: '/tmp/fake', info: runningInfo(node.pid), reason: `node n@localhost (pid ${node.pid}) is no longer running` });
    await sandbox.check();
    expect(sandbox.view).toMatchObject({
      state: 'stopped',
      message: `The sandbox broker is not running (node n@localhost (pid ${node.pid}) is no longer running); start it again to reconnect.`,
    });
  });

  it('runs one check at a time: checks asked meanwhile make one more pass, not one each', async () => {
    const node = new FakeNode();
    const { sandbox } = controller(node);
    await sandbox.start();
    node.statusAnswers.push({ state: 'running', info: runningInfo(node.pid) }, { state: 'running', info: runningInfo(node.pid) });
    const before = node.statusCalls;
    await Promise.all([sandbox.check(), sandbox.check(), sandbox.check()]);
    expect(node.statusCalls - before).toBe(2);
  });

  it('never checks a node it has not seen running', async () => {
    const node = new FakeNode();
    const { sandbox } = controller(node);
    await sandbox.check();
    expect(node.statusCalls).toBe(0);
  });
});
