import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { attemptFailure, type AttemptRecord } from '../../src/client/attempt-failure.js';
import { addressesToRegister, FleetMembers } from '../../src/client/fleet-members.js';
import { silentLogger } from '../../src/log.js';
import type { PublicAddress, RelayClientOptions } from '../../src/client/options.js';

const PLAIN = { host: 'relay.example.com', port: 8080, tls: false };
const TLS = { ...PLAIN, tls: true };

function record(fields: Partial<AttemptRecord>): AttemptRecord {
  return { error: undefined, firstBytes: undefined, badFirstLine: false, endedHere: false, ...fields };
}

function errno(code: string, message: string, syscall?: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code, ...(syscall === undefined ? {} : { syscall }) });
}

test('settings: a peer whose first line is no relay message is not a relay, named by what it answered', () => {
  const failure = attemptFailure(record({ badFirstLine: true, endedHere: true, firstBytes: Buffer.from('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n') }), PLAIN);
  assert.equal(failure.kind, 'wrong-settings');
  assert.ok(failure.kind === 'wrong-settings');
  assert.equal(failure.error.code, 'not-a-relay');
  assert.equal(failure.error.message, `relay.example.com:8080 is not a relay's control port: it answered "HTTP/1.1 400 Bad Request"`);
  const binary = attemptFailure(record({ badFirstLine: true, endedHere: true, firstBytes: Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02]) }), PLAIN);
  assert.ok(binary.kind === 'wrong-settings' && binary.error.message.endsWith('"\\x15\\x03\\x03\\x00\\x02"'));
});

test('settings: a relay-shaped first line that does not parse (an unknown ERR code, a malformed OK) is a protocol error, retried, not "not a relay"', () => {
  for (const line of ['ERR code-from-a-newer-relay something went wrong\n', 'OK host=relay.example.com\r\n', 'AUTH', 'PING now\n']) {
    const failure = attemptFailure(record({ badFirstLine: true, endedHere: true, firstBytes: Buffer.from(line) }), PLAIN);
    assert.equal(failure.kind, 'other', JSON.stringify(line));
  }
  for (const line of ['SSH-2.0-OpenSSH_9.6\r\n', 'HELLO 1\n', 'GET / HTTP/1.1\r\n', 'OKAY\n', 'ERR\x00 x\n']) {
    const failure = attemptFailure(record({ badFirstLine: true, endedHere: true, firstBytes: Buffer.from(line) }), PLAIN);
    assert.ok(failure.kind === 'wrong-settings' && failure.error.code === 'not-a-relay', JSON.stringify(line));
  }
});

test('settings: a certificate that fails verification names the reason and the flag that fixes it', () => {
  const cases: [string, string, RegExp][] = [
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'self-signed certificate', /\(DEPTH_ZERO_SELF_SIGNED_CERT: self-signed certificate\): give the CA that signed it with --ca FILE$/],
    ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'unable to verify the first certificate', /--ca FILE$/],
    ['ERR_TLS_CERT_ALTNAME_INVALID', "Hostname/IP does not match certificate's altnames", /is not for "relay.example.com" .*use a RELAYHOST the certificate names$/],
    ['CERT_HAS_EXPIRED', 'certificate has expired', /out of date .*must renew it/],
  ];
  for (const [code, message, expected] of cases) {
    const failure = attemptFailure(record({ error: errno(code, message) }), TLS);
    assert.ok(failure.kind === 'wrong-settings', code);
    assert.equal(failure.error.code, 'tls');
    assert.match(failure.error.message, expected);
  }
});

test('settings: TLS to a peer that answers in plain text says to leave out --tls; a plain HELLO dropped in silence hints at --tls', () => {
  const wrongVersion = errno('EPROTO', 'write EPROTO 80ACA215917F0000:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:');
  const failure = attemptFailure(record({ error: wrongVersion }), TLS);
  assert.ok(failure.kind === 'wrong-settings' && failure.error.code === 'tls');
  assert.match(failure.error.message, /does not speak TLS .*leave out --tls/);
  assert.deepEqual(attemptFailure(record({}), PLAIN), { kind: 'other', hint: 'no reply to HELLO; the relay may expect TLS (--tls)' });
  assert.deepEqual(attemptFailure(record({ error: errno('ECONNRESET', 'read ECONNRESET') }), PLAIN), { kind: 'other', hint: 'no reply to HELLO; the relay may expect TLS (--tls)' });
  // Not when this side gave up (a timeout), nor when TLS is on already, nor for a refused connect.
  assert.deepEqual(attemptFailure(record({ endedHere: true }), PLAIN), { kind: 'other' });
  assert.deepEqual(attemptFailure(record({}), TLS), { kind: 'other' });
  assert.deepEqual(attemptFailure(record({ error: errno('ECONNREFUSED', 'connect ECONNREFUSED') }), PLAIN), { kind: 'other' });
});

test('settings: a name that does not resolve is retried, whatever the resolver said', () => {
  for (const code of ['ENOTFOUND', 'EAI_AGAIN']) {
    assert.deepEqual(attemptFailure(record({ error: errno(code, `getaddrinfo ${code} relay.example.com`, 'getaddrinfo') }), TLS), { kind: 'unresolved' });
  }
});

test('fleet addresses: a dual-stack name is one node, a round-robin name one per address, a listed name one node', () => {
  const none = (): boolean => false;
  assert.deepEqual(addressesToRegister(['127.0.0.1', '::1'], false, none), ['127.0.0.1']);
  assert.deepEqual(addressesToRegister(['::1', '127.0.0.1'], false, none), ['::1']);
  assert.deepEqual(addressesToRegister(['10.0.0.1', '10.0.0.2', '2001:db8::1', '10.0.0.3'], false, none), ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
  assert.deepEqual(
    addressesToRegister(['10.0.0.1', '10.0.0.2'], false, (address) => address === '10.0.0.1'),
    ['10.0.0.2'],
  );
  // From nodes=: one node, skipped when any of its addresses is registered already (the owner reached it over IPv6, say).
  assert.deepEqual(
    addressesToRegister(['127.0.0.1', '::1'], true, (address) => address === '::1'),
    [],
  );
  assert.deepEqual(addressesToRegister(['127.0.0.1', '::1'], true, none), ['127.0.0.1']);
  assert.deepEqual(addressesToRegister([], true, none), []);
});

class FakeMember extends EventEmitter {
  publicAddress: PublicAddress | undefined = undefined;
  /** What a pool member was told, in order. */
  readonly told: string[] = [];
  close(): void {}
  drain(): Promise<void> {
    this.told.push('drain');
    return Promise.resolve();
  }
  setHealth(state: 'up' | 'down'): void {
    this.told.push(state);
  }
}

test('fleet members: a name resolving to both families of one relay gets one registration, not two that supersede each other', async () => {
  const made: string[] = [];
  const resolve = async (host: string): Promise<string[]> => (host === 'dual.test' ? ['127.0.0.1', '::1'] : ['::1', '127.0.0.1']);
  const base = { host: 'dual.test', port: 7000, resumeKey: '0'.repeat(32) };
  const events = { established: () => {}, unauthenticated: () => {}, failed: () => {} };
  const fleet = new FleetMembers(base, (options: RelayClientOptions) => (made.push(`${options.host} ${options.port}`), new FakeMember()), silentLogger, events, resolve);
  await fleet.add(['dual.test', 'other.test:7001'], false);
  assert.deepEqual(made, ['127.0.0.1 7000', '::1 7001']);
  // The nodes= of an OK name them again, by other names: nothing more.
  await fleet.add(['dual.test:7000', 'other.test:7001'], true);
  assert.deepEqual(made, ['127.0.0.1 7000', '::1 7001']);
  fleet.close(false);
});

test("fleet members: the owner's own connection, reached as IPv4-mapped IPv6, gets no second member for its IPv4 address", async () => {
  const made: string[] = [];
  const base = { host: 'a.test', port: 7000, resumeKey: '0'.repeat(32) };
  const events = { established: () => {}, unauthenticated: () => {}, failed: () => {} };
  const fleet = new FleetMembers(
    base,
    (options: RelayClientOptions) => (made.push(`${options.host} ${options.port}`), new FakeMember()),
    silentLogger,
    events,
    async () => ['10.0.0.1'],
  );
  fleet.markOwn('::ffff:10.0.0.1', 7000);
  await fleet.add(['a.test', '10.0.0.2:7000'], false);
  assert.deepEqual(made, ['10.0.0.2 7000']);
  fleet.close(false);
});

test('fleet members: the address is news at a registration while no other member is up, not once per node', async () => {
  const members: FakeMember[] = [];
  const seen: boolean[] = [];
  const events = { established: (_address: unknown, othersUp: boolean) => seen.push(othersUp), unauthenticated: () => {}, failed: () => {} };
  const base = { host: 'a.test', port: 7000, resumeKey: '0'.repeat(32) };
  const fleet = new FleetMembers(
    base,
    () => {
      const member = new FakeMember();
      members.push(member);
      return member;
    },
    silentLogger,
    events,
    async (host) => [host === 'a.test' ? '10.0.0.1' : '10.0.0.2'],
  );
  await fleet.add(['a.test', 'b.test'], false);
  const address = { host: 'relay.test', port: 9001, address: 'relay.test:9001' };
  const up = (member: FakeMember, registered: boolean): void => {
    (member as FakeMember).publicAddress = registered ? address : undefined;
    if (registered) member.emit('established', address);
  };
  up(members[0]!, true);
  up(members[1]!, true);
  assert.deepEqual(seen, [false, true]);
  // Both lost, then one is back: reachable again, news again.
  up(members[0]!, false);
  up(members[1]!, false);
  up(members[1]!, true);
  assert.deepEqual(seen, [false, true, false]);
  fleet.close(false);
});
