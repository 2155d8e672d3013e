/**
 * Every error this package creates on purpose. Each has a fixed `name` and a stable
 * `code`, so callers branch on the code, never on the message.
 */
export type RelayErrorCode =
  /** A mistake on the command line or in options. */
  | 'usage'
  /** The relay refused the service for good (see RegistrationRefusedError). */
  | RefusalCode
  /** The registration was closed (by close()) before what was asked of it happened. */
  | 'closed'
  /** No file descriptor was left for a listen (internal: stops a port search). */
  | 'fds'
  /** A relay worker exited, or was too slow, at a step the master waited for (internal). */
  | 'worker';

/**
 * Why a service stops for good: the relay refused it (`auth`, `version`, `superseded`), or,
 * before any registration worked, what answered is no relay (`not-a-relay`) or TLS cannot
 * work with it (`tls`: a certificate that fails verification, or a relay without TLS), or
 * a name was asked of a relay that gives none (`no-names`: its OK lacks `feat=name`), or
 * the relay will not give the name asked for (`name`: ERR bad-name, such as no names
 * port, a name outside the tenant's patterns), or a pool member, or a service with
 * allow/deny lists, reached a relay too old for them (`pool`, `acl`).
 */
export type RefusalCode = 'auth' | 'version' | 'superseded' | 'not-a-relay' | 'tls' | 'no-names' | 'name' | 'pool' | 'acl';

export class RelayError extends Error {
  readonly code: RelayErrorCode;

  constructor(code: RelayErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RelayError';
    this.code = code;
  }
}

/** A mistake on the command line or in options: shown as one line, exit code 2. */
export class UsageError extends RelayError {
  constructor(message: string, options?: ErrorOptions) {
    super('usage', message, options);
    this.name = 'UsageError';
  }
}

/**
 * The relay refused the service for good: wrong or missing secret, a protocol version
 * it does not speak, or another process took over its resume key (`superseded`); or the
 * settings can never work: the host and port reach something that is not a relay
 * (`not-a-relay`), or TLS fails there (`tls`), or it does not know pools (`pool`).
 * Retrying cannot help, so the library stops.
 */
export class RegistrationRefusedError extends RelayError {
  declare readonly code: RefusalCode;

  constructor(code: RefusalCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = 'RegistrationRefusedError';
  }
}

/** A public listen found no file descriptor: thrown to stop a port search (see leases/claim-port.ts). */
export class OutOfFdsError extends RelayError {
  constructor() {
    super('fds', 'out of file descriptors');
    this.name = 'OutOfFdsError';
  }
}

/** A relay worker exited or was too slow; the master exits with `exitCode` when it gives up. */
export class WorkerFailedError extends RelayError {
  readonly exitCode: number;

  constructor(message: string, exitCode: number) {
    super('worker', message);
    this.name = 'WorkerFailedError';
    this.exitCode = exitCode;
  }
}
