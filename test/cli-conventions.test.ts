/**
 * What every command-line tool of the project shares (issue 11): `--version` prints the
 * package's version, `--help` exits 0 and writes nothing but the usage, and a wrong command line is
 * one line on stderr that says where the help is, with exit status 2.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TS_NODE } from '../host-sim/shared/cli.ts';

const ROOT = join(import.meta.dirname, '..');
const VERSION = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
const TOOLS = [
  'host-sim/c2/cli.ts',
  'host-sim/tools/flash.ts',
  'host-sim/services/gateway.ts',
  'host-sim/services/proxy.ts',
  'host-sim/tools/conformance.ts',
  'host-sim/tools/mqjs-memory.ts',
  'host-sim/tools/linux-board.ts',
  'host-sim/tools/hil.ts',
  'host-sim/tools/size.ts',
  'host-sim/tools/bench.ts',
];
const run = (tool: string, args: string[]) =>
  spawnSync(process.execPath, [...TS_NODE, join(ROOT, tool), ...args], {
    encoding: 'utf8',
    timeout: 30000,
    env: { ...process.env, E4_C2_PASSPHRASE: '' },
  });

describe.each(TOOLS)('%s', (tool) => {
  it('--version prints the version; --help the usage; a wrong option is one line naming the help', () => {
    const v = run(tool, ['--version']);
    expect(v.status, v.stderr).toBe(0);
    expect(v.stdout).toBe(`${VERSION}\n`);
    const h = run(tool, ['--help']);
    expect(h.status, h.stderr).toBe(0);
    expect(h.stdout).toMatch(/usage/i);
    const bad = run(tool, ['--no-such-option']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^[a-z0-9-]+: [^\n]*--help[^\n]*\)\n$/);
  });
});
