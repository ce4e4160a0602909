/**
 * docs/boards.md's walkthrough, run as written from a folder that looks like a fresh clone (the
 * package's files linked in, nothing else): C2 database, device, topic and grant, the device
 * file for the Puck.js image with its link, then `npm run flash` to the Linux Espruino inside
 * `npm run linux-board`, which must end with the runtime booted with the granted topic. Its first
 * line (`npm run build`) is left out: `npm test` has just built, and a second build would rewrite
 * dist/ under the other suites' feet.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needEngine, skipped, titled } from './support/engines';

const ROOT = join(__dirname, '..');
const doc = readFileSync(join(ROOT, 'docs/boards.md'), 'utf8');
const e = needEngine('espruino32-2630');

function block(marker: string): string {
  const at = doc.indexOf(`<!-- walkthrough: ${marker} -->`);
  expect(at, `docs/boards.md has no walkthrough "${marker}"`).toBeGreaterThan(0);
  return doc.slice(at).match(/```sh\n([\s\S]*?)```/)![1];
}

describe.skipIf(skipped(e))(titled('docs/boards.md walkthrough: C2 -> device file -> flash -> the Puck.js image boots on espruino32-2630', e), () => {
  it('runs as written and the board boots with the granted topic', () => {
    e.binary();
    const lines = block('puckjs').split('\n').filter((l) => l.trim() && l.trim() !== 'npm run build');
    expect(lines.some((l) => l.includes('npm run flash'))).toBe(true);
    const dir = mkdtempSync(join(tmpdir(), 'e4-walkthrough-'));
    try {
      for (const f of ['package.json', 'node_modules', 'host-sim', 'dist']) symlinkSync(join(ROOT, f), join(dir, f));
      const env = { ...process.env };
      delete env.INIT_CWD;
      delete env.npm_lifecycle_event;
      const r = spawnSync('bash', ['-e', '-c', lines.join('\n')], { cwd: dir, env, encoding: 'utf8', timeout: 4 * 60 * 1000 });
      const out = (r.stdout || '') + (r.stderr || '');
      expect(r.status, out).toBe(0);
      const id = /added device monitor-1 +id ([0-9a-f]{32})/.exec(out);
      expect(id, out).not.toBeNull();
      expect(out).toMatch(new RegExp(`flash: the runtime booted: e4/${id![1]}, 1 topic\\b`));
      // The key files the walkthrough wrote are this user's alone.
      expect(statSync(join(dir, 'keys/monitor-1.json')).mode & 0o777).toBe(0o600);
      const cfg: { topics?: { topic?: string }[]; transport?: unknown } = JSON.parse(readFileSync(join(dir, 'keys/monitor-1.json'), 'utf8'));
      expect(cfg.topics?.map((t) => t.topic)).toEqual(['health/heart-rate']);
      expect(cfg.transport).toEqual({ link: { kind: 'ble-uart' } });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 5 * 60 * 1000);
});
