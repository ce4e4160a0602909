/**
 * `npm run conformance` as a command: every shared vector passes on the node:vm sandbox and on
 * Duktape (`duk`; on CI a missing duk is a failure), also in Espruino-sized batches; the runner
 * reports failures of a broken image, an engine that dies, and an empty run.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findBinary } from '../host-sim/tools/engines.ts';
import { loadCases } from '../host-sim/tools/conformance.ts';
import { TS_NODE } from '../host-sim/shared/cli.ts';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..');
const VECTORS = join(ROOT, 'test', 'vectors');
const FILES = [join(VECTORS, 'e4-sk-vectors.json'), join(VECTORS, 'rfc5297.json')];
const TOTAL = FILES.reduce((n, f) => n + loadCases(f).length, 0);
const duk = findBinary('duk');

function conformance(...args: string[]) {
  const r = spawnSync(process.execPath, [...TS_NODE, join(ROOT, 'host-sim/tools/conformance.ts'), ...args], {
    encoding: 'utf8',
    timeout: 240000,
  });
  const lines = r.stdout.trim().split('\n');
  return { status: r.status, out: r.stdout + r.stderr, last: lines[lines.length - 1] };
}

const SECTIONS = ['client_ids', 'topic_hashes', 'aes_siv', 'protect', 'unprotect', 'commands', 'scenarios', 'storage_file', 'rfc5297'];

function expectAllPassed(r: ReturnType<typeof conformance>, engines = 1) {
  expect(r.last, r.out).toBe(`conformance: ${TOTAL * engines} passed, 0 failed`);
  expect(r.status).toBe(0);
  for (const s of SECTIONS) expect(r.out).toMatch(new RegExp(` ${s}: \\d+ passed, 0 failed`));
  expect(r.out).toMatch(/time .*: \d+ cases in \d+ batches, [\d.]+ s wall, [\d.]+ s in the engine/);
}

describe('npm run conformance', () => {
  it('the vector files hold cases of every section', () => {
    const sections = new Set(FILES.flatMap((f) => loadCases(f).map((c) => c.section)));
    expect([...sections].sort()).toEqual([...SECTIONS].sort());
    expect(TOTAL).toBeGreaterThan(100);
  });

  it('passes every case on the node:vm sandbox (minified and readable image)', () => {
    expectAllPassed(conformance('--engine', 'node', ...FILES));
    expectAllPassed(conformance('--engine', 'node', '--image', join(ROOT, 'dist/e4.js'), ...FILES));
  });

  it('duk is installed on CI', () => {
    if (process.env.CI) expect(duk, 'Duktape (`duk`, Debian package duktape) is required on CI').toBeTruthy();
  });

  it.skipIf(!duk && !process.env.CI)('passes every case on Duktape (duk), also in Espruino-sized batches', () => {
    expectAllPassed(conformance('--engine', 'duk', ...FILES));
    const small = conformance('--engine', 'duk', '--batch-bytes', '2500', ...FILES);
    expectAllPassed(small);
    expect(Number(small.out.match(/in (\d+) batches/)?.[1])).toBeGreaterThan(20);
  });

  it('reports the failures of a broken image, of an engine that dies, and of an empty run', () => {
    const dir = mkdtempSync(join(tmpdir(), 'e4-conf-'));
    try {
      const good = readFileSync(join(ROOT, 'dist/e4.js'), 'utf8');
      // A wrong S-box constant: AES, and so everything sealed, changes.
      const wrongSbox = join(dir, 'wrong-sbox.js');
      expect(good).toContain('SBOX[0] = 0x63;');
      writeFileSync(wrongSbox, good.replace('SBOX[0] = 0x63;', 'SBOX[0] = 0x62;').replace(/\^ 0x63;\n/, '^ 0x62;\n'));
      const broken = conformance('--engine', 'node', '--image', wrongSbox, ...FILES);
      expect(broken.status).toBe(1);
      expect(broken.out).toMatch(/FAIL .* aes_siv .*seal: got/);
      const failed = Number(broken.last.match(/(\d+) failed$/)?.[1]);
      expect(failed).toBeGreaterThan(50);
      // An image that throws at load: no case has a result.
      const dies = join(dir, 'dies.js');
      writeFileSync(dies, good + '\nthrow new Error("boom");\n');
      const died = conformance('--engine', 'node', '--image', dies, FILES[1]);
      expect(died.last).toBe('conformance: 0 passed, 2 failed');
      expect(died.out).toMatch(/no result: the engine died \(exit 1: Error: boom/);
      // No case at all is a failure too.
      const emptyFile = join(dir, 'empty.json');
      writeFileSync(emptyFile, JSON.stringify({ vectors: [] }));
      expect(conformance('--engine', 'node', emptyFile).status).not.toBe(0);
      const noCases = join(dir, 'no-cases.json');
      writeFileSync(noCases, JSON.stringify({ meta: { format: 'e4-sk-test-vectors' } }));
      const none = conformance('--engine', 'node', noCases);
      expect(none.last).toBe('conformance: 0 passed, 0 failed');
      expect(none.status).toBe(1);
      // An engine that cannot be found fails every case.
      const missing = conformance('--engine', join(dir, 'no-such-engine'), FILES[1]);
      expect(missing.last).toBe('conformance: 0 passed, 2 failed');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
