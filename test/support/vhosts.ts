/** A vhost of a test's own on the run's broker: tracing is per vhost, and other test files trace "/" at the same time. */
import type { SandboxInfo } from '../../src/core/broker/sandbox';
import { ManagementApi } from '../../src/core/broker/management-api';
import { managementRequest } from '../../src/core/broker/management-http';
import { uniqueName } from './names';

export interface TestVhost {
  name: string;
  api: ManagementApi;
  amqpUrl: string;
  managementUrl: string;
  /** deletes the vhost (and everything in it) */
  remove(): Promise<void>;
}

/** Creates a vhost named `prefix-<random>` that guest may use fully. */
export async function createTestVhost(urls: SandboxInfo['urls'], prefix: string): Promise<TestVhost> {
  const name = uniqueName(prefix);
  const path = encodeURIComponent(name);
  await managementRequest(urls.management, `/api/vhosts/${path}`, { method: 'PUT', body: {} });
  await managementRequest(urls.management, `/api/permissions/${path}/guest`, { method: 'PUT', body: { configure: '.*', write: '.*', read: '.*' } });
  return {
    name,
    api: new ManagementApi(urls.management, name),
    amqpUrl: `${urls.amqp}/${path}`,
    managementUrl: urls.management,
    remove: () => managementRequest(urls.management, `/api/vhosts/${path}`, { method: 'DELETE' }).then(() => undefined),
  };
}
