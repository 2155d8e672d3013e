/**
 * An 'error' listener for a socket whose errors are reported elsewhere (the splice
 * logs how each tunnel ended) but which must never crash the process for want of a
 * listener. One shared function: a per-socket closure would cost memory per tunnel.
 */
export function ignoreSocketError(): void {}
