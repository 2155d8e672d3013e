import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { OTHER_REFUSAL_REASONS } from '../../src/monitor/refusal-reasons.js';
import { ERROR_CODES } from '../../src/protocol/messages.js';
import { ROOT } from '../helpers/processes.js';

/** Every label of relay_refusals_total: `superseded` is sent to a service that lost its key, never counted. */
const REASONS = [...ERROR_CODES.filter((code) => code !== 'superseded'), ...OTHER_REFUSAL_REASONS];

/**
 * The reasons operations.md names: each `reason="NAME"` (or `reason="A"|"B"`), and each
 * `NAME` in a paragraph that lists reasons ("The reasons are ...").
 */
function documentedReasons(text: string): Set<string> {
  const named = new Set<string>();
  for (const [, alternatives] of text.matchAll(/reason=((?:"[a-z-]+"\|?)+)/g)) {
    for (const [, name] of alternatives!.matchAll(/"([a-z-]+)"/g)) named.add(name!);
  }
  const lists = text.split(/\n\s*\n/).filter((paragraph) => /\breasons\s+are\b/.test(paragraph));
  assert.ok(lists.length > 0, 'operations.md has a paragraph that lists the refusal reasons ("The reasons are ...")');
  for (const list of lists) {
    for (const [, name] of list.matchAll(/`([a-z-]+)`/g)) named.add(name!);
  }
  return named;
}

test('docs: operations.md names every reason relay_refusals_total counts', () => {
  const named = documentedReasons(readFileSync(path.join(ROOT, 'docs', 'operations.md'), 'utf8'));
  const missing = REASONS.filter((reason) => !named.has(reason));
  assert.deepEqual(missing, [], `docs/operations.md does not name these refusal reasons: ${missing.join(', ')}`);
});
