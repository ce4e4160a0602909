/**
 * The flash store (boards/shared/flash-store.ts, with Espruino's zero hook, boards/espruino/storage-zero.ts) on a simulated Espruino Storage
 * (host-sim/sim/flash-sim.ts, Espruino's own write/erase/compact rules): power cut at every event
 * (byte programmed, page erased) of every kind of commit, erasure of removed keys from the raw
 * medium, recovery from damage, foreign files, full storage, flash writes per command.
 */
import { afterAll, describe, it, expect } from 'vitest';
import { createHash } from 'node:crypto';
import { flashStore, crc32 } from '../boards/shared/flash-store';
import { findFile, storageZero } from '../boards/espruino/storage-zero';
import { writeFileSync } from 'node:fs';
import { storageArea } from '../boards/espruino/boot';
import type { FlashStoreOptions, StorageApi } from '../boards/shared/flash-store';
import { FlashSim, PowerCut } from '../host-sim/sim/flash-sim.ts';
import type { Change, StoredState, TopicRecord } from '../firmware/hal';
import { applyChanges, cloneState } from '../firmware/state';
import { toHex } from '../firmware/bytes';
import { isE4Error, PARAMETER_INVALID, PERSISTENCE_ERROR, PERSISTENCE_INCOMPATIBLE } from '../firmware/errors';

// Realistic material: 32-byte keys (SHA-256 of a label, i.e. random-looking hex), SHA3-256 ids and hashes.
const key = (label: string) =>
  new Uint8Array(
    createHash('sha256')
      .update('key:' + label)
      .digest(),
  );
const hash = (topic: string) => new Uint8Array(createHash('sha3-256').update(topic).digest().subarray(0, 16));
const tag = (label: string) =>
  new Uint8Array(
    createHash('sha256')
      .update('tag:' + label)
      .digest()
      .subarray(0, 16),
  );

const ID = hash('monitor-1');
const CK1 = key('client-1');
const CK2 = key('client-2');
const TA = hash('health/heart-rate');
const TB = hash('health/spo2');
const TC = hash('alerts/fall');
const KA1 = key('heart-rate-1');
const KA2 = key('heart-rate-2');
const KA3 = key('heart-rate-3');
const KB1 = key('spo2-1');
const KC1 = key('fall-1');
const T0 = 1767225600; // 2026-01-01

const topic = (h: Uint8Array, k: Uint8Array, prevKey: Uint8Array | null = null, prevSince = -1): Change => ({
  op: 'topic',
  topic: { hash: h, key: k, prevKey, prevSince },
});
const cal = (time: number, label = String(time)): Change => ({ op: 'calibrate', time, tags: tag(label) });
const P0: Change[] = [{ op: 'provision', id: ID, key: CK1 }, topic(TA, KA1), topic(TB, KB1)];
const TRANSITION: Change[] = [topic(TA, KA2, KA1, T0 + 100), cal(T0 + 100)];
const NEXT: Change[] = [topic(hash('later/topic'), key('later')), cal(T0 + 9000)];

function show(s: StoredState | null): string {
  if (!s) return 'null';
  const t = (r: TopicRecord) => ({
    hash: toHex(r.hash),
    key: toHex(r.key),
    prevKey: r.prevKey ? toHex(r.prevKey) : null,
    prevSince: r.prevSince,
  });
  return JSON.stringify({
    id: toHex(s.id),
    key: toHex(s.key),
    topics: s.topics.map(t),
    lastCommand: s.lastCommand,
    lastTags: toHex(s.lastTags),
  });
}

function model(setup: Change[][]): StoredState | null {
  let s: StoredState | null = null;
  for (const c of setup) s = applyChanges(s, c);
  return s;
}

/**
 * Board profiles: where Storage sits in require("Flash")'s address space and its page size, as
 * Espruino's board files define them (FLASH_SAVED_CODE_START, page size). The simulated Storage
 * is smaller than the real one where that changes nothing the store does (ESP32, Bangle.js 2).
 */
interface Profile {
  key: string;
  board: string;
  size: number;
  pageSize: number;
  base: number;
  /** A JerryScript port's storage: erase() erases the file's bytes (no zero hook). */
  port?: boolean;
}
const PUCK: Profile = {
  key: 'puckjs',
  board: 'Puck.js / nRF52832 (internal flash, Storage 40 KB at 0x6c000)',
  size: 40960,
  pageSize: 4096,
  base: 0x6c000,
};
const PROFILES: Profile[] = [
  PUCK,
  { key: 'esp32', board: 'ESP32 (SPI NOR, Storage at 0x320000)', size: 65536, pageSize: 4096, base: 0x320000 },
  { key: 'bangle2', board: 'Bangle.js 2 (external SPI NOR at 0x60000000)', size: 65536, pageSize: 4096, base: 0x60000000 },
  { key: 'linux', board: 'Linux build (espruino.flash, 256 KB, 1 KB pages)', size: 262144, pageSize: 1024, base: 0x10000000 },
  { key: 'port', board: 'JerryScript port (its erase() erases the bytes)', size: 65536, pageSize: 4096, base: 0x60000, port: true },
];

/** Storage as boards/jerryscript/README.md asks a port for it: erase() removes the file and its
 * bytes (here: zeros programmed over the data, byte by byte, then Espruino's erase mark). */
function erasingStorage(sim: FlashSim): StorageApi {
  return {
    readArrayBuffer: (name) => sim.readArrayBuffer(name),
    write: (name, data, offset, size) => sim.write(name, data, offset, size),
    erase: (name) => {
      const at = sim.addressOf(name);
      if (!at) return;
      sim.flash.write(new Uint8Array(new Uint8Array(sim.readArrayBuffer(name)!).length), at);
      sim.erase(name);
    },
  };
}
/** Word-atomic (the nRF52 NVMC programs 32-bit words) and byte-torn (SPI NOR page programs). */
const UNITS = [4, 1];

/** The store's options on a board: in-place zeroing located by walking Storage's headers. */
function storeOptions(sim: FlashSim, p: Profile, size?: number): FlashStoreOptions {
  const o: FlashStoreOptions = p.port ? { crc32, erases: true } : { crc32, zero: storageZero(sim.flash, sim, p.base, p.base + p.size) };
  if (size) o.size = size;
  return o;
}

/** A board's Storage with a 3 KB application file saved first (so the store's first file
 * straddles a page boundary on 1 KB and 4 KB pages alike). */
function device(p: Profile = PUCK, unit = 4, size?: number) {
  const sim = new FlashSim({ size: p.size, pageSize: p.pageSize, base: p.base, unit, bootCheck: true });
  sim.write('.bootcde', 'E.on("init",function(){});'.padEnd(3000, ' '));
  const open = () => flashStore(p.port ? erasingStorage(sim) : sim, storeOptions(sim, p, size));
  const reopen = () => open().load();
  return { sim, open, reopen };
}

function commitAll(store: ReturnType<typeof flashStore>, commits: Change[][]) {
  store.load();
  for (const c of commits) store.commit(c);
}

/** Calibration commits that fill the file of a store provisioned with P0 up to the last one that fits. */
function filling(size: number): Change[][] {
  const { sim, open } = device(PUCK, 4, size);
  const s = open();
  commitAll(s, [P0]);
  const out: Change[][] = [];
  for (let i = 0; ; i++) {
    const files = sim.list().join();
    s.commit([cal(T0 + i)]);
    if (sim.list().join() !== files) return out;
    out.push([cal(T0 + i)]);
  }
}

interface Scenario {
  name: string;
  setup: Change[][];
  commit: Change[];
  /** Keys that must be gone from the raw medium once the commit is durable. */
  removes: Uint8Array[];
  size?: number;
}

const FULL = 512;
function scenarios(): Scenario[] {
  const full = [P0, ...filling(FULL)];
  return [
    { name: 'provision (first commit)', setup: [], commit: P0, removes: [] },
    { name: 'setTopicKey, new topic', setup: [P0], commit: [topic(TC, KC1), cal(T0 + 10)], removes: [] },
    { name: 'setTopicKey, replace (no transition)', setup: [P0], commit: [topic(TA, KA2), cal(T0 + 10)], removes: [KA1] },
    { name: 'key transition record (rotation keeps the previous key)', setup: [P0], commit: TRANSITION, removes: [] },
    {
      name: 'key transition, rotate again (drops the oldest key)',
      setup: [P0, TRANSITION],
      commit: [topic(TA, KA3, KA2, T0 + 200), cal(T0 + 200)],
      removes: [KA1],
    },
    { name: 'key transition end (previous key expired)', setup: [P0, TRANSITION], commit: [topic(TA, KA2, null, -1)], removes: [KA1] },
    { name: 'removeTopic', setup: [P0], commit: [{ op: 'removeTopic', hash: TB }, cal(T0 + 10)], removes: [KB1] },
    { name: 'resetTopics', setup: [P0, TRANSITION], commit: [{ op: 'resetTopics' }, cal(T0 + 300)], removes: [KA1, KA2, KB1] },
    { name: 'setClientKey', setup: [P0], commit: [{ op: 'clientKey', key: CK2 }, cal(T0 + 10)], removes: [CK1] },
    { name: 'calibration', setup: [P0], commit: [cal(T0 + 10)], removes: [] },
    {
      name: 'provision over a provisioned store',
      setup: [P0],
      commit: [{ op: 'provision', id: ID, key: CK2 }, topic(TA, KA2)],
      removes: [CK1, KA1, KB1],
    },
    { name: 'compaction (file full)', setup: full, commit: [cal(T0 + 5000)], removes: [], size: FULL },
    {
      name: 'compaction (file full) of a commit that removes a key',
      setup: full,
      commit: [{ op: 'removeTopic', hash: TB }, cal(T0 + 5000)],
      removes: [KB1],
      size: FULL,
    },
  ];
}

interface CutReport {
  events: number;
  writes: number;
  bytes: number;
  erases: number;
  compacts: number;
  pageErases: number;
  zeroCalls: number;
  zeroBytes: number;
  /** Per cut point: B (state before), A (after), R (Espruino reset the whole Storage at boot),
   * H (before, but Espruino cannot create files any more: a byte-torn file header),
   * E (after, but a removed key stays on the medium),
   * X (lost inside Storage.compact()). */
  outcomes: string;
}

/**
 * Runs `sc` once to measure it, then once per event it makes with the power cut before that
 * event; after each cut: reboot (with Espruino's boot check), reopen, the state must be exactly
 * before or after, removed keys gone when after, and a further commit must work. Platform
 * outcomes are told apart instead of failing (the callers decide which are allowed): R, a cut
 * inside the size word of a file header Espruino writes (byte-torn flash only), which makes
 * Espruino erase all of Storage at boot; H, a torn header Espruino later creates a file over;
 * X, a cut inside Storage.compact(), which holds up to a page of files in RAM; E, a removed key
 * still on the medium.
 */
function cutEverywhere(p: Profile, unit: number, sc: Scenario): CutReport {
  const { sim, open, reopen } = device(p, unit, sc.size);
  commitAll(open(), sc.setup);
  const before = show(reopen());
  const after = show(model([...sc.setup, sc.commit]));
  const img = sim.bytes();

  // One uninterrupted run, measured.
  const s = open();
  s.load();
  const e0 = sim.events;
  sim.resetStats();
  let zeroCalls = 0;
  let zeroBytes = 0;
  const w = sim.flash.write;
  sim.flash.write = (data: Uint8Array, addr: number) => {
    zeroCalls++;
    zeroBytes += data.length;
    w(data, addr);
  };
  s.commit(sc.commit);
  sim.flash.write = w;
  const events = sim.events - e0;
  const stats = { ...sim.stats };
  const kinds: (string | null)[] = [];
  for (let k = 0; k < events; k++) kinds.push(sim.kindOf(e0 + k));
  for (const k of sc.removes) expect(sim.contains(k), 'removed key on the medium').toBe(false);
  expect(show(reopen())).toBe(after);

  let outcomes = '';
  for (let k = 0; k <= events; k++) {
    sim.restore(img);
    sim.reboot();
    const st = open();
    st.load();
    sim.cutAfter(k);
    let cut = false;
    try {
      st.commit(sc.commit);
    } catch (e) {
      if (!(e instanceof PowerCut)) throw e;
      cut = true;
    }
    expect(cut).toBe(k < events);
    const resets = sim.stats.resets;
    sim.reboot();
    if (sim.stats.resets > resets) {
      if (kinds[k] === 'compact') {
        outcomes += 'X';
        continue;
      }
      expect(kinds[k], `Storage reset after a cut at event ${k} (${kinds[k]})`).toBe('header');
      expect(unit).toBe(1);
      outcomes += 'R';
      continue;
    }
    const again = open();
    let got: StoredState | null = null;
    let g: string;
    try {
      got = again.load();
      g = show(got);
    } catch (e) {
      g = 'throws ' + String(e);
    }
    if (g !== before && g !== after && kinds[k] === 'compact') {
      outcomes += 'X';
      continue;
    }
    expect([before, after], `cut after ${k} of ${events} events (${kinds[k]})`).toContain(g);
    let o = g === after ? 'A' : 'B';
    if (g === after && sc.removes.some((r) => sim.contains(r))) o = 'E';
    outcomes += o;
    // The store keeps working.
    const next = got ? NEXT : P0;
    try {
      again.commit(next);
    } catch (e) {
      // Espruino creates the next file over a torn header without checking it is blank.
      if (unit === 1 && kinds[k] === 'header' && g === before && /Too much data|Unable to find/.test(String(e))) {
        outcomes = outcomes.slice(0, -1) + 'H';
        continue;
      }
      throw e;
    }
    expect(show(reopen())).toBe(show(applyChanges(got ? cloneState(got) : null, next)));
  }
  return {
    events,
    writes: stats.write,
    bytes: stats.bytesProgrammed,
    erases: stats.erase,
    compacts: stats.compact,
    pageErases: stats.pageErases,
    zeroCalls,
    zeroBytes,
    outcomes,
  };
}

const reports: Record<string, CutReport> = {};
const count = (o: string, c: string) => o.split(c).length - 1;

describe('power cut at every event of every commit, on every board profile', () => {
  const list = scenarios();
  for (const p of PROFILES) {
    for (const unit of UNITS) {
      describe(`${p.board}, ${unit === 1 ? 'byte-torn writes' : 'word-atomic writes'}`, () => {
        for (const sc of list) {
          it(sc.name, () => {
            const r = cutEverywhere(p, unit, sc);
            reports[`${p.key}/${unit}/${sc.name}`] = r;
            // Once durable, the commit stays: no B after an A.
            expect(r.outcomes.replace(/[RXH]/g, '').replace(/E/g, 'A')).toMatch(/^B*A+$/);
            // Storage.compact() is never called, and a removed key never outlives its commit.
            expect(r.compacts).toBe(0);
            expect(count(r.outcomes, 'X') + count(r.outcomes, 'E')).toBe(0);
            // Word-atomic flash: exactly before or after at every cut point.
            if (unit === 4) expect(r.outcomes).toMatch(/^B*A+$/);
          });
        }
      });
    }
  }
});

afterAll(() => {
  if (!process.env.FLASH_REPORT) return;
  const rows = Object.entries(reports).map(([k, r]) => ({
    case: k,
    events: r.events,
    writes: r.writes,
    bytes: r.bytes,
    erases: r.erases,
    compacts: r.compacts,
    pageErases: r.pageErases,
    zeroCalls: r.zeroCalls,
    zeroBytes: r.zeroBytes,
    B: count(r.outcomes, 'B'),
    A: count(r.outcomes, 'A'),
    X: count(r.outcomes, 'X'),
    R: count(r.outcomes, 'R'),
    H: count(r.outcomes, 'H'),
    E: count(r.outcomes, 'E'),
  }));
  writeFileSync(process.env.FLASH_REPORT, JSON.stringify(rows, null, 1));
});

function liveKeys(s: StoredState | null): Uint8Array[] {
  if (!s) return [];
  const k = [s.key];
  for (const t of s.topics) {
    k.push(t.key);
    if (t.prevKey) k.push(t.prevKey);
  }
  return k;
}

/** Offsets of the record groups of a store file (after the 12-byte header). */
function groups(file: Uint8Array): number[] {
  const out: number[] = [];
  for (let p = 12; p + 2 <= file.length;) {
    const len = file[p] | (file[p + 1] << 8);
    if (len === 0xffff) break;
    out.push(p);
    p += len;
  }
  return out;
}

function fileOf(sim: FlashSim, name: string): Uint8Array {
  const ab = sim.readArrayBuffer(name);
  if (!ab) throw new Error('no file ' + name);
  return new Uint8Array(ab);
}

function expectE4(fn: () => unknown, code: number) {
  let err: unknown = null;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(isE4Error(err), String(err)).toBe(true);
  expect(isE4Error(err) && err.code).toBe(code);
}

describe('erasure', () => {
  for (const p of PROFILES) {
    it(`${p.key}: after every commit of a long history the medium holds exactly the live keys, and Storage is never compacted`, () => {
      const { sim, open, reopen } = device(p, 4, 512);
      const s = open();
      s.load();
      let m: StoredState | null = null;
      const used: Uint8Array[] = [];
      const run = (c: Change[]) => {
        s.commit(c);
        m = applyChanges(m, c);
        for (const x of c) {
          if (x.op === 'provision' || x.op === 'clientKey') used.push(x.key);
          if (x.op === 'topic') used.push(x.topic.key);
        }
        const live = liveKeys(m).map(toHex);
        for (const k of used) expect(sim.contains(k), `${toHex(k)} live=${live.includes(toHex(k))}`).toBe(live.includes(toHex(k)));
      };
      run(P0);
      const topics = [TA, TB, TC, hash('a/b'), hash('c/d')];
      for (let i = 0; i < 60; i++) {
        const h = topics[i % topics.length];
        const t = T0 + 60 * i;
        const cur = (m as StoredState | null)?.topics.find((x) => toHex(x.hash) === toHex(h));
        if (i % 11 === 10) run([{ op: 'clientKey', key: key('client-' + i) }, cal(t)]);
        else if (i % 13 === 12) run([{ op: 'resetTopics' }, cal(t)]);
        else if (i % 7 === 6 && cur) run([{ op: 'removeTopic', hash: h }, cal(t)]);
        else if (i % 3 === 0 && cur)
          run([topic(h, key('k' + i), cur.key, t), cal(t)]); // rotation with transition
        else if (i % 5 === 4 && cur && cur.prevKey)
          run([topic(h, cur.key, null, -1)]); // transition ends
        else if (i % 2) run([cal(t)]);
        else run([topic(h, key('k' + i)), cal(t)]);
      }
      expect(show(reopen())).toBe(show(m));
      // Each 32-bit word is programmed at most twice between erases (nRF52840's nWRITE);
      // an nRF52832 allows 181 program operations per 512-byte block.
      const limits = sim.writeLimits(512);
      if (process.env.FLASH_REPORT)
        console.log(p.key, 'program operations: max per word', limits.word, 'max per 512-byte block', limits.block);
      if (!p.port) expect(limits.word).toBeLessThanOrEqual(2);
      expect(sim.stats.compact).toBe(0);
    });
  }
});

describe('recovery', () => {
  it('a power cut during the erasure that load() finishes is harmless too', () => {
    const { sim, open, reopen } = device();
    commitAll(open(), [P0]);
    const img = sim.bytes();
    const commit: Change[] = [{ op: 'removeTopic', hash: TB }, cal(T0 + 10)];
    const after = show(model([P0, commit]));
    // Measure: the append is the 'data' events; cut right after it, before the zeroing.
    const s = open();
    s.load();
    sim.resetStats();
    const e0 = sim.events;
    s.commit(commit);
    let appended = 0;
    for (let k = e0; k < sim.events; k++) if (sim.kindOf(k) === 'data') appended++;
    sim.restore(img);
    sim.reboot();
    const s2 = open();
    s2.load();
    sim.cutAfter(appended);
    expect(() => s2.commit(commit)).toThrow(PowerCut);
    sim.reboot();
    expect(sim.contains(KB1)).toBe(true); // durable, not yet erased
    const cutImg = sim.bytes();
    const e1 = sim.events;
    expect(show(reopen())).toBe(after); // load() erases it...
    const recovery = sim.events - e1;
    expect(recovery).toBeGreaterThan(0);
    expect(sim.contains(KB1)).toBe(false);
    // ...and a cut anywhere in that erasure leaves the state after, erased by the next load.
    for (let j = 0; j < recovery; j++) {
      sim.restore(cutImg);
      sim.reboot();
      sim.cutAfter(j);
      expect(() => open().load()).toThrow(PowerCut);
      sim.reboot();
      expect(show(reopen())).toBe(after);
      expect(sim.contains(KB1)).toBe(false);
    }
  });

  it('a damaged record: load() returns the state of the last complete commit, the next commit starts a new file', () => {
    for (const p of PROFILES) {
      const { sim, open, reopen } = device(p);
      const c1 = [topic(TC, KC1), cal(T0 + 1)];
      const c2 = [cal(T0 + 2)];
      const c3 = [topic(TB, KB1, null, T0), cal(T0 + 3)];
      commitAll(open(), [P0, c1, c2, c3]);
      const g = groups(fileOf(sim, 'e4s0'));
      expect(g.length).toBe(4);
      sim.corruptFile('e4s0', g[2] + 13, 0x01); // a bit of c2's calibration time
      expect(show(reopen())).toBe(show(model([P0, c1])));
      const s = open();
      s.load();
      s.commit(NEXT);
      expect(sim.list()).toContain('e4s1');
      expect(sim.list()).not.toContain('e4s0');
      expect(show(reopen())).toBe(show(model([P0, c1, NEXT])));
    }
  });

  it('a damaged record before a removal is reported: the removed key cannot come back', () => {
    const { sim, open, reopen } = device();
    commitAll(open(), [P0, [cal(T0 + 1)], [{ op: 'removeTopic', hash: TB }, cal(T0 + 2)]]);
    expect(sim.contains(KB1)).toBe(false);
    sim.corruptFile('e4s0', groups(fileOf(sim, 'e4s0'))[1] + 13, 0x01);
    expectE4(() => reopen(), PERSISTENCE_ERROR);
  });

  it('a damaged live key is reported, never loaded as a wrong key', () => {
    const { sim, open, reopen } = device();
    commitAll(open(), [P0, [cal(T0)]]);
    const g = groups(fileOf(sim, 'e4s0'));
    sim.corruptFile('e4s0', g[0] + 4 + 20 + 5, 0x10); // provision's client key
    expectE4(() => reopen(), PERSISTENCE_ERROR);
  });

  it('a damaged snapshot in the only file is reported (not taken for an empty store)', () => {
    const { sim, open, reopen } = device();
    commitAll(open(), [P0, [cal(T0)]]);
    sim.corruptFile('e4s0', 12 + 4 + 2, 0x01); // provision's padding
    expectE4(() => reopen(), PERSISTENCE_ERROR);
    const before = sim.bytes();
    expectE4(() => open().commit([cal(T0 + 1)]), PERSISTENCE_ERROR);
    expect(Buffer.compare(sim.bytes(), before)).toBe(0);
  });

  it('a file of another format or version is PERSISTENCE_INCOMPATIBLE and is left alone', () => {
    for (const content of ['{"wifi":"home"}', 'E4S\x02' + '\x00'.repeat(40), 'E41P' + '\x11'.repeat(50)]) {
      const { sim, open } = device();
      sim.write('e4s1', content);
      const before = sim.bytes();
      expectE4(() => open().load(), PERSISTENCE_INCOMPATIBLE);
      expectE4(() => open().commit(P0), PERSISTENCE_INCOMPATIBLE);
      expect(Buffer.compare(sim.bytes(), before)).toBe(0);
    }
  });

  it('the store uses its own names only', () => {
    const { sim, open, reopen } = device();
    sim.write('e4s', 'other');
    sim.write('e4s2', 'other');
    const s = flashStore(sim, { ...storeOptions(sim, PUCK), name: 'keys' });
    s.load();
    s.commit(P0);
    expect(sim.list().sort()).toEqual(['.bootcde', 'e4s', 'e4s2', 'keys0']);
    expect(reopen()).toBe(null);
    commitAll(open(), [P0]);
    expect(show(flashStore(sim, { ...storeOptions(sim, PUCK), name: 'keys', crc32: undefined }).load())).toBe(show(model([P0])));
  });
});

describe('failures', () => {
  it('full Storage: a commit that needs a new file throws PERSISTENCE_ERROR and changes nothing, even where a compaction would make room; appends and removals still work', () => {
    for (const trash of [false, true]) {
      const sim = new FlashSim({ size: 8192 });
      sim.write('.bootcde', ' '.repeat(trash ? 4500 : 6500));
      if (trash) {
        sim.write('old', ' '.repeat(2000)); // unlinked, still on the medium: Espruino would compact it away
        sim.erase('old');
      }
      const open = () => flashStore(sim, { zero: storageZero(sim.flash, sim, sim.start, sim.end) });
      const s = open();
      s.load();
      s.commit(P0);
      let last = model([P0]);
      let err: unknown = null;
      let img = sim.bytes();
      for (let i = 0; i < 100 && !err; i++) {
        img = sim.bytes();
        try {
          s.commit([cal(T0 + i)]);
          last = applyChanges(last, [cal(T0 + i)]);
        } catch (e) {
          err = e;
        }
      }
      expect(String(err)).toMatch(/Storage full/);
      expect(isE4Error(err) && err.code).toBe(PERSISTENCE_ERROR);
      expect(Buffer.compare(sim.bytes(), img)).toBe(0);
      expect(sim.stats.compact).toBe(0);
      expect(show(open().load())).toBe(show(last));
      expect(sim.list()).toEqual(['.bootcde', 'e4s0']);
    }
    // A removal is an append plus zeroing: it needs no new file.
    const sim = new FlashSim({ size: 8192 });
    sim.write('.bootcde', ' '.repeat(6500));
    const s = flashStore(sim, { zero: storageZero(sim.flash, sim, sim.start, sim.end) });
    s.load();
    s.commit(P0);
    s.commit([{ op: 'removeTopic', hash: TB }]);
    expect(sim.contains(KB1)).toBe(false);
  });

  it('a store with no way to erase keys cannot be made', () => {
    const sim = new FlashSim();
    expectE4(() => flashStore(sim), PARAMETER_INVALID);
    expectE4(() => flashStore(sim, { crc32 }), PARAMETER_INVALID);
  });

  it('a failed write throws, and neither the session nor a reboot sees the failed commit', () => {
    for (const fault of [{}, { after: 20 }, { returnFalse: true }, { after: 8, returnFalse: true }]) {
      for (const p of PROFILES) {
        const { sim, open, reopen } = device(p);
        const s = open();
        commitAll(s, [P0]);
        sim.failNext('write', fault);
        const failed: Change[] = [topic(TC, KC1), cal(T0 + 1)];
        let err: unknown = null;
        try {
          s.commit(failed);
        } catch (e) {
          err = e;
        }
        expect(err).not.toBe(null);
        if (fault.returnFalse) expect(isE4Error(err) && err.code).toBe(PERSISTENCE_ERROR);
        expect(show(reopen())).toBe(show(model([P0])));
        s.commit(NEXT); // same session: starts a new file past the failed bytes
        expect(show(reopen())).toBe(show(model([P0, NEXT])));
        expect(sim.contains(KC1)).toBe(false); // zeroed with the old file, or erased with it
      }
    }
  });

  it('a failed new file (compaction) throws and keeps the old one', () => {
    const { sim, open, reopen } = device(PUCK, 4, FULL);
    const s = open();
    commitAll(s, [P0, ...filling(FULL)]);
    const before = show(reopen());
    sim.failNext('write', { after: 40 });
    expect(() => s.commit([cal(T0 + 999)])).toThrow(/injected/);
    expect(show(reopen())).toBe(before);
    expect(sim.list()).toEqual(['.bootcde', 'e4s0']);
    s.commit([cal(T0 + 999)]);
    expect(show(reopen())).toBe(show(applyChanges(model([P0, ...filling(FULL)]), [cal(T0 + 999)])));
  });

  it('a failed erasure throws; the commit is durable and the next load erases the key', () => {
    const { sim, open, reopen } = device();
    const s = open();
    commitAll(s, [P0]);
    sim.failNext('flashWrite');
    expect(() => s.commit([{ op: 'removeTopic', hash: TB }])).toThrow(/injected/);
    expect(sim.contains(KB1)).toBe(true);
    expect(show(reopen())).toBe(show(model([P0, [{ op: 'removeTopic', hash: TB }]])));
    expect(sim.contains(KB1)).toBe(false);
  });

  it('bad input: nothing is written', () => {
    const { sim, open } = device();
    const s = open();
    commitAll(s, [P0]);
    const before = sim.bytes();
    sim.resetStats();
    s.commit([]);
    expectE4(() => s.commit([topic(TC, new Uint8Array(32))]), PARAMETER_INVALID); // all-zero key marks an erased key
    expectE4(() => s.commit([topic(TC, KC1.subarray(0, 31))]), PARAMETER_INVALID);
    expectE4(() => s.commit([cal(-5)]), PARAMETER_INVALID);
    expectE4(() => s.commit([{ op: 'bogus' } as unknown as Change]), PARAMETER_INVALID);
    expect(sim.stats.write).toBe(0);
    expect(Buffer.compare(sim.bytes(), before)).toBe(0);
  });

  it('storageZero finds a file by walking the header chain, across pages and past erased files, and refuses to write where the file is not', () => {
    for (const p of PROFILES.filter((x) => !x.port)) {
      const { sim, open } = device(p);
      sim.write('gone', 'x'.repeat(p.pageSize + 100));
      sim.erase('gone');
      commitAll(open(), [P0]);
      for (const name of ['.bootcde', 'e4s0']) expect(findFile(sim.flash, sim.start, sim.end, name)).toBe(sim.addressOf(name));
      expect(findFile(sim.flash, sim.start, sim.end, 'gone')).toBe(0);
      expect(findFile(sim.flash, sim.start, sim.end, 'e4s')).toBe(0);
      const before = sim.bytes();
      // A wrong start (not Storage's first header) finds nothing; a start inside a file's data
      // that happens to look like a chain would be caught by the byte check.
      expectE4(() => storageZero(sim.flash, sim, sim.start + p.pageSize, sim.end)('e4s0', [0, 36]), PERSISTENCE_ERROR);
      expectE4(() => storageZero(sim.flash, sim, sim.start, sim.end)('nofile', [0, 36]), PERSISTENCE_ERROR);
      expect(Buffer.compare(sim.bytes(), before)).toBe(0);
      const lying = { read: (name: string, o?: number, l?: number) => (sim.read(name, o, l) as string).replace(/^./, '?') };
      expectE4(() => storageZero(sim.flash, lying, sim.start, sim.end)('e4s0', [0, 36]), PERSISTENCE_ERROR);
      expect(Buffer.compare(sim.bytes(), before)).toBe(0);
      const f0 = new Uint8Array(sim.readArrayBuffer('e4s0')!);
      const zero = storageZero(sim.flash, sim, sim.start, sim.end);
      zero('e4s0', [4, 8, 16, 4]);
      expect(new Uint8Array(sim.readArrayBuffer('e4s0')!)).toEqual(f0.fill(0, 4, 12).fill(0, 16, 20));
      // The file moves (a compaction): the hook finds it where it is now.
      sim.erase('.bootcde');
      sim.compact();
      const f1 = new Uint8Array(sim.readArrayBuffer('e4s0')!);
      const img = sim.bytes();
      zero('e4s0', [24, 4]);
      expect(new Uint8Array(sim.readArrayBuffer('e4s0')!)).toEqual(f1.fill(0, 24, 28));
      const changed = sim.bytes().reduce((n, v, i) => n + (v !== img[i] ? 1 : 0), 0);
      expect(changed).toBeLessThanOrEqual(4);
    }
  });
});

describe("the store's place in flash on each Espruino build (boards/espruino/boot.ts)", () => {
  it('storageArea: FLASH_SAVED_CODE_START from process.memory() on ARM builds, 0x320000 on ESP32 builds, 0x10000000 on Linux, none elsewhere', () => {
    expect(storageArea({ BOARD: 'PUCKJS', STORAGE: 40960 }, { flash_code_start: 0x6c000 })).toEqual([0x6c000, 0x76000]);
    expect(storageArea({ BOARD: 'BANGLEJS2', STORAGE: 8388608 }, { flash_code_start: 0x60000000 })).toEqual([0x60000000, 0x60800000]);
    expect(storageArea({ BOARD: 'ESP32', STORAGE: 917504 }, {})).toEqual([0x320000, 0x400000]);
    expect(storageArea({ BOARD: 'ESP32C3_IDF4', STORAGE: 917504 }, {})).toEqual([0x320000, 0x400000]);
    expect(storageArea({ BOARD: 'LINUX', STORAGE: 262144 }, {})).toEqual([0x10000000, 0x10040000]);
    expect(storageArea({ BOARD: 'ESP8266_4MB', STORAGE: 12288 }, {})).toBe(null);
    expect(storageArea({ BOARD: 'LINUX' }, {})).toBe(null);
  });
});

describe('format', () => {
  it('crc32 is the IEEE CRC-32 of zlib (and of Espruino E.CRC32)', async () => {
    const { crc32: zlibCrc } = await import('node:zlib');
    for (const label of ['', 'a', 'monitor-1', 'x'.repeat(1000)]) {
      const b = new TextEncoder().encode(label);
      expect(crc32(b) >>> 0).toBe(zlibCrc(b));
    }
  });

  it('load() with an empty Storage writes nothing; a torn first file reads as empty and is removed', () => {
    const { sim, open, reopen } = device();
    sim.resetStats();
    expect(reopen()).toBe(null);
    expect(sim.stats.bytesProgrammed).toBe(0);
    sim.write('e4s0', 'E4', 0, 1024); // header torn after 2 bytes
    expect(reopen()).toBe(null);
    expect(sim.list()).toEqual(['.bootcde']);
    commitAll(open(), [P0]);
    expect(show(reopen())).toBe(show(model([P0])));
  });

  it('a file reopened from disk (file-backed flash) gives the same state', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'e4-flash-'));
    try {
      const file = join(dir, 'espruino.flash');
      const a = new FlashSim({ file });
      commitAll(flashStore(a, { crc32, zero: storageZero(a.flash, a, a.start, a.end) }), [P0, TRANSITION]);
      const b = new FlashSim({ file });
      expect(show(flashStore(b, { zero: storageZero(b.flash, b, b.start, b.end) }).load())).toBe(show(model([P0, TRANSITION])));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
