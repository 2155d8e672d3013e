/**
 * The five paths of the WAN bench, each a forwarder on the relay host in front of an
 * echo server on the service host, reached by the client host at ADDRESS.relayFront:
 * haproxy and socat forward to benchtool's plain echo server, ./relay to ./echoserver
 * (without and with prewarmed connections), ssh -R to the same plain echo server.
 * Ports are fixed: the namespaces are this run's own.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { findProgram } from '../paths.js';
import { ROOT, startProcess, stopProcess, type Proc } from '../procs.js';
import { ADDRESS, waitListening, type Network } from './network.js';
import { sshPrograms, startSshTunnel } from './ssh.js';

export const WAN_PATHS = ['haproxy', 'relay', 'relay+auto', 'ssh -R', 'socat'] as const;
export type WanPathName = (typeof WAN_PATHS)[number];

export const WAN_LABELS: Record<WanPathName, string> = {
  haproxy: 'haproxy (relay host → service host)',
  relay: './relay + ./echoserver --prewarm 0',
  'relay+auto': './relay + ./echoserver --prewarm auto',
  'ssh -R': 'ssh -R through sshd on the relay host',
  socat: 'socat (relay host → service host)',
};

/** The plain echo server on the service host, behind haproxy, socat and ssh -R. */
export const ECHO_PORT = 9000;
const PORTS = { haproxy: 8000, socat: 8100, ssh: 8200, relay: 7000, relayAuto: 7100 } as const;

export interface WanPath {
  name: WanPathName;
  /** Where the client host connects, at ADDRESS.relayFront. */
  port: number;
  procs: Proc[];
}

export async function startEcho(net: Network, benchtool: string): Promise<Proc> {
  const echo = startProcess('echo server', ...net.on('service', benchtool, ['server', String(ECHO_PORT), '0.0.0.0', 'echo']), { env: { BENCHTOOL_ALARM_S: '0' } });
  await echo.waitLine(/"port":\d+/, 5000);
  return echo;
}

function haproxyConfig(): string {
  // haproxy as installed: no nbthread (one thread per core), default buffers.
  return [
    'global',
    '    maxconn 9000',
    'defaults',
    '    mode tcp',
    '    timeout connect 5s',
    '    timeout client 1h',
    '    timeout server 1h',
    'frontend wan',
    `    bind ${ADDRESS.relayFront}:${PORTS.haproxy}`,
    '    default_backend echo',
    'backend echo',
    `    server echo ${ADDRESS.service}:${ECHO_PORT}`,
    '',
  ].join('\n');
}

async function startHaproxy(net: Network, procs: Proc[]): Promise<number | string> {
  const haproxy = findProgram('haproxy');
  if (haproxy === undefined) return 'haproxy is not installed (apt-get install haproxy)';
  const dir = mkdtempSync(path.join(tmpdir(), `bench-wan-haproxy-${process.pid}-`));
  try {
    writeFileSync(path.join(dir, 'haproxy.cfg'), haproxyConfig());
    const proc = startProcess('haproxy', ...net.on('relay', haproxy, ['-db', '-f', path.join(dir, 'haproxy.cfg')]));
    procs.push(proc);
    await waitListening(net, 'relay', PORTS.haproxy, proc);
  } finally {
    rmSync(dir, { recursive: true, force: true }); // read once at start
  }
  return PORTS.haproxy;
}

async function startSocat(net: Network, procs: Proc[]): Promise<number | string> {
  const socat = findProgram('socat');
  if (socat === undefined) return 'socat is not installed (apt-get install socat)';
  // backlog=4096 as on loopback: socat's default of 5 would measure SYN drops.
  const listen = `TCP-LISTEN:${PORTS.socat},fork,reuseaddr,bind=${ADDRESS.relayFront},backlog=4096`;
  const proc = startProcess('socat', ...net.on('relay', socat, [listen, `TCP:${ADDRESS.service}:${ECHO_PORT}`]));
  procs.push(proc);
  await waitListening(net, 'relay', PORTS.socat, proc);
  return PORTS.socat;
}

/** ./relay with its default settings, and ./echoserver registered with it; the public port. */
async function startRelay(net: Network, relayPort: number, prewarm: '0' | 'auto', procs: Proc[]): Promise<number> {
  const relay = startProcess('relay', ...net.on('relay', path.join(ROOT, 'relay'), [String(relayPort), '--log-level', 'warn']));
  procs.push(relay);
  await waitListening(net, 'relay', relayPort, relay);
  const echo = startProcess(
    `echoserver --prewarm ${prewarm}`,
    ...net.on('service', path.join(ROOT, 'echoserver'), [ADDRESS.relayBack, String(relayPort), '--prewarm', prewarm, '--log-level', 'warn']),
  );
  procs.push(echo);
  const line = await echo.waitLine(/^established relay address: .+:(\d+)$/, 15_000);
  return Number(line[1]);
}

/** Starts one path, or says why it is skipped. */
export async function startWanPath(name: WanPathName, net: Network): Promise<WanPath | { skipped: string }> {
  const procs: Proc[] = [];
  try {
    let port: number | string;
    if (name === 'haproxy') port = await startHaproxy(net, procs);
    else if (name === 'socat') port = await startSocat(net, procs);
    else if (name === 'relay') port = await startRelay(net, PORTS.relay, '0', procs);
    else if (name === 'relay+auto') port = await startRelay(net, PORTS.relayAuto, 'auto', procs);
    else {
      const programs = sshPrograms();
      if ('missing' in programs) return { skipped: programs.missing };
      await startSshTunnel(net, programs, PORTS.ssh, ECHO_PORT, procs);
      port = PORTS.ssh;
    }
    if (typeof port === 'string') return { skipped: port };
    return { name, port, procs };
  } catch (err) {
    await stopWanPath({ name, port: 0, procs });
    throw err;
  }
}

export async function stopWanPath(p: WanPath): Promise<void> {
  for (const proc of [...p.procs].reverse()) await stopProcess(proc);
}

/** What ./echoserver does without --prewarm, read from its --help: '0', 'auto', or a number. */
export function echoserverPrewarmDefault(): string {
  try {
    const help = execFileSync(path.join(ROOT, 'echoserver'), ['--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    // The option's own text: from its name to the next option.
    const own = /\n\s*--prewarm\b([\s\S]*?)(?=\n\s*-|$)/.exec(help)?.[1] ?? '';
    return /\[default: "?([^"\]]+?)"?\]/.exec(own)?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
