/**
 * Every error this package creates on purpose. Each has a fixed `name` and a stable
 * `code`, so callers branch on the code, never on the message.
 */
export class RelayError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: ErrorOptions) {
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
 * it does not speak, or another process took over its resume key (`superseded`).
 * Retrying cannot help, so the library stops.
 */
export class RegistrationRefusedError extends RelayError {
  constructor(code: 'auth' | 'version' | 'superseded', message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = 'RegistrationRefusedError';
  }
}
