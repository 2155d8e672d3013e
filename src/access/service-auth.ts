import type { Socket } from 'node:net';
import { sendMessage, type FirstLine } from '../net/lines.js';
import { newNonce, verifyProof } from '../protocol/auth.js';
import type { ErrorCode } from '../protocol/messages.js';
import type { Tenancy, TenantGrant } from './tenancy.js';

/** How a challenge ended: the bytes after PROOF and what it proved, or why it was refused ('closed': silently). */
type ChallengeResult = { ok: true; rest: Buffer; grant: TenantGrant | undefined } | { ok: false; code: ErrorCode | 'closed'; reason: string };

/** Who may register: anyone (no secret, no tenants), holders of --secret, or the tenants of the file. */
interface Gate {
  secret: string | undefined;
  tenancy: Tenancy | undefined;
}

export function challenges(gate: Gate): boolean {
  // With tenants every service is challenged, whatever tenant (or none) it names.
  return gate.secret !== undefined || gate.tenancy !== undefined;
}

/**
 * AUTH with a fresh nonce, then the PROOF. With tenants the proof is checked against
 * the named tenant's secrets; an unknown tenant, no tenant and a wrong secret all get
 * the same refusal after the same exchange, so it never tells which names exist.
 */
export async function challenge(gate: Gate, tenant: string | undefined, socket: Socket, readLine: (socket: Socket, head: Buffer) => Promise<FirstLine>, head: Buffer): Promise<ChallengeResult> {
  const nonce = newNonce();
  sendMessage(socket, { kind: 'AUTH', nonce });
  const answer = await readLine(socket, head);
  if (!answer.ok) return { ok: false, code: answer.code, reason: answer.reason };
  const mac = answer.msg.kind === 'PROOF' ? answer.msg.mac : '';
  if (gate.tenancy === undefined) {
    if (verifyProof(gate.secret ?? '', nonce, mac)) return { ok: true, rest: answer.rest, grant: undefined };
    return { ok: false, code: 'auth', reason: 'authentication failed: wrong or missing secret' };
  }
  const grant = gate.tenancy.verify(tenant, nonce, mac);
  if (grant !== undefined) return { ok: true, rest: answer.rest, grant };
  return { ok: false, code: 'auth', reason: 'authentication failed: unknown tenant or wrong secret' };
}
