import { joinHostPort } from './addresses.js';
import { MAX_LINE_BYTES, type Message } from './messages.js';

/** Message to line: the one spelling of each message that parse.ts reads back unchanged. */

/** Formats a message as one line, LF included. */
export function formatMessage(msg: Message): string {
  switch (msg.kind) {
    case 'HELLO':
      return formatHello(msg);
    case 'OK':
      return formatOk(msg);
    case 'AUTH':
      return `AUTH ${msg.nonce}\n`;
    case 'PROOF':
      return `PROOF ${msg.mac}\n`;
    case 'DATA':
    case 'IDLE':
    case 'PROBE':
    case 'DECLINE':
      return `${msg.kind} ${msg.token}\n`;
    case 'HEALTH':
      return `HEALTH ${msg.state}\n`;
    case 'NODES':
      return `NODES ${msg.nodes.join(',')}\n`;
    case 'CONNECT':
      return `CONNECT ${msg.token} ${msg.clientAddress} ${msg.clientPort}\n`;
    case 'CLIENT':
      return `CLIENT ${msg.clientAddress} ${msg.clientPort} ${msg.serverAddress} ${msg.serverPort}\n`;
    case 'PING':
    case 'PONG':
    case 'SHUTDOWN':
    case 'LEAVE':
    case 'REJOIN':
    case 'PROBED':
    case 'DRAIN':
      return `${msg.kind}\n`;
    case 'ERR': {
      // The text is for people; keep the line valid, and within the cap, whatever it was given.
      const prefix = `ERR ${msg.code} `;
      const text = msg.text.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_LINE_BYTES - 1 - prefix.length);
      return `${prefix}${text}\n`;
    }
  }
}

function formatHello(msg: Message & { kind: 'HELLO' }): string {
  const words = ['HELLO', String(msg.version)];
  if (msg.host !== undefined) words.push(`host=${msg.host}`);
  if (msg.port !== undefined) words.push(`port=${msg.port}`);
  if (msg.resume !== undefined) words.push(`resume=${msg.resume}`);
  if (msg.warm !== undefined) words.push(`warm=${msg.warm}`);
  if (msg.features !== undefined) words.push(`feat=${msg.features.join(',')}`);
  if (msg.tenant !== undefined) words.push(`tenant=${msg.tenant}`);
  if (msg.pool !== undefined) words.push(`pool=${msg.pool}`);
  return words.join(' ') + '\n';
}

function formatOk(msg: Message & { kind: 'OK' }): string {
  const warm = msg.warmToken === undefined ? '' : ` warm=${msg.warmToken}`;
  const features = msg.features === undefined ? '' : ` feat=${msg.features.join(',')}`;
  const nodes = msg.nodes === undefined ? '' : ` nodes=${msg.nodes.join(',')}`;
  return `OK ${joinHostPort(msg.host, msg.port)} data=${msg.dataPort} heartbeat=${msg.heartbeatMs} resume=${msg.resume}${warm}${features}${nodes}\n`;
}
