import { hostname } from 'node:os';
import type { RelayOptions } from '../config/defaults.js';
import { UsageError } from '../errors.js';
import { joinHostPort, splitHostPort } from '../protocol/addresses.js';
// Types only: the fleet's code (and etcd's client) is loaded only in fleet mode.
import type { EtcdTls } from '../fleet/etcd-client.js';
import type { FleetPlan } from '../fleet/fleet.js';
import { fileArg, portArg } from './common.js';

/** The fleet flags as the command line gave them. */
export interface FleetArgs {
  etcd: string;
  node?: string | undefined;
  advertise?: string | undefined;
  etcdPrefix: string;
  etcdCa?: string | undefined;
  etcdCert?: string | undefined;
  etcdKey?: string | undefined;
}

/** Checks the fleet flags against the relay's options; a UsageError names what is wrong. */
export function planFleet(args: FleetArgs, options: RelayOptions): FleetPlan {
  if (options.ports === undefined) throw new UsageError('a fleet (--etcd) needs an explicit --ports A-B, the same on every node');
  if (options.publicHost === undefined) throw new UsageError('a fleet (--etcd) needs --public-host, the address users are given, the same on every node');
  const endpoints = args.etcd.split(',').map((text) => {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new UsageError(`--etcd must be a comma-separated list of http:// or https:// URLs, got "${text}"`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--etcd URLs must be http:// or https://, got "${text}"`);
    return url;
  });
  if ((args.etcdCert === undefined) !== (args.etcdKey === undefined)) throw new UsageError('--etcd-cert and --etcd-key go together');
  const tls: EtcdTls = {};
  if (args.etcdCa !== undefined) tls.ca = fileArg('--etcd-ca', args.etcdCa);
  if (args.etcdCert !== undefined) tls.cert = fileArg('--etcd-cert', args.etcdCert);
  if (args.etcdKey !== undefined) tls.key = fileArg('--etcd-key', args.etcdKey);
  if (!/^\/[\x21-\x7e]*\/$/.test(args.etcdPrefix)) throw new UsageError(`--etcd-prefix must start and end with "/", got "${args.etcdPrefix}"`);
  let advertise: { host: string; port: number };
  if (args.advertise !== undefined) {
    const parsed = splitHostPort(args.advertise);
    if (parsed === undefined) throw new UsageError(`--advertise must be HOST:PORT, got "${args.advertise}"`);
    advertise = { host: parsed.host, port: portArg('--advertise port', parsed.port) };
  } else {
    if (options.port === 0) throw new UsageError('a fleet node on PORT 0 needs --advertise HOST:PORT');
    const host = options.bind === undefined || options.bind === '0.0.0.0' || options.bind === '::' ? hostname() : options.bind;
    advertise = { host, port: options.port };
  }
  const node = args.node ?? joinHostPort(advertise.host, advertise.port);
  if (!/^[\x21-\x7e]{1,128}$/.test(node)) throw new UsageError(`--node must be 1 to 128 printable characters without spaces, got "${node}"`);
  return { endpoints, tls, prefix: args.etcdPrefix, node, advertise };
}
