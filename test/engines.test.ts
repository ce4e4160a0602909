/**
 * host-sim/tools/engines.ts: engines are found only by their known names, in $E4_ENGINES and
 * $PATH, never in node_modules/.bin, and only when the file answers the probe as that engine; a
 * dead engine's cause is named; unknown names are usage errors.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { causeOf, EngineUsageError, engineDirs, findBinary, openEngine, probeKind } from '../host-sim/tools/engines.ts';
import { TS_NODE } from '../host-sim/shared/cli.ts';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..');

/** Runs `fn` with E4_ENGINES and PATH set to the given folders. */
function withDirs<T>(engines: string[], path: string[], fn: () => T): T {
  const saved = { E4_ENGINES: process.env.E4_ENGINES, PATH: process.env.PATH };
  process.env.E4_ENGINES = engines.join(delimiter);
  process.env.PATH = path.join(delimiter);
  try {
    return fn();
  } finally {
    for (const [k, v] of Object.entries(saved))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  }
}

/** An executable script that prints `text` whatever it is given. */
function fakeEngine(dir: string, name: string, text: string) {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  writeFileSync(file, `#!/bin/sh\necho '${text}'\n`);
  chmodSync(file, 0o755);
  return file;
}

describe('engine lookup', () => {
  it('passes over a file with an engine name that does not answer the probe as that engine', () => {
    const dir = mkdtempSync(join(tmpdir(), 'e4-engines-'));
    try {
      const impostor = fakeEngine(join(dir, 'a'), 'espruino32-2630', 'Espruino command-line tool');
      const wrongKind = fakeEngine(join(dir, 'b'), 'espruino32-2630', '@@E4PROBE jerryscript');
      const real = fakeEngine(join(dir, 'c'), 'espruino32-2630', '@@E4PROBE espruino');
      expect(probeKind(impostor)).toBeNull();
      expect(probeKind(wrongKind)).toBe('jerryscript');
      expect(withDirs([join(dir, 'a'), join(dir, 'b')], [], () => findBinary('espruino32-2630'))).toBeNull();
      expect(withDirs([join(dir, 'a'), join(dir, 'b'), join(dir, 'c')], [], () => findBinary('espruino32-2630'))).toBe(real);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('never searches node_modules/.bin (where npm puts the espruino command-line tool)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'e4-engines-'));
    try {
      const bin = join(dir, 'node_modules', '.bin');
      fakeEngine(bin, 'espruino', '@@E4PROBE espruino');
      expect(withDirs([], [bin], () => engineDirs())).toEqual([]);
      expect(withDirs([bin], [bin], () => findBinary('espruino'))).toBeNull();
      // The project's own node_modules/.bin/espruino is the CLI: not an engine by any route.
      expect(probeKind(join(ROOT, 'node_modules', '.bin', 'espruino'))).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses unknown names as usage errors, in the library and in npm run conformance', () => {
    expect(() => findBinary('espruino-puck')).toThrow(EngineUsageError);
    expect(() => openEngine('jerry-64k')).toThrow(/unknown engine jerry-64k/);
    expect(() => openEngine('node', 'espruino')).toThrow(EngineUsageError);
    const r = spawnSync(
      process.execPath,
      [...TS_NODE, join(ROOT, 'host-sim/tools/conformance.ts'), '--engine', 'jerry-64k', join(ROOT, 'test/vectors/rfc5297.json')],
      { encoding: 'utf8' },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown engine jerry-64k: one of node, duk, espruino32-2630/);
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
  });

  it('names what an engine died of', () => {
    expect(causeOf('jerryscript', { exit: 10, stdout: '', stderr: '' })).toMatch(/^out of memory \(JerryScript exit status 10/);
    expect(causeOf('espruino', { exit: 1, stdout: 'ERROR: Out of Memory!\nExecution Interrupted', stderr: '' })).toMatch(/^out of memory/);
    expect(causeOf('microquickjs', { exit: 1, stdout: '', stderr: 'InternalError: out of memory\n    at x' })).toMatch(/^out of memory/);
    expect(causeOf('duktape', { exit: null, signal: 'SIGSEGV', stdout: '', stderr: '' })).toBe('killed by SIGSEGV (the engine crashed)');
    expect(causeOf('xs', { timedOut: true, limitMs: 5000, exit: -1, stdout: '', stderr: '' })).toBe('timed out after 5000 ms');
    expect(causeOf('duktape', { exit: 1, stdout: '', stderr: 'TypeError: undefined not callable\n' })).toBe(
      'exit 1: TypeError: undefined not callable',
    );
  });
});
