/**
 * The E4 C2 (command-and-control) key manager, as a library.
 *
 *   const c2 = await initC2({ dbPath, passphrase, e4, send });   // creates the database
 *   const c2 = await openC2({ dbPath, passphrase, e4, send });   // opens and verifies it
 *   await c2.addDevice({ name: 'monitor-1' }); await c2.addTopic('health/heart-rate');
 *   await c2.grant('monitor-1', 'health/heart-rate', { role: 'pub' });
 *   await c2.rotateTopic('health/heart-rate');                     // consumers first
 *   await c2.close();
 *
 * `dbPath` is a SQLite file or a postgres:// URL (store.ts). `e4` is the image's wire-format
 * surface (see e4.ts: adaptE4(module.exports of dist/e4.js)), or a function returning it (loaded
 * on first use). `send(controlTopic, bytes, { qos: 2 })` publishes one command and resolves once
 * the broker acknowledged it (QoS 2: PUBCOMP). It means the broker has taken responsibility for
 * the message, not that the device received or applied it. Without `send`, commands stay queued
 * in the database until `flush()` with a sender.
 *
 * Every command is protected with the device's client key and a timestamp that strictly
 * increases for that device. A new key (client or topic) becomes the key the C2 protects with
 * at once (commands reach a device in order); older keys are kept until a newer one has been
 * acknowledged, so a key a device may still hold is never lost. See docs/c2.md.
 *
 * Several C2 processes may share one database. Every operation is one transaction that locks
 * what it changes (PostgreSQL: the topic row, then the device rows in id order, SELECT ... FOR
 * UPDATE; SQLite: the database's write lock), so two rotations of a topic make two generations
 * one after the other and a device's timestamps and sequence numbers never repeat. Sending is
 * claimed per device (commands.claim): one process sends a device's queued commands, in order;
 * a claim left by a process that died is taken over (same host: its pid is gone; else after
 * `claimLeaseS`), which is how a rotation interrupted by a crash resumes.
 */
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { C2Error, DEFAULT_KDF, Store } from './store.ts';
import type { KdfParams, Passphrase, Row, SqlValue } from './store.ts';
import type { CommandKind, CommandRow, DeviceRow, GrantRow, Role, TopicRow } from './schema.ts';
import { adaptE4 } from './e4.ts';
import type { C2E4 } from './e4.ts';

export { C2Error, DEFAULT_KDF } from './store.ts';
export type { C2ErrorCode, KdfParams } from './store.ts';
export type { Role } from './schema.ts';

export const ROLES: readonly Role[] = ['pub', 'sub', 'both'];
const HEX_ID = /^[0-9a-fA-F]{32}$/;
const enc = new TextEncoder();

function toHex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}
function fromHex(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'hex'));
}
function newKey(): Uint8Array {
  const b = randomBytes(32);
  const k = new Uint8Array(b);
  b.fill(0);
  return k;
}
function wipe(b: Uint8Array | null | undefined): void {
  if (b) b.fill(0);
}
const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** A data topic the C2 can manage: non-empty MQTT topic name, no wildcards, outside `e4/` and `$`. */
export function checkTopic(topic: unknown): string {
  if (typeof topic !== 'string' || topic.length === 0) throw new C2Error('USAGE', 'a topic must be a non-empty string');
  if (enc.encode(topic).length > 65535) throw new C2Error('USAGE', 'a topic must be at most 65535 bytes (MQTT)');
  // eslint-disable-next-line no-control-regex -- NUL is the point: MQTT forbids it in topic names
  if (/[+#\u0000]/.test(topic)) throw new C2Error('USAGE', `topic ${JSON.stringify(topic)}: wildcards (+, #) and NUL are not allowed`);
  if (topic.startsWith('e4/')) throw new C2Error('USAGE', `topic ${JSON.stringify(topic)}: the e4/ prefix is reserved for control topics`);
  if (topic.startsWith('$')) throw new C2Error('USAGE', `topic ${JSON.stringify(topic)}: topics starting with $ are reserved by brokers`);
  return topic;
}

export function checkRole(role: unknown): Role {
  const r = ROLES.find((x) => x === role);
  if (!r) throw new C2Error('USAGE', `role must be one of ${ROLES.join(', ')} (got ${JSON.stringify(role)})`);
  return r;
}

/** Runs async jobs with at most `limit` at once. */
async function pool(jobs: (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      await jobs[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  if (!ms) return promise;
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no acknowledgement within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

type E4Source = C2E4 | object | (() => unknown) | null | undefined;

function resolveE4(e4: E4Source): () => C2E4 {
  if (!e4)
    return () => {
      throw new C2Error('USAGE', 'this operation needs the E4 image: pass `e4` to openC2/initC2');
    };
  if (typeof e4 === 'function') {
    let cached: C2E4 | null = null;
    return () => (cached ||= adaptE4(e4()));
  }
  const adapted = adaptE4(e4);
  return () => adapted;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return !!e && typeof e === 'object' && 'code' in e && e.code === 'EPERM';
  }
}

/** QoS 2 publishes in flight at once. Mosquitto 2.0 completes the QoS 2 handshake for messages
 * beyond its max_inflight_messages (default 20) and then drops them, so the sender would believe
 * undelivered commands were acknowledged: stay below that limit. */
export const MAX_IN_FLIGHT = 16;

export type Send = (controlTopic: string, bytes: Uint8Array, options: { qos: 2 }) => unknown;

export interface C2Options {
  e4?: E4Source;
  send?: Send | null;
  /** Seconds since the epoch (fractions allowed). */
  now?: () => number;
  sendTimeoutMs?: number;
  concurrency?: number;
  /** Acknowledgements recorded per transaction while sending. */
  ackBatch?: number;
  /** A claim older than this (seconds) is taken over even from a process on another host. */
  claimLeaseS?: number;
}

export type DeviceRef = string | { id: string | Uint8Array; name?: undefined } | { name: string; id?: undefined };

export interface CommandReport {
  device: string;
  name: string | null;
  kind: CommandKind;
  topic: string | null;
  seq: number;
}
export interface Delivery {
  acked: CommandReport[];
  failed: (CommandReport & { error: string })[];
  queued: CommandReport[];
  deferred?: true;
}

export interface Holder {
  id: string;
  name: string | null;
  role: Role;
}
export interface Rotation {
  topic: string;
  gen: number;
  holders: Holder[];
}

interface QueueItem {
  dev: DeviceRow;
  kind: CommandKind;
  payload: Uint8Array;
  topic?: string | null;
  gen?: number | null;
  phase?: number;
}

/** A queued command as deliver() handles it. */
interface Outgoing extends CommandRow {
  name: string | null;
  topic_name: string | null;
  done?: boolean;
}

export interface DeviceConfigOptions {
  options?: object;
  clock?: string;
  transport?: object;
}
export interface DeviceConfigFile {
  format: 'e4-device';
  version: 1;
  name?: string;
  id: string;
  key: string;
  topics: { topic: string; hash: string; key: string }[];
  options?: object;
  clock?: string;
  transport?: object;
}

export interface PendingCommand {
  seq: number;
  kind: CommandKind;
  topic: string | null;
  gen: number | null;
  state: 'queued' | 'at-broker';
  since: number | null;
  seenSince: 'never' | 'yes' | 'no' | null;
}
export interface DeviceListing {
  id: string;
  name: string | null;
  controlTopic: string;
  keyGen: number;
  ackedKeyGen: number;
  lastSeen: number | null;
  topics: { topic: string; role: Role; gen: number; ackedGen: number | null; seenGen: number | null }[];
  pending: PendingCommand[];
}
export interface TopicListing {
  topic: string;
  hash: string;
  gen: number;
  keysKept: number;
  holders: Holder[];
}
export interface Listing {
  backend: 'sqlite' | 'postgres';
  devices: DeviceListing[];
  topics: TopicListing[];
}

export interface Observation {
  topic: string;
  gen: number;
  current: boolean;
  device: string | null;
}

const ROLE_ORDER: { [R in Role]: number } = { sub: 0, both: 1, pub: 2 };

export class C2 {
  readonly store: Store;
  readonly e4: () => C2E4;
  send: Send | null;
  readonly now: () => number;
  readonly sendTimeoutMs: number;
  readonly concurrency: number;
  readonly ackBatch: number;
  readonly claimLeaseS: number;
  /** Who holds a delivery claim: host, pid and a random tag (one per C2 object). */
  readonly claimant = `${os.hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  private chain: Promise<unknown> = Promise.resolve();
  private inBatch = false;

  constructor(
    store: Store,
    { e4, send, now, sendTimeoutMs = 15000, concurrency = MAX_IN_FLIGHT, ackBatch = 2000, claimLeaseS = 120 }: C2Options = {},
  ) {
    this.store = store;
    this.e4 = resolveE4(e4);
    this.send = send || null;
    this.now = now || (() => Date.now() / 1000);
    this.sendTimeoutMs = sendTimeoutMs;
    this.concurrency = concurrency;
    this.ackBatch = ackBatch;
    this.claimLeaseS = claimLeaseS;
  }

  get dbPath(): string {
    return this.store.where;
  }

  /** Replaces the publisher, e.g. once an MQTT connection is up. */
  setSend(send: Send | null | undefined): void {
    this.send = send || null;
  }

  seconds(): number {
    return Math.floor(this.now());
  }

  /** Operations run one at a time, in call order (inside `batch`, directly: the batch holds the turn). */
  exclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    if (this.inBatch) return Promise.resolve().then(fn);
    const run = this.chain.then(fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /**
   * Runs many operations as one: `await c2.batch(async (c2) => { await c2.addDevice(...); ... })`.
   * One transaction; queued commands are sent once, after it (rotations still consumers first).
   * All or nothing: if fn throws, every change made inside is dropped. Only the operations fn
   * awaits may run meanwhile. Returns { result, delivery }.
   */
  batch<T>(fn: (c2: C2) => Promise<T>): Promise<{ result: T; delivery: Delivery }> {
    return this.exclusive(async () => {
      this.inBatch = true;
      let result: T;
      try {
        result = await this.store.transaction(() => fn(this));
      } finally {
        this.inBatch = false;
      }
      return { result, delivery: await this.deliver() };
    });
  }

  // ---------------------------------------------------------------- lookups

  /** The device's row; `lock` takes its row lock for the rest of the transaction (PostgreSQL). */
  async device(ref: DeviceRef, { lock = false }: { lock?: boolean } = {}): Promise<DeviceRow> {
    const s = this.store;
    const tail = lock ? s.forUpdate : '';
    let row: DeviceRow | undefined;
    if (ref && typeof ref === 'object') {
      if (typeof ref.id === 'string') row = await s.readOne('devices', 'id = ?' + tail, [ref.id.toLowerCase()]);
      else if (ref.id instanceof Uint8Array) row = await s.readOne('devices', 'id = ?' + tail, [toHex(ref.id)]);
      else if (typeof ref.name === 'string') row = await s.readOne('devices', 'name = ?' + tail, [ref.name]);
      else throw new C2Error('USAGE', 'a device is named by { name } or { id }');
    } else if (typeof ref === 'string') {
      if (HEX_ID.test(ref)) row = await s.readOne('devices', 'id = ?' + tail, [ref.toLowerCase()]);
      if (!row) row = await s.readOne('devices', 'name = ?' + tail, [ref]);
    } else throw new C2Error('USAGE', 'a device is named by its name or its 32-hex-digit id');
    if (!row) {
      const shown = typeof ref === 'object' ? (ref.name ?? (typeof ref.id === 'string' ? ref.id : toHex(ref.id))) : ref;
      throw new C2Error('NOT_FOUND', `no device ${JSON.stringify(shown)} in the C2 database`);
    }
    return row;
  }

  /** Many devices by name or id (strings), in the order given; one query per few thousand. */
  async devices(refs: readonly DeviceRef[], { lock = false }: { lock?: boolean } = {}): Promise<DeviceRow[]> {
    const names = refs.map((r) => (typeof r === 'string' ? r : r && typeof r === 'object' && typeof r.name === 'string' ? r.name : null));
    if (names.some((x) => x === null)) {
      const out: DeviceRow[] = [];
      for (const r of refs) out.push(await this.device(r, { lock }));
      return out;
    }
    const wanted = names.filter((x): x is string => x !== null);
    const byId = new Map<string, DeviceRow>();
    const byName = new Map<string, DeviceRow>();
    // Rows in id order: two transactions locking overlapping sets never wait on each other in a cycle.
    const tail = ` ORDER BY id${lock ? this.store.forUpdate : ''}`;
    for (let i = 0; i < wanted.length; i += 5000) {
      const chunk = wanted.slice(i, i + 5000);
      const marks = chunk.map(() => '?').join(', ');
      const ids = chunk.filter((x) => HEX_ID.test(x)).map((x) => x.toLowerCase());
      const rows = await this.store.read(
        'devices',
        `name IN (${marks})${ids.length ? ` OR id IN (${ids.map(() => '?').join(', ')})` : ''}${tail}`,
        [...chunk, ...ids],
      );
      for (const d of rows) {
        byId.set(d.id, d);
        if (d.name !== null) byName.set(d.name, d);
      }
    }
    return wanted.map((ref) => {
      const d = (HEX_ID.test(ref) ? byId.get(ref.toLowerCase()) : undefined) ?? byName.get(ref);
      if (!d) throw new C2Error('NOT_FOUND', `no device ${JSON.stringify(ref)} in the C2 database`);
      return d;
    });
  }

  async topic(name: unknown, { lock = false }: { lock?: boolean } = {}): Promise<TopicRow> {
    if (typeof name !== 'string') throw new C2Error('USAGE', 'a topic is named by a string');
    const row = await this.store.readOne('topics', 'topic = ?' + (lock ? this.store.forUpdate : ''), [name]);
    if (!row) throw new C2Error('NOT_FOUND', `no topic ${JSON.stringify(name)} in the C2 database (add-topic first)`);
    return row;
  }

  async deviceKey(id: string, gen: number): Promise<Uint8Array> {
    const row = await this.store.readOne('device_keys', 'device = ? AND gen = ?', [id, gen]);
    if (!row) throw new C2Error('INTEGRITY', `the key of device ${id} (generation ${gen}) is missing`);
    return this.store.unseal(`e4-c2/v1|device-key|${id}|${gen}`, row.sealed);
  }

  async topicKey(hash: string, gen: number): Promise<Uint8Array> {
    const row = await this.store.readOne('topic_keys', 'topic = ? AND gen = ?', [hash, gen]);
    if (!row) throw new C2Error('INTEGRITY', `the key of topic ${hash} (generation ${gen}) is missing`);
    return this.store.unseal(`e4-c2/v1|topic-key|${hash}|${gen}`, row.sealed);
  }

  async putDeviceKey(id: string, gen: number, key: Uint8Array): Promise<void> {
    await this.store.write('device_keys', [
      { device: id, gen, sealed: this.store.seal(`e4-c2/v1|device-key|${id}|${gen}`, key), created: this.seconds() },
    ]);
  }

  async putTopicKey(hash: string, gen: number, key: Uint8Array): Promise<void> {
    await this.store.write('topic_keys', [
      { topic: hash, gen, sealed: this.store.seal(`e4-c2/v1|topic-key|${hash}|${gen}`, key), created: this.seconds() },
    ]);
  }

  /** The current client keys of many devices (one query per few thousand). */
  private async currentDeviceKeys(devs: readonly DeviceRow[]): Promise<Map<string, Uint8Array>> {
    const out = new Map<string, Uint8Array>();
    const gen = new Map(devs.map((d) => [d.id, d.key_gen]));
    const ids = [...gen.keys()];
    for (let i = 0; i < ids.length; i += 5000) {
      const chunk = ids.slice(i, i + 5000);
      // A device keeps at most a few generations: read them all, keep the current one.
      for (const r of await this.store.read('device_keys', `device IN (${chunk.map(() => '?').join(', ')})`, chunk)) {
        if (gen.get(r.device) === r.gen) out.set(r.device, this.store.unseal(`e4-c2/v1|device-key|${r.device}|${r.gen}`, r.sealed));
      }
    }
    for (const d of devs)
      if (!out.has(d.id)) throw new C2Error('INTEGRITY', `the key of device ${d.id} (generation ${d.key_gen}) is missing`);
    return out;
  }

  /**
   * Protects commands for devices with their current client keys and queues them. Timestamps are
   * strictly increasing per device: the host clock's second, or one more than the last command's
   * if that is not later (a burst or a host clock stepping back). Equal timestamps would be
   * accepted by the device, but the same command twice in one second (grant, revoke, grant) would
   * then be byte-identical and rejected as a replay. Each `dev` must be the device's current row,
   * read (and on PostgreSQL locked) in this transaction; it is updated in place.
   */
  async queueAll(items: readonly QueueItem[]): Promise<void> {
    if (!items.length) return;
    const s = this.store;
    const keys = await this.currentDeviceKeys(items.map((i) => i.dev));
    const now = this.seconds();
    // A queued (never acknowledged) topic command that a new one overrides is not worth sending.
    // Not one that another C2 process is sending right now (it has the bytes and will send
    // them); the new command then follows it.
    const unclaimed = `(claim IS NULL OR claim = ? OR claimed_at < ?)`;
    const claimArgs = [this.claimant, now - this.claimLeaseS];
    const byTopic = new Map<string, string[]>();
    for (const it of items) {
      if ((it.kind !== 'set-topic-key' && it.kind !== 'remove-topic') || !it.topic) continue;
      let l = byTopic.get(it.topic);
      if (!l) byTopic.set(it.topic, (l = []));
      l.push(it.dev.id);
    }
    for (const [topic, ids] of byTopic) {
      for (let i = 0; i < ids.length; i += 5000) {
        const chunk = ids.slice(i, i + 5000);
        await s.run(
          `DELETE FROM commands WHERE topic = ? AND device IN (${chunk.map(() => '?').join(', ')})
           AND status = 'queued' AND kind IN ('set-topic-key', 'remove-topic') AND ${unclaimed}`,
          [topic, ...chunk, ...claimArgs],
        );
      }
    }
    for (const it of items) {
      if (it.kind === 'reset-topics') {
        await s.run(
          `DELETE FROM commands WHERE device = ? AND status = 'queued' AND kind IN ('set-topic-key', 'remove-topic', 'reset-topics') AND ${unclaimed}`,
          [it.dev.id, ...claimArgs],
        );
      }
    }
    const commands: CommandRow[] = [];
    try {
      for (const it of items) {
        const d = it.dev;
        const ts = Math.max(now, d.last_ts + 1);
        const key = keys.get(d.id);
        if (!key) throw new C2Error('INTEGRITY', `the key of device ${d.id} is missing`);
        const msg = this.e4().protect(key, ts, it.payload);
        commands.push({
          device: d.id,
          seq: d.next_seq,
          ts,
          kind: it.kind,
          topic: it.topic ?? null,
          gen: it.gen ?? null,
          phase: it.phase ?? 0,
          status: 'queued',
          message: msg,
          created: now,
          acked: null,
        });
        d.last_ts = ts;
        d.next_seq += 1;
      }
    } finally {
      for (const k of keys.values()) wipe(k);
      for (const it of items) wipe(it.payload);
    }
    await s.write('commands', commands);
    const devs = new Map(items.map((i) => [i.dev.id, i.dev]));
    await s.write('devices', [...devs.values()]);
  }

  queue(
    dev: DeviceRow,
    kind: CommandKind,
    payload: Uint8Array,
    opts: { topic?: string | null; gen?: number | null; phase?: number } = {},
  ): Promise<void> {
    return this.queueAll([{ dev, kind, payload, ...opts }]);
  }

  /** Drops a device's client keys it can no longer hold: older than the one before the newest
   * acknowledged. */
  private async retainDevice(d: DeviceRow): Promise<void> {
    await this.store.run('DELETE FROM device_keys WHERE device = ? AND gen < ?', [d.id, d.acked_key_gen - 1]);
  }

  /** Drops a topic's keys no holder can still have: older than the one before the oldest key a
   * holder may have (acknowledged, or else the one queued to it). */
  private async retainTopic(t: TopicRow): Promise<void> {
    const r = await this.store.get('SELECT MIN(COALESCE(acked_gen, gen)) AS g FROM grants WHERE topic = ?', [t.hash]);
    const oldest = typeof r?.g === 'number' ? Math.min(r.g, t.key_gen) : t.key_gen;
    await this.store.run('DELETE FROM topic_keys WHERE topic = ? AND gen < ?', [t.hash, oldest - 1]);
  }

  // ---------------------------------------------------------------- operations

  private newDeviceRow(spec: unknown): DeviceRow {
    let id: string;
    let name: string | null = null;
    if (spec && typeof spec === 'object' && 'name' in spec && spec.name !== undefined) {
      if (typeof spec.name !== 'string') throw new C2Error('USAGE', 'a device name must be a string');
      if ('id' in spec && spec.id !== undefined) throw new C2Error('USAGE', 'give a device name or an id, not both');
      name = spec.name;
      id = toHex(this.e4().clientId(spec.name));
    } else if (spec && typeof spec === 'object' && 'id' in spec && spec.id !== undefined) {
      const raw = spec.id instanceof Uint8Array ? toHex(spec.id) : spec.id;
      if (typeof raw !== 'string' || !HEX_ID.test(raw)) throw new C2Error('USAGE', 'a device id is 16 bytes (32 hex digits)');
      id = raw.toLowerCase();
    } else throw new C2Error('USAGE', 'addDevice needs { name } or { id }');
    return { id, name, key_gen: 0, acked_key_gen: 0, last_ts: 0, next_seq: 1, last_seen: null, created: this.seconds() };
  }

  /** Registers a device from its name (id = SHA3-256(name)[0..16]) or its id; generates its key. */
  async addDevice(
    spec: { name: string } | { id: string | Uint8Array },
  ): Promise<{ id: string; name: string | null; controlTopic: string }> {
    const [d] = await this.addDevices([spec]);
    return d;
  }

  /** Registers many devices in one transaction (all or none). */
  addDevices(
    specs: readonly ({ name: string } | { id: string | Uint8Array })[],
  ): Promise<{ id: string; name: string | null; controlTopic: string }[]> {
    return this.exclusive(() => {
      const rows = specs.map((sp) => this.newDeviceRow(sp));
      const seen = new Set<string>();
      for (const r of rows) {
        if (seen.has(r.id)) throw new C2Error('EXISTS', `device ${r.name ?? r.id} is given twice`);
        seen.add(r.id);
      }
      return this.store.transaction(async () => {
        for (let i = 0; i < rows.length; i += 10000) {
          const chunk = rows.slice(i, i + 10000);
          const names = chunk.filter((r) => r.name !== null);
          const taken = await this.store.all(
            `SELECT id, name FROM devices WHERE id IN (${chunk.map(() => '?').join(', ')})${names.length ? ` OR name IN (${names.map(() => '?').join(', ')})` : ''}`,
            [...chunk.map((r) => r.id), ...names.map((r) => r.name)],
          );
          if (taken.length) throw new C2Error('EXISTS', `device ${String(taken[0].name ?? taken[0].id)} already exists`);
        }
        await this.store.write('devices', rows);
        const now = this.seconds();
        await this.store.write(
          'device_keys',
          rows.map((r) => {
            const key = newKey();
            const sealed = this.store.seal(`e4-c2/v1|device-key|${r.id}|0`, key);
            wipe(key);
            return { device: r.id, gen: 0, sealed, created: now };
          }),
        );
        return rows.map((r) => ({ id: r.id, name: r.name, controlTopic: 'e4/' + r.id }));
      });
    });
  }

  /** Registers a topic (hash = SHA3-256(topic)[0..16]) and generates its first key. */
  addTopic(topic: string): Promise<{ topic: string; hash: string }> {
    return this.exclusive(() => {
      checkTopic(topic);
      const hash = toHex(this.e4().topicHash(topic));
      return this.store.transaction(async () => {
        if (await this.store.get('SELECT hash FROM topics WHERE hash = ?', [hash]))
          throw new C2Error('EXISTS', `topic ${JSON.stringify(topic)} already exists`);
        await this.store.write('topics', [{ hash, topic, key_gen: 0, created: this.seconds() }]);
        const key = newKey();
        await this.putTopicKey(hash, 0, key);
        wipe(key);
        return { topic, hash };
      });
    });
  }

  /** Gives a device a topic's current key (SetTopicKey). An existing grant only changes its role. */
  async grant(deviceRef: DeviceRef, topicName: string, { role = 'both' }: { role?: Role } = {}) {
    const r = await this.grantAll([deviceRef], topicName, { role });
    const [one] = r.grants;
    return { ...one, delivery: r.delivery };
  }

  /** Grants a topic to many devices in one transaction (all or none), then sends. */
  grantAll(deviceRefs: readonly DeviceRef[], topicName: string, { role = 'both' }: { role?: Role } = {}) {
    return this.exclusive(async () => {
      checkRole(role);
      const grants = await this.store.transaction(async () => {
        const t = await this.topic(topicName, { lock: true });
        const found =
          deviceRefs.length > 1 ? await this.devices(deviceRefs, { lock: true }) : [await this.device(deviceRefs[0], { lock: true })];
        const devs = [...new Map(found.map((d) => [d.id, d])).values()]; // each device once
        const existing = new Map<string, GrantRow>();
        for (let i = 0; i < devs.length; i += 10000) {
          const chunk = devs.slice(i, i + 10000);
          for (const g of await this.store.read('grants', `topic = ? AND device IN (${chunk.map(() => '?').join(', ')})`, [
            t.hash,
            ...chunk.map((d) => d.id),
          ]))
            existing.set(g.device, g);
        }
        const out: { device: string; name: string | null; topic: string; role: Role; changed: boolean; sent: boolean }[] = [];
        const changedRoles: GrantRow[] = [];
        const fresh: GrantRow[] = [];
        const toQueue: DeviceRow[] = [];
        for (const d of devs) {
          const g = existing.get(d.id);
          if (g) {
            if (g.role !== role) changedRoles.push({ ...g, role });
            out.push({ device: d.id, name: d.name, topic: t.topic, role, changed: g.role !== role, sent: false });
            continue;
          }
          fresh.push({ device: d.id, topic: t.hash, role, gen: t.key_gen, acked_gen: null, seen_gen: null, created: this.seconds() });
          toQueue.push(d);
          existing.set(d.id, fresh[fresh.length - 1]);
          out.push({ device: d.id, name: d.name, topic: t.topic, role, changed: true, sent: true });
        }
        await this.store.write('grants', [...changedRoles, ...fresh]);
        if (toQueue.length) {
          const key = await this.topicKey(t.hash, t.key_gen);
          const hash = fromHex(t.hash);
          try {
            await this.queueAll(
              toQueue.map((dev) => ({
                dev,
                kind: 'set-topic-key' as const,
                payload: this.e4().commands.setTopicKey(key, hash),
                topic: t.hash,
                gen: t.key_gen,
              })),
            );
          } finally {
            wipe(key);
          }
        }
        return out;
      });
      return { grants, delivery: await this.deliver() };
    });
  }

  /**
   * Takes a topic away from a device (RemoveTopic). The device knew the key, so with
   * `rotate: true` the topic key is also rotated for the remaining holders.
   */
  revoke(deviceRef: DeviceRef, topicName: string, { rotate = false }: { rotate?: boolean } = {}) {
    return this.exclusive(async () => {
      const result = await this.store.transaction(async () => {
        const t = await this.topic(topicName, { lock: true });
        const d = await this.device(deviceRef, { lock: true });
        if (!(await this.store.readOne('grants', 'device = ? AND topic = ?', [d.id, t.hash]))) {
          throw new C2Error('NOT_FOUND', `device ${d.name ?? d.id} holds no grant for ${JSON.stringify(t.topic)}`);
        }
        await this.store.remove('grants', [[d.id, t.hash]]);
        await this.queue(d, 'remove-topic', this.e4().commands.removeTopic(fromHex(t.hash)), { topic: t.hash });
        const out: { device: string; name: string | null; topic: string; rotated: Rotation | null } = {
          device: d.id,
          name: d.name,
          topic: t.topic,
          rotated: null,
        };
        if (rotate) out.rotated = await this.rotateTopicTx(t);
        await this.retainTopic(t);
        return out;
      });
      return { ...result, delivery: await this.deliver() };
    });
  }

  /** The rotation itself, inside a transaction that holds the topic's row lock. */
  private async rotateTopicTx(t: TopicRow): Promise<Rotation> {
    const s = this.store;
    // Lock the holders' device rows (id order: two rotations never wait on each other in a
    // cycle), then read the grants again: a grant added or removed meanwhile is seen.
    if (s.dialect === 'postgres')
      await s.all(`SELECT id FROM devices WHERE id IN (SELECT device FROM grants WHERE topic = ?) ORDER BY id FOR UPDATE`, [t.hash]);
    const grants = await s.read('grants', 'topic = ?', [t.hash]);
    const devs = new Map<string, DeviceRow>();
    for (let i = 0; i < grants.length; i += 10000) {
      const chunk = grants.slice(i, i + 10000);
      for (const d of await s.read(
        'devices',
        `id IN (${chunk.map(() => '?').join(', ')})`,
        chunk.map((g) => g.device),
      ))
        devs.set(d.id, d);
    }
    // Consumers first: phase 1 (subscribe-only) is handed to the broker before phase 2.
    grants.sort((a, b) => ROLE_ORDER[a.role] - ROLE_ORDER[b.role] || (a.device < b.device ? -1 : a.device > b.device ? 1 : 0));
    const gen = t.key_gen + 1;
    const key = newKey();
    const hash = fromHex(t.hash);
    const items: QueueItem[] = [];
    try {
      await this.putTopicKey(t.hash, gen, key);
      await s.write('topics', [{ ...t, key_gen: gen }]);
      for (const g of grants) {
        const dev = devs.get(g.device);
        if (!dev) throw new C2Error('INTEGRITY', `grant of ${t.topic} to an unknown device ${g.device}`);
        items.push({
          dev,
          kind: 'set-topic-key',
          payload: this.e4().commands.setTopicKey(key, hash),
          topic: t.hash,
          gen,
          phase: g.role === 'sub' ? 1 : 2,
        });
      }
      await this.queueAll(items);
    } finally {
      wipe(key);
    }
    await s.write(
      'grants',
      grants.map((g) => ({ ...g, gen })),
    );
    return { topic: t.topic, gen, holders: grants.map((g) => ({ id: g.device, name: devs.get(g.device)?.name ?? null, role: g.role })) };
  }

  /** New key for a topic, sent to every holder: subscribers first, then publishers. */
  rotateTopic(topicName: string) {
    return this.exclusive(async () => {
      const result = await this.store.transaction(async () => {
        const t = await this.topic(topicName, { lock: true });
        const r = await this.rotateTopicTx(t);
        await this.retainTopic({ ...t, key_gen: r.gen });
        return r;
      });
      return { ...result, delivery: await this.deliver() };
    });
  }

  /** New client key (SetIdKey, protected with the current one). */
  rotateDeviceKey(deviceRef: DeviceRef) {
    return this.exclusive(async () => {
      const result = await this.store.transaction(async () => {
        const d = await this.device(deviceRef, { lock: true });
        const key = newKey();
        const gen = d.key_gen + 1;
        try {
          await this.queue(d, 'set-id-key', this.e4().commands.setIdKey(key), { gen });
          await this.putDeviceKey(d.id, gen, key);
        } finally {
          wipe(key);
        }
        d.key_gen = gen;
        await this.store.write('devices', [d]);
        return { device: d.id, name: d.name, gen };
      });
      return { ...result, delivery: await this.deliver() };
    });
  }

  /** Removes every topic key from a device (ResetTopics) and all its grants. */
  resetDevice(deviceRef: DeviceRef) {
    return this.exclusive(async () => {
      const result = await this.store.transaction(async () => {
        const d = await this.device(deviceRef, { lock: true });
        const grants = await this.store.read('grants', 'device = ?', [d.id]);
        await this.store.remove(
          'grants',
          grants.map((g) => [g.device, g.topic]),
        );
        await this.queue(d, 'reset-topics', this.e4().commands.resetTopics());
        return { device: d.id, name: d.name, removedGrants: grants.length };
      });
      return { ...result, delivery: await this.deliver() };
    });
  }

  /** Sends every queued command (in order per device; rotations' consumers before publishers),
   * including those a C2 process that died had claimed. */
  flush(): Promise<Delivery> {
    return this.exclusive(() => this.deliver());
  }

  private describe(c: Outgoing): CommandReport {
    return { device: c.device, name: c.name, kind: c.kind, topic: c.topic_name ?? c.topic, seq: c.seq };
  }

  /** True when a claim is held by a live C2 (this one excepted). */
  private claimLive(claim: SqlValue, claimedAt: SqlValue): boolean {
    if (typeof claim !== 'string' || claim === this.claimant) return false;
    if (typeof claimedAt !== 'number' || claimedAt < this.seconds() - this.claimLeaseS) return false;
    const [host, pid] = claim.split(':');
    if (host === os.hostname() && !pidAlive(Number(pid))) return false;
    return true;
  }

  /** Queued commands, checked; with `claim`, claimed for this process (devices another live
   * process is sending to are left to it). */
  private async queuedCommands(claim: boolean): Promise<Outgoing[]> {
    const s = this.store;
    const pick = async (): Promise<Outgoing[]> => {
      if (claim) await s.lock('e4-c2 claim');
      const rows = await s.all(
        `SELECT c.*, d.name AS device_name, t.topic AS topic_name FROM commands c JOIN devices d ON d.id = c.device
         LEFT JOIN topics t ON t.hash = c.topic WHERE c.status = 'queued' ORDER BY c.device, c.seq`,
      );
      const busy = new Set<string>();
      if (claim) for (const r of rows) if (this.claimLive(r.claim, r.claimed_at)) busy.add(String(r.device));
      const out: Outgoing[] = [];
      for (const r of rows) {
        if (busy.has(String(r.device))) continue;
        const c = s.checked('commands', r);
        out.push({
          ...c,
          name: typeof r.device_name === 'string' ? r.device_name : null,
          topic_name: typeof r.topic_name === 'string' ? r.topic_name : null,
        });
      }
      if (claim && out.length) {
        const now = this.seconds();
        const ids = [...new Set(out.map((c) => c.device))];
        for (let i = 0; i < ids.length; i += 5000) {
          const chunk = ids.slice(i, i + 5000);
          await s.run(
            `UPDATE commands SET claim = ?, claimed_at = ? WHERE device IN (${chunk.map(() => '?').join(', ')}) AND status = 'queued'`,
            [this.claimant, now, ...chunk],
          );
        }
      }
      return out;
    };
    return claim ? s.transaction(pick) : pick();
  }

  async deliver(): Promise<Delivery> {
    if (this.inBatch) return { acked: [], failed: [], queued: [], deferred: true };
    const report: Delivery = { acked: [], failed: [], queued: [] };
    const send = this.send;
    if (!send || this.store.readOnly) {
      report.queued = (await this.queuedCommands(false)).map((c) => this.describe(c));
      return report;
    }
    const rows = await this.queuedCommands(true);
    if (!rows.length) return report;
    const byDevice = new Map<string, Outgoing[]>();
    for (const c of rows) {
      let list = byDevice.get(c.device);
      if (!list) byDevice.set(c.device, (list = []));
      list.push(c);
    }
    const blocked = new Set<string>();
    const failedSeq = new Set<string>();
    // A broker that has gone away fails every publish (each after sendTimeoutMs): after this many
    // failures in a row the rest is not tried now, and stays queued for the next flush.
    const giveUpAfter = Math.max(8, 2 * this.concurrency);
    let failuresInARow = 0;
    let pendingAcks: Outgoing[] = [];
    let recording: Promise<void> = Promise.resolve();
    const flushAcks = () => {
      const batch = pendingAcks;
      pendingAcks = [];
      if (batch.length) recording = recording.then(() => this.recordAcks(batch));
      return recording;
    };
    try {
      for (const round of [1, 2]) {
        const jobs: (() => Promise<void>)[] = [];
        for (const [id, list] of byDevice) {
          jobs.push(async () => {
            for (const c of list) {
              if (c.done) continue;
              if (blocked.has(id) || failuresInARow >= giveUpAfter || (round === 1 && c.phase >= 2)) break;
              try {
                const bytes = c.message;
                if (!bytes) throw new C2Error('INTEGRITY', `queued command ${c.device} #${c.seq} has no message`);
                await withTimeout(
                  Promise.resolve().then(() => send('e4/' + id, bytes, { qos: 2 })),
                  this.sendTimeoutMs,
                );
              } catch (e) {
                failuresInARow++;
                blocked.add(id);
                failedSeq.add(`${c.device}#${c.seq}`);
                report.failed.push({ ...this.describe(c), error: message(e) });
                break;
              }
              failuresInARow = 0;
              c.done = true;
              report.acked.push(this.describe(c));
              pendingAcks.push(c);
              if (pendingAcks.length >= this.ackBatch) void flushAcks();
            }
          });
        }
        await pool(jobs, this.concurrency);
      }
    } finally {
      await flushAcks();
      // What was not sent is free for any C2 again.
      await this.store.run(`UPDATE commands SET claim = NULL, claimed_at = NULL WHERE claim = ? AND status = 'queued'`, [this.claimant]);
    }
    for (const c of rows) if (!c.done && !failedSeq.has(`${c.device}#${c.seq}`)) report.queued.push(this.describe(c));
    return report;
  }

  /** The broker has these commands (QoS 2 PUBCOMP): mark them, and drop the earlier acknowledged
   * commands they supersede and the keys no device can hold any more. One transaction. */
  private recordAcks(batch: readonly Outgoing[]): Promise<void> {
    const s = this.store;
    return s.transaction(async () => {
      const now = this.seconds();
      const ids = [...new Set(batch.map((c) => c.device))];
      const all = new Map<string, CommandRow[]>();
      const grants = new Map<string, GrantRow>();
      const devices = new Map<string, DeviceRow>();
      ids.sort();
      const needDevices = batch.some((c) => c.kind === 'set-id-key'); // only SetIdKey changes a device row
      for (let i = 0; i < ids.length; i += 5000) {
        const chunk = ids.slice(i, i + 5000);
        const marks = chunk.map(() => '?').join(', ');
        // The device rows guard everything of theirs (every operation that queues a command or
        // changes a grant locks them first): lock them before reading what is rewritten below,
        // or a rotation committed meanwhile would be overwritten with what was read here.
        if (s.dialect === 'postgres') await s.all(`SELECT id FROM devices WHERE id IN (${marks}) ORDER BY id FOR UPDATE`, chunk);
        for (const c of await s.read('commands', `device IN (${marks}) ORDER BY device, seq`, chunk)) {
          let l = all.get(c.device);
          if (!l) all.set(c.device, (l = []));
          l.push(c);
        }
        for (const g of await s.read('grants', `device IN (${marks})`, chunk)) grants.set(`${g.device}|${g.topic}`, g);
        if (needDevices) for (const d of await s.read('devices', `id IN (${marks})`, chunk)) devices.set(d.id, d);
      }
      const updated: CommandRow[] = [];
      const gone: SqlValue[][] = [];
      const grantUpdates = new Map<string, GrantRow>();
      const deviceUpdates = new Map<string, DeviceRow>();
      const topics = new Set<string>();
      for (const sent of batch) {
        const list = all.get(sent.device) ?? [];
        const c = list.find((x) => x.seq === sent.seq);
        if (!c || c.status !== 'queued') continue; // superseded meanwhile: nothing to record
        c.status = 'acked';
        c.acked = now;
        c.message = null;
        updated.push(c);
        const older = (x: CommandRow) => x.status === 'acked' && x.seq < c.seq;
        let drop: CommandRow[];
        if (c.kind === 'set-id-key') {
          const d = devices.get(c.device);
          if (d && c.gen !== null && c.gen > d.acked_key_gen) {
            d.acked_key_gen = c.gen;
            deviceUpdates.set(d.id, d);
          }
          drop = list.filter((x) => older(x) && x.kind === 'set-id-key');
        } else if (c.kind === 'reset-topics') {
          drop = list.filter((x) => older(x) && x.kind !== 'set-id-key');
        } else {
          if (c.kind === 'set-topic-key' && c.topic !== null && c.gen !== null) {
            const g = grantUpdates.get(`${c.device}|${c.topic}`) ?? grants.get(`${c.device}|${c.topic}`);
            if (g && (g.acked_gen === null || g.acked_gen < c.gen)) {
              g.acked_gen = c.gen;
              grantUpdates.set(`${c.device}|${c.topic}`, g);
            }
            topics.add(c.topic);
          }
          drop = list.filter((x) => older(x) && x.topic === c.topic);
        }
        for (const x of drop) {
          gone.push([x.device, x.seq]);
          list.splice(list.indexOf(x), 1);
        }
      }
      await s.write('commands', updated);
      await s.remove('commands', gone);
      await s.write('grants', [...grantUpdates.values()]);
      await s.write('devices', [...deviceUpdates.values()]);
      for (const d of deviceUpdates.values()) await this.retainDevice(d);
      for (const hash of topics) {
        const t = await s.readOne('topics', 'hash = ?', [hash]);
        if (t) await this.retainTopic(t);
      }
    });
  }

  // ---------------------------------------------------------------- observation

  /**
   * Feeds one message seen on a data topic (e.g. from a subscription on the broker). Resolves to
   * { topic, gen, current, device } when one of the topic's stored keys opens it, else null.
   * When the topic has exactly one publisher, that device is thereby seen holding key `gen`.
   */
  async observe(topicName: string, msg: Uint8Array): Promise<Observation | null> {
    if (!(msg instanceof Uint8Array)) return null;
    const t = await this.store.readOne('topics', 'topic = ?', [topicName]);
    if (!t) return null;
    const gens = await this.store.read('topic_keys', 'topic = ? ORDER BY gen DESC', [t.hash]);
    for (const row of gens) {
      const key = this.store.unseal(`e4-c2/v1|topic-key|${t.hash}|${row.gen}`, row.sealed);
      let ok: boolean;
      try {
        this.e4().unprotect(key, msg);
        ok = true;
      } catch {
        ok = false;
      } finally {
        wipe(key);
      }
      if (!ok) continue;
      const gen = row.gen;
      const pubs = await this.store.all(`SELECT device FROM grants WHERE topic = ? AND role IN ('pub', 'both')`, [t.hash]);
      let device: string | null = null;
      if (pubs.length === 1 && !this.store.readOnly) {
        device = String(pubs[0].device);
        const id = device;
        await this.store.transaction(async () => {
          const g = await this.store.readOne('grants', 'device = ? AND topic = ?' + this.store.forUpdate, [id, t.hash]);
          if (g && (g.seen_gen === null || g.seen_gen < gen)) await this.store.write('grants', [{ ...g, seen_gen: gen }]);
          const d = await this.store.readOne('devices', 'id = ?' + this.store.forUpdate, [id]);
          if (d) await this.store.write('devices', [{ ...d, last_seen: this.seconds() }]);
        });
      }
      return { topic: t.topic, gen, current: gen === t.key_gen, device };
    }
    return null;
  }

  /** Notes that a device was seen alive (by whatever the integration knows: a gateway, the broker). */
  async seen(deviceRef: DeviceRef, at: number = this.seconds()): Promise<void> {
    await this.store.transaction(async () => {
      const d = await this.device(deviceRef, { lock: true });
      const when = Math.floor(at);
      if (d.last_seen === null || d.last_seen < when) await this.store.write('devices', [{ ...d, last_seen: when }]);
    });
  }

  /** Kept for callers of the whole-file C2: observations are written as they happen now. */
  async save(): Promise<void> {
    await this.exclusive(() => undefined);
  }

  // ---------------------------------------------------------------- reading

  /** Every device, topic and grant, with the delivery state of the latest commands. No keys. */
  async list(): Promise<Listing> {
    const s = this.store;
    const topics = (await s.read('topics', '1 = 1')).sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
    const topicName = new Map(topics.map((t) => [t.hash, t.topic]));
    const devRows = await s.read('devices', '1 = 1');
    const byName = (d: DeviceRow) => d.name ?? d.id;
    devRows.sort((a, b) => (byName(a) < byName(b) ? -1 : byName(a) > byName(b) ? 1 : a.id < b.id ? -1 : 1));
    const grantsOf = new Map<string, GrantRow[]>();
    for (const g of (await s.read('grants', '1 = 1')).sort((a, b) => a.created - b.created || (a.topic < b.topic ? -1 : 1))) {
      let l = grantsOf.get(g.device);
      if (!l) grantsOf.set(g.device, (l = []));
      l.push(g);
    }
    const commandsOf = new Map<string, CommandRow[]>();
    for (const c of await s.read('commands', '1 = 1 ORDER BY device, seq')) {
      let l = commandsOf.get(c.device);
      if (!l) commandsOf.set(c.device, (l = []));
      l.push(c);
    }
    const keysKept = new Map<string, number>();
    for (const r of await s.all('SELECT topic, COUNT(*) AS n FROM topic_keys GROUP BY topic')) keysKept.set(String(r.topic), Number(r.n));
    const names = new Map(devRows.map((d) => [d.id, d.name]));
    const devices = devRows.map((d): DeviceListing => {
      const grants = grantsOf.get(d.id) ?? [];
      const pending: PendingCommand[] = [];
      for (const c of commandsOf.get(d.id) ?? []) {
        const g = c.topic ? grants.find((x) => x.topic === c.topic) : undefined;
        let state: PendingCommand['state'];
        if (c.status === 'queued') state = 'queued';
        else if (c.kind === 'set-topic-key' && g && g.seen_gen !== null && c.gen !== null && g.seen_gen >= c.gen)
          continue; // confirmed
        else state = 'at-broker';
        pending.push({
          seq: c.seq,
          kind: c.kind,
          topic: c.topic ? (topicName.get(c.topic) ?? c.topic) : null,
          gen: c.gen,
          state,
          since: c.status === 'queued' ? c.created : c.acked,
          seenSince:
            state === 'at-broker' ? (d.last_seen === null ? 'never' : c.acked !== null && d.last_seen >= c.acked ? 'yes' : 'no') : null,
        });
      }
      return {
        id: d.id,
        name: d.name,
        controlTopic: 'e4/' + d.id,
        keyGen: d.key_gen,
        ackedKeyGen: d.acked_key_gen,
        lastSeen: d.last_seen,
        topics: grants.map((g) => ({
          topic: topicName.get(g.topic) ?? g.topic,
          role: g.role,
          gen: g.gen,
          ackedGen: g.acked_gen,
          seenGen: g.seen_gen,
        })),
        pending,
      };
    });
    const holdersOf = new Map<string, Holder[]>();
    for (const gl of grantsOf.values()) {
      for (const g of gl) {
        let l = holdersOf.get(g.topic);
        if (!l) holdersOf.set(g.topic, (l = []));
        l.push({ id: g.device, name: names.get(g.device) ?? null, role: g.role });
      }
    }
    return {
      backend: s.dialect,
      devices,
      topics: topics.map((t) => ({
        topic: t.topic,
        hash: t.hash,
        gen: t.key_gen,
        keysKept: keysKept.get(t.hash) ?? 0,
        holders: (holdersOf.get(t.hash) ?? []).sort((a, b) => (a.id < b.id ? -1 : 1)),
      })),
    };
  }

  /** The device's state as it should be: current client key, current key of every granted topic. */
  async provisioning(deviceRef: DeviceRef) {
    const d = await this.device(deviceRef);
    const grants = await this.store.read('grants', 'device = ?', [d.id]);
    const topics: { topic: string; hash: Uint8Array; key: Uint8Array; created: number }[] = [];
    for (const g of grants) {
      const t = await this.store.readOne('topics', 'hash = ?', [g.topic]);
      if (!t) throw new C2Error('INTEGRITY', `grant of ${d.id} names an unknown topic ${g.topic}`);
      topics.push({ topic: t.topic, hash: fromHex(t.hash), key: await this.topicKey(t.hash, t.key_gen), created: g.created });
    }
    topics.sort((a, b) => a.created - b.created || (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
    return { d, key: await this.deviceKey(d.id, d.key_gen), topics };
  }

  /** libe4's "E41P" image: "E41P" | id | key | u16 count LE | count × (hash | key). Contains keys. */
  async exportE41P(deviceRef: DeviceRef): Promise<Uint8Array> {
    const p = await this.provisioning(deviceRef);
    try {
      return this.e4().encodeE41P({ id: fromHex(p.d.id), key: p.key, topics: p.topics.map((t) => ({ hash: t.hash, key: t.key })) });
    } finally {
      wipe(p.key);
      for (const t of p.topics) wipe(t.key);
    }
  }

  /** device.json (format e4-device, version 1) for `flash` and the simulator. Contains keys. */
  async deviceConfig(deviceRef: DeviceRef, { options, clock, transport }: DeviceConfigOptions = {}): Promise<DeviceConfigFile> {
    const p = await this.provisioning(deviceRef);
    const cfg: DeviceConfigFile = { format: 'e4-device', version: 1, id: p.d.id, key: '', topics: [] };
    if (p.d.name !== null) cfg.name = p.d.name;
    cfg.id = p.d.id;
    cfg.key = toHex(p.key);
    cfg.topics = p.topics.map((t) => ({ topic: t.topic, hash: toHex(t.hash), key: toHex(t.key) }));
    if (options) cfg.options = options;
    if (clock) cfg.clock = clock;
    if (transport) cfg.transport = transport;
    wipe(p.key);
    for (const t of p.topics) wipe(t.key);
    return cfg;
  }

  /** Every device's current client key (id -> key), for tools that stand in for a whole fleet. */
  async clientKeys(): Promise<Map<string, Uint8Array>> {
    return this.currentDeviceKeys(await this.store.read('devices', '1 = 1'));
  }

  /** Releases the database. */
  async close(): Promise<void> {
    await this.chain;
    await this.store.close();
  }
}

export interface InitOptions extends C2Options {
  dbPath: string;
  passphrase: Passphrase;
  kdf?: KdfParams;
}
export interface OpenC2Options extends C2Options {
  dbPath: string;
  passphrase: Passphrase;
  readOnly?: boolean;
}

/** Creates a new C2 database (a SQLite file, or the tables in a PostgreSQL database).
 * kdf = { t, m (KiB), p } for Argon2id; the default is DEFAULT_KDF. */
export async function initC2({ dbPath, passphrase, kdf, ...options }: InitOptions): Promise<C2> {
  if (typeof dbPath !== 'string' || !dbPath) throw new C2Error('USAGE', 'dbPath is required');
  const store = await Store.create(dbPath, passphrase, kdf || DEFAULT_KDF);
  return new C2(store, options);
}

/** Opens and verifies an existing C2 database (wrong passphrase or modified: C2Error, nothing changed). */
export async function openC2({ dbPath, passphrase, readOnly = false, ...options }: OpenC2Options): Promise<C2> {
  if (typeof dbPath !== 'string' || !dbPath) throw new C2Error('USAGE', 'dbPath is required');
  const store = await Store.open(dbPath, passphrase, { readOnly });
  return new C2(store, options);
}

export type { Row };
