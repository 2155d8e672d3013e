import { isIPv4, isIPv6 } from 'node:net';
import { ipv6Groups } from './addresses.js';

/**
 * PROXY protocol headers (HAProxy's specification, versions 1 and 2), so that a server
 * behind ./expose that understands them (nginx, haproxy, postfix, ...) sees the public
 * client's address instead of the local forwarder's.
 */

interface ProxiedConnection {
  clientAddress: string;
  clientPort: number;
  serverAddress: string;
  serverPort: number;
}

type ProxyVersion = 'v1' | 'v2';

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_PROXY_COMMAND = 0x21; // version 2, command PROXY
const V2_TCP4 = 0x11;
const V2_TCP6 = 0x21;
const V2_UNSPEC = 0x00;

/** Both ends in the same family, or undefined when they cannot be expressed together. */
function familyOf(connection: ProxiedConnection): 4 | 6 | undefined {
  if (isIPv4(connection.clientAddress) && isIPv4(connection.serverAddress)) return 4;
  if (isIPv6(connection.clientAddress) && isIPv6(connection.serverAddress)) return 6;
  return undefined;
}

export function proxyHeaderV1(connection: ProxiedConnection): Buffer {
  const family = familyOf(connection);
  if (family === undefined) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const { clientAddress, serverAddress, clientPort, serverPort } = connection;
  return Buffer.from(`PROXY TCP${family} ${clientAddress} ${serverAddress} ${clientPort} ${serverPort}\r\n`, 'latin1');
}

export function proxyHeaderV2(connection: ProxiedConnection): Buffer {
  const family = familyOf(connection);
  const addresses =
    family === 4
      ? Buffer.concat([ipv4Bytes(connection.clientAddress), ipv4Bytes(connection.serverAddress)])
      : family === 6
        ? Buffer.concat([ipv6Bytes(connection.clientAddress), ipv6Bytes(connection.serverAddress)])
        : Buffer.alloc(0);
  const ports = Buffer.alloc(family === undefined ? 0 : 4);
  if (family !== undefined) {
    ports.writeUInt16BE(connection.clientPort, 0);
    ports.writeUInt16BE(connection.serverPort, 2);
  }
  const head = Buffer.alloc(4);
  head[0] = V2_PROXY_COMMAND;
  head[1] = family === 4 ? V2_TCP4 : family === 6 ? V2_TCP6 : V2_UNSPEC;
  head.writeUInt16BE(addresses.length + ports.length, 2);
  return Buffer.concat([V2_SIGNATURE, head, addresses, ports]);
}

export function proxyHeader(version: ProxyVersion, connection: ProxiedConnection): Buffer {
  return version === 'v1' ? proxyHeaderV1(connection) : proxyHeaderV2(connection);
}

function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map(Number));
}

/** 16 bytes of an IPv6 literal in any spelling ipv6Groups reads; a `%zone` is dropped. */
export function ipv6Bytes(address: string): Buffer {
  const groups = ipv6Groups(address);
  // familyOf let only IPv6 literals this far.
  if (groups === undefined) throw new RangeError(`not an IPv6 address: ${address}`);
  const bytes = Buffer.alloc(16);
  groups.forEach((group, i) => bytes.writeUInt16BE(group, i * 2));
  return bytes;
}
