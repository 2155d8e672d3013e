import type { Socket } from 'node:net';

/** Whoever counts a public client against its limits while it has it (a session). */
interface ClientCounter {
  /** A client it counted closed, or went back to a door, and no longer counts. */
  clientGone(): void;
}

const kCountedBy = Symbol('counted by');
/** A public client, with the session that counts it while it is taken (none while it waits at a door). */
type CountedClient = Socket & { [kCountedBy]?: ClientCounter | undefined };

/**
 * One listener shared by every counted client, which finds its counter on the socket:
 * a closure per client would be kept for as long as its tunnel is open.
 */
function uncountClient(this: CountedClient): void {
  releaseCount(this);
}

/** Counts `client` for `counter` until it closes or releaseCount is called. */
export function countClient(client: Socket, counter: ClientCounter): void {
  const counted = client as CountedClient;
  // on, not once: 'close' comes once anyway, and once() would wrap the listener in a
  // new closure. A client that was counted before (and waited at a door since) has it.
  if (!(kCountedBy in counted)) client.on('close', uncountClient);
  counted[kCountedBy] = counter;
}

/** The client is no longer taken: by a session that counted it, because it closed or went back to a door. */
export function releaseCount(client: Socket): void {
  const counted = client as CountedClient;
  const counter = counted[kCountedBy];
  if (counter === undefined) return;
  counted[kCountedBy] = undefined;
  counter.clientGone();
}
