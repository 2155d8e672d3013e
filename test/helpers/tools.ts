import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';

/**
 * The programs outside Node that tests talk to, and the Debian package that brings
 * each. A test that needs one says so with requireTools(); on a machine without it the
 * test is reported as skipped with the install line, so `npm test` passes on a fresh
 * box. `.ci/run` installs them all and sets TEST_REQUIRE_ALL_TOOLS=1, which turns
 * every such skip into a failure, so CI never passes by skipping.
 */
interface ToolSpec {
  apt: string;
  /** Run with args, the program's output must match, or it is the wrong flavour. */
  probe?: { args: string[]; shows: RegExp };
}

const TOOLS = {
  nginx: { apt: 'nginx-light' },
  // The tests use -N (close the socket at end of input), which only OpenBSD's nc has.
  nc: { apt: 'netcat-openbsd', probe: { args: ['-h'], shows: /^\s*-N\b/m } },
  curl: { apt: 'curl' },
  openssl: { apt: 'openssl' },
  python3: { apt: 'python3' },
  npm: { apt: 'npm' },
  chromium: { apt: 'chromium' },
  etcd: { apt: 'etcd-server' },
  // A load balancer that sends PROXY headers (send-proxy, send-proxy-v2) in front of public ports.
  haproxy: { apt: 'haproxy' },
  // ss -i: a connection's TCP counters (data segments received).
  ss: { apt: 'iproute2', probe: { args: ['-h'], shows: /--info/ } },
} satisfies Record<string, ToolSpec>;

export type Tool = keyof typeof TOOLS;

/** Set by .ci/run: a missing tool fails the test instead of skipping it. */
export const REQUIRE_ALL_TOOLS = 'TEST_REQUIRE_ALL_TOOLS';

const found = new Map<Tool, boolean>();

function onPath(name: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    if (!dir) continue;
    try {
      accessSync(path.join(dir, name), constants.X_OK);
      return path.join(dir, name);
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

function available(tool: Tool): boolean {
  let ok = found.get(tool);
  if (ok === undefined) {
    const program = onPath(tool);
    const spec: ToolSpec = TOOLS[tool];
    ok = program !== undefined;
    if (ok && spec.probe) {
      const run = spawnSync(program!, spec.probe.args, { encoding: 'utf8', timeout: 5000 });
      ok = spec.probe.shows.test(`${run.stdout ?? ''}${run.stderr ?? ''}`);
    }
    found.set(tool, ok);
  }
  return ok;
}

/** Where a tool is on PATH (after requireTools said it is there). */
export function toolPath(tool: Tool): string {
  const program = onPath(tool);
  if (program === undefined) throw new Error(`${tool} is not on PATH`);
  return program;
}

/**
 * True when every tool is installed. Otherwise marks the test skipped with the
 * install line and returns false (the test should return at once), or, under
 * TEST_REQUIRE_ALL_TOOLS=1, throws so the test fails.
 */
export function requireTools(t: TestContext, ...tools: Tool[]): boolean {
  const missing = tools.filter((tool) => !available(tool));
  if (missing.length === 0) return true;
  const message = `needs ${missing.join(', ')} on PATH (apt-get install ${missing.map((tool) => TOOLS[tool].apt).join(' ')})`;
  if (process.env[REQUIRE_ALL_TOOLS] === '1') throw new Error(`${message}; ${REQUIRE_ALL_TOOLS}=1 forbids skipping`);
  t.skip(message);
  return false;
}
