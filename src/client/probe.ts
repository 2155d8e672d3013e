import type { Logger } from '../log.js';
import { presentToken, refusalReason } from './dial-back.js';
import type { RelayEndpoint } from './transport.js';

/**
 * Answers the relay's end-to-end probes (PROBE, feature `probe`): dials back a data
 * connection with the probe's token exactly as for a client, so the same resolution,
 * firewall and TLS are tried, and expects PROBED. Nothing of it ever reaches the
 * application. Logs when the data path starts or stops working, not at every probe.
 */
export class ProbeAnswerer {
  readonly #log: Logger;
  readonly #timeoutMs: number;
  #failing = false;

  constructor(log: Logger, timeoutMs: number) {
    this.#log = log;
    this.#timeoutMs = timeoutMs;
  }

  answer(endpoint: RelayEndpoint | undefined, token: string): void {
    if (endpoint === undefined) return;
    presentToken(endpoint, { kind: 'DATA', token }, this.#timeoutMs).then(
      ({ socket, reply }) => {
        // Whatever came back, this connection carries no client: it ends here.
        socket.destroy();
        this.#result(reply.ok && reply.msg.kind === 'PROBED' ? undefined : refusalReason(reply));
      },
      (err: unknown) => this.#result(String(err)),
    );
  }

  #result(failure: string | undefined): void {
    if (failure === undefined) {
      if (this.#failing) this.#log.info('probe dial-back works again');
      this.#failing = false;
    } else if (!this.#failing) {
      this.#failing = true;
      this.#log.warn({ reason: failure }, "probe dial-back failed: this service cannot reach the relay's data port, so public clients cannot be served");
    }
  }
}
