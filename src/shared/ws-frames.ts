/** The frames of browser mode's WebSocket, as the host (src/host) and the page's client (renderer) exchange them: defined once. */
import type { CommandArgs, CommandName, EventName, Events, InvokeReply } from './contract';
import type { ErrorShape } from './errors';

/** Where the host serves the contract socket (with `?token=`). */
export const WS_PATH = '/ws';

/** page -> host: run one command; the answer is the reply frame with the same id. */
export interface InvokeFrame<K extends CommandName = CommandName> {
  type: 'invoke';
  id: number;
  command: K;
  args: CommandArgs<K>;
}

/** An invoke as the host reads it off the socket: the command name and its args are still to be checked against the contract. */
export interface ReceivedInvokeFrame {
  type: 'invoke';
  id: number;
  command: string;
  args: unknown;
}

/** host -> page: the answer to one invoke, a result or an error shape. */
export type ReplyFrame<K extends CommandName = CommandName> = { type: 'reply'; id: number } & InvokeReply<K>;

/** host -> page: one event of the contract. */
export interface EventFrameOf<E extends EventName> {
  type: 'event';
  name: E;
  payload: Events[E];
}

/** Any event frame; narrowing on `name` gives its payload type. */
export type EventFrame = { [E in EventName]: EventFrameOf<E> }[EventName];

/** host -> page: a frame the host could not take as an invoke and could not answer by id (binary, not JSON, no id). */
export interface ErrorFrame {
  type: 'error';
  error: ErrorShape;
}

/** Everything the host sends. */
export type HostFrame = ReplyFrame | EventFrame | ErrorFrame;
