/**
 * The `ssh -R` path of the WAN bench: an sshd of its own on the relay host (a host key
 * and a user key made for this run in a temporary directory, its own config, no PAM,
 * GatewayPorts so the client host can reach the forwarded port), and `ssh -N -R` from
 * the service host to the echo server there. The directory is removed on exit.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { findProgram } from '../paths.js';
import { startProcess, type Proc } from '../procs.js';
import { ADDRESS, waitListening, type Network } from './network.js';

export const SSHD_PORT = 2222;

export interface SshPrograms {
  sshd: string;
  ssh: string;
  keygen: string;
}

/** The three programs, or what to install. */
export function sshPrograms(): SshPrograms | { missing: string } {
  const sshd = findProgram('sshd');
  const ssh = findProgram('ssh');
  const keygen = findProgram('ssh-keygen');
  if (sshd === undefined) return { missing: 'sshd is not installed (apt-get install openssh-server)' };
  if (ssh === undefined || keygen === undefined) return { missing: 'ssh is not installed (apt-get install openssh-client)' };
  return { sshd, ssh, keygen };
}

function sshdConfig(dir: string): string {
  return [
    `Port ${SSHD_PORT}`,
    'ListenAddress 0.0.0.0',
    `HostKey ${path.join(dir, 'host_ed25519')}`,
    `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
    // The temporary directory is not a home directory: skip the ownership checks on it.
    'StrictModes no',
    'PidFile none',
    'UsePAM no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'AllowTcpForwarding remote',
    'GatewayPorts yes',
    'LogLevel ERROR',
    '',
  ].join('\n');
}

/**
 * Starts sshd on the relay host and the tunnel from the service host, forwarding the
 * relay host's `port` to the service host's 127.0.0.1:`target`; resolves once sshd
 * listens on `port` for it. Both processes go into `procs` as soon as they exist.
 */
export async function startSshTunnel(net: Network, programs: SshPrograms, port: number, target: number, procs: Proc[]): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), `bench-wan-ssh-${process.pid}-`));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  for (const key of ['host_ed25519', 'user_ed25519']) execFileSync(programs.keygen, ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench-wan', '-f', path.join(dir, key)], { stdio: 'ignore' });
  execFileSync('cp', [path.join(dir, 'user_ed25519.pub'), path.join(dir, 'authorized_keys')]);
  const config = path.join(dir, 'sshd_config');
  writeFileSync(config, sshdConfig(dir));
  // sshd insists on its privilege-separation directory /run/sshd: give it one in a
  // private mount namespace, so nothing of the host's /run is created or changed.
  const script = 'mount -t tmpfs tmpfs /run && mkdir -m 755 /run/sshd && exec "$0" -D -e -f "$1"';
  const sshd = startProcess('sshd', ...net.on('relay', 'unshare', ['--mount', 'sh', '-c', script, programs.sshd, config]));
  procs.push(sshd);
  await waitListening(net, 'relay', SSHD_PORT, sshd);
  const client = startProcess(
    'ssh -R',
    ...net.on('service', programs.ssh, [
      '-N',
      '-F',
      '/dev/null',
      '-i',
      path.join(dir, 'user_ed25519'),
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'ExitOnForwardFailure=yes',
      '-o',
      'LogLevel=ERROR',
      '-p',
      String(SSHD_PORT),
      '-R',
      `0.0.0.0:${port}:127.0.0.1:${target}`,
      `${userInfo().username}@${ADDRESS.relayBack}`,
    ]),
  );
  procs.push(client);
  await waitListening(net, 'relay', port, client);
}
