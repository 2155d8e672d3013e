import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../helpers/processes.js';

/**
 * The layers of src/, lowest first (docs/architecture.md): a module may import its own
 * layer and the ones below it, never one above.
 */
const LAYERS: readonly (readonly string[])[] = [
  ['errors.ts', 'log.ts', 'clock.ts'],
  ['protocol'],
  ['net'],
  ['config'],
  ['leases'],
  ['access'],
  ['monitor'],
  ['relay'],
  ['upgrade'],
  ['fleet'],
  ['client'],
  ['cli'],
  ['index.ts'],
];

const SRC = path.join(ROOT, 'src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? sources(full) : entry.name.endsWith('.ts') ? [full] : [];
  });
}

/** Every relative module a file imports, type-only and dynamic imports included, as src/ paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((match) => match[1]!);
  return specifiers.map((specifier) => path.relative(SRC, path.resolve(path.dirname(file), specifier)).replace(/\.js$/, '.ts'));
}

function layerOf(module: string): number {
  const top = module.split(path.sep)[0]!;
  const layer = LAYERS.findIndex((names) => names.includes(top));
  assert.ok(layer >= 0, `${module} belongs to no layer: add its folder to LAYERS and to docs/architecture.md`);
  return layer;
}

const graph = new Map(sources(SRC).map((file) => [path.relative(SRC, file), importsOf(file)]));

test('layers: no module of src/ imports from a layer above its own', () => {
  const upward: string[] = [];
  for (const [module, imports] of graph) {
    for (const imported of imports) if (layerOf(imported) > layerOf(module)) upward.push(`${module} -> ${imported}`);
  }
  assert.deepEqual(upward, []);
});

test('layers: the imports of src/ have no cycle, type-only imports included', () => {
  const state = new Map<string, 'visiting' | 'done'>();
  const cycles: string[] = [];
  const visit = (module: string, trail: string[]): void => {
    if (state.get(module) === 'done') return;
    if (state.get(module) === 'visiting') return void cycles.push([...trail.slice(trail.indexOf(module)), module].join(' -> '));
    state.set(module, 'visiting');
    for (const imported of graph.get(module) ?? []) visit(imported, [...trail, module]);
    state.set(module, 'done');
  };
  for (const module of graph.keys()) visit(module, []);
  assert.deepEqual(cycles, []);
});

test('layers: every src/ file is under 300 lines', () => {
  const long = [...graph.keys()].filter((module) => readFileSync(path.join(SRC, module), 'utf8').split('\n').length > 300);
  assert.deepEqual(long, []);
});
