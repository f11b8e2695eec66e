/** The core's own workspace (history, templates, profiles file) in memory, answering a fake client as the session would. */
import type { CommandArgs, CommandName, CommandResult, EventName, Events, SendRequestArgs } from '../../src/shared/contract';
import type { RpcOutcome } from '../../src/shared/rpc';
import { memorySecretBox, ProfileStore } from '../../src/core/profiles';
import { WorkspaceController } from '../../src/core/session/workspace';
import { WorkspaceStore } from '../../src/core/workspace-file';
import { validateArgs } from '../../src/core/contract-schemas';

type Answers = { [K in CommandName]?: (args: CommandArgs<K>) => CommandResult<K> | Promise<CommandResult<K>> };

export function fakeWorkspace() {
  let emit: <E extends EventName>(name: E, payload: Events[E]) => void = () => undefined;
  const profiles = new ProfileStore(memorySecretBox());
  const controller = new WorkspaceController({ store: new WorkspaceStore(), profiles, emit: (name, payload) => emit(name, payload) });
  const handlers: Answers = {
    'workspace.history.list': ({ search, limit }) => controller.list(search, limit),
    'workspace.history.delete': ({ id }) => controller.delete(id),
    'workspace.history.clear': () => controller.clear(),
    'workspace.templates.list': () => controller.templates(),
    'workspace.template.save': ({ template }) => controller.saveTemplate(template),
    'workspace.template.rename': ({ from, to }) => controller.renameTemplate(from, to),
    'workspace.template.delete': ({ name }) => controller.deleteTemplate(name),
    'workspace.export.create': ({ includePasswords }) => controller.export(includePasswords),
    'workspace.import.load': ({ file }) => controller.import(file),
    'profile.list': () => profiles.list(),
    'profile.save': ({ profile }) => profiles.save(profile),
  };
  // Checked as dispatch checks them in the core: a request the core would refuse is refused here too.
  const answers = Object.fromEntries(
    Object.entries(handlers).map(([name, handler]) => [name, (args: unknown) => (handler as (args: unknown) => unknown)(validateArgs(name as CommandName, args))]),
  ) as Answers;
  return {
    controller,
    profiles,
    answers,
    /** events go to this client from now on */
    connect(client: { emit<E extends EventName>(name: E, payload: Events[E]): void }): void {
      emit = (name, payload) => client.emit(name, payload);
    },
    /** a send answer that records each settled send, as the core's session does */
    recording(send: (args: SendRequestArgs) => RpcOutcome | Promise<RpcOutcome>): (args: SendRequestArgs) => Promise<RpcOutcome> {
      return async (request) => {
        const at = Date.now();
        try {
          const outcome = await send(request);
          controller.record({ at, request, rpcId: outcome.id, outcome, replyTopic: outcome.replyTopic, ...(outcome.verdict ? { verdict: outcome.verdict } : {}) });
          return outcome;
        } catch (err) {
          const { rpcId, verdict } = err as { rpcId?: string; verdict?: never };
          controller.record({ at, request, error: (err as Error).message, ...(rpcId ? { rpcId } : {}), ...(verdict ? { verdict } : {}) });
          throw err;
        }
      };
    },
  };
}
