/**
 * Every shell block of README.md and docs/ is either run by a test, as written, or says why it
 * cannot run here (test/support/doc-blocks.ts): a doc that drifts from its tool fails here.
 * This file runs the blocks no other test owns: the C2 quick starts and the fleet's commands,
 * each from a fresh folder, with mosquitto on the port the docs name, in a private network.
 */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { docBlock, docBlocks, ROOT, runDocBlock } from './support/doc-blocks';
import { haveMosquitto } from '../host-sim/services/broker.ts';
import { needEngine, skipped, titled } from './support/engines';

const CI = !!process.env.CI;
const mosquitto = haveMosquitto();

function filesUnder(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const rel = join(dir, name);
    return statSync(join(ROOT, rel)).isDirectory() ? filesUnder(rel) : [rel];
  });
}

describe('docs: every shell block', () => {
  it('says who runs it: a test (run:/walkthrough: NAME) or why it cannot run here', () => {
    const blocks = docBlocks();
    expect(blocks.length).toBeGreaterThan(10);
    const unmarked = blocks.filter((b) => b.kind === null || !b.name).map((b) => `${b.file}:${b.line}`);
    expect(unmarked, 'blocks without a <!-- run: NAME -->, <!-- walkthrough: NAME --> or <!-- not run here: WHY --> marker').toEqual([]);
  });

  it('named for a test is run by one (docBlock(NAME) in test/ or .ci/)', () => {
    const runners = [...filesUnder('test'), ...filesUnder('.ci')].map((f) => readFileSync(join(ROOT, f), 'utf8')).join('\n');
    const orphans = docBlocks()
      .filter((b) => b.kind === 'run' || b.kind === 'walkthrough')
      .filter((b) => ![`docBlock('${b.name}')`, `block('${b.name}')`, `run: ${b.name} `].some((call) => runners.includes(call)))
      .map((b) => `${b.file}:${b.line} ${b.kind}: ${b.name}`);
    expect(orphans).toEqual([]);
  });
});

describe.skipIf(!mosquitto && !CI)(
  `docs: blocks run as written${mosquitto ? '' : ' (skipped: no mosquitto; apt-get install mosquitto)'}`,
  () => {
    it('README "C2 key manager": the C2 from init to list, commands delivered through the broker', () => {
      const r = runDocBlock(docBlock('c2-readme'), { broker: true });
      try {
        expect(r.status, r.out).toBe(0);
        expect(r.out).toMatch(/added device monitor-1 +id [0-9a-f]{32}/);
        expect(r.out).toMatch(/acknowledged by the broker/);
        expect(statSync(join(r.dir, 'keys/monitor-1.json')).mode & 0o777).toBe(0o600);
      } finally {
        r.cleanup();
      }
    }, 300_000);

    it('docs/c2.md quick start: two devices, a grant each, a rotation watched, the device file, the list', () => {
      const r = runDocBlock(docBlock('c2-quick-start'), { broker: true });
      try {
        expect(r.status, r.out).toBe(0);
        expect(r.out).toMatch(/added device phone-1 +id [0-9a-f]{32}/);
        expect(statSync(join(r.dir, 'keys/monitor-1.json')).mode & 0o777).toBe(0o600);
      } finally {
        r.cleanup();
      }
    }, 300_000);

    it('docs/simulator.md: npm start on the default broker, 20 devices, mosquitto, and a broker by URL', () => {
      const r = runDocBlock(docBlock('simulator-start'), { broker: true, timeoutMs: 8 * 60 * 1000 });
      try {
        expect(r.status, r.out).toBe(0);
      } finally {
        r.cleanup();
      }
    }, 480_000);
  },
);

const engines = ['duk', 'mqjs', 'jerry'].map(needEngine);

describe.skipIf(skipped(...engines))(titled('docs: README "Build, conformance, size and speed" runs as written', ...engines), () => {
  it('conformance on duk, mqjs and jerry passes every vector; mqjs-memory reports its heaps', () => {
    for (const e of engines) e.binary();
    const r = runDocBlock(docBlock('build-commands'));
    try {
      expect(r.status, r.out).toBe(0);
      expect(r.out, r.out).toMatch(/conformance: 111 passed, 0 failed/);
      expect(r.out).toMatch(/conformance: 222 passed, 0 failed/);
      expect(r.out).toMatch(/mqjs: smallest --memory-limit/);
    } finally {
      r.cleanup();
    }
  }, 300_000);
});
