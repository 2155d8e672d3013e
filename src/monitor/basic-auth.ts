import { createHash, timingSafeEqual } from 'node:crypto';

/** `USER:PASS` for HTTP basic auth; the password never goes to a log. */
export interface BasicCredentials {
  user: string;
  password: string;
}

/** `USER:PASS` as typed on the command line, or undefined when it is not of that form. */
export function parseCredentials(text: string): BasicCredentials | undefined {
  const colon = text.indexOf(':');
  if (colon <= 0 || colon === text.length - 1) return undefined;
  return { user: text.slice(0, colon), password: text.slice(colon + 1) };
}

const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/**
 * Whether an Authorization header carries exactly these credentials. Both sides are
 * hashed first so the comparison takes the same time whatever was sent, its length
 * included.
 */
export function authorized(header: string | undefined, expected: BasicCredentials): boolean {
  const match = /^Basic +([A-Za-z0-9+/=]{1,1024})$/i.exec(header ?? '');
  const given = match === null ? '' : Buffer.from(match[1]!, 'base64').toString('utf8');
  const ok = timingSafeEqual(digest(given), digest(`${expected.user}:${expected.password}`));
  return ok && match !== null;
}
