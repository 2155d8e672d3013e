import type { Socket } from 'node:net';
import type { LeaseRecord, Place } from '../leases/lease-store.js';
import type { RelayStats } from '../monitor/stats.js';
import type { ProxiedEnds } from '../protocol/proxy-parse.js';
import type { PassDialBack } from './data-connections.js';

/** What a worker's relay offers its master link for an upgrade and a stop (see upgrade/worker-link.ts). */
export interface UpgradeSide {
  /** Its counters: the start time and the figures a predecessor carries over are set here. */
  readonly stats: RelayStats;
  readonly controlPort: number;
  readonly dataPort: number;
  leaseSnapshot(): LeaseRecord[];
  /** Reserves those ports for their keys (and holds their doors open) in this relay. */
  installLeases(records: LeaseRecord[]): Promise<void>;
  /** Stops writing the state file (after a last write) until resumeStateWrites(). */
  pauseStateWrites(): Promise<void>;
  resumeStateWrites(): void;
  /**
   * Stops accepting, asks every service to register again (with the successor), hands
   * every public client it is holding to handOff, and resolves once its open tunnels
   * have ended or drainMs has passed.
   */
  retire(handOff: (port: Place, client: Socket) => void, drainMs?: number): Promise<void>;
  /** A held public client from the predecessor: serve it when its service registers. */
  /** `proxied`: what a trusted balancer's PROXY header said of the client, in the predecessor. */
  adoptHeldClient(port: Place, client: Socket, proxied: ProxiedEnds | undefined): void;
  /** Consulted for a DATA token this relay does not know; true when it took the socket. */
  passDialBack: PassDialBack | undefined;
  /** A DATA connection the successor received for one of this relay's tokens. */
  acceptDialBack(socket: Socket, token: string, head: Buffer): void;
  /** A pool member's control connection another worker passed on: `head` is what it read, the HELLO line first. */
  acceptMember(socket: Socket, head: Buffer): void;
  shutdown(drainMs?: number): Promise<void>;
  /** Resets every public client (held, waiting or spliced); resolves once every tunnel has its access-log line. */
  cutEverything(): Promise<void>;
  /** SIGHUP: reads the tenants file and the TLS certificate again; a logged no-op without either. */
  reload(): void;
}
