/**
 * The E4 C2 (command-and-control) key manager, as a library.
 *
 *   const c2 = await initC2({ dbPath, passphrase, e4, send });   // creates the database
 *   const c2 = await openC2({ dbPath, passphrase, e4, send });   // opens and verifies it
 *   await c2.addDevice({ name: 'monitor-1' }); await c2.addTopic('health/heart-rate');
 *   await c2.grant('monitor-1', 'health/heart-rate', { role: 'pub' });
 *   await c2.rotateTopic('health/heart-rate');                     // consumers first
 *   c2.close();
 *
 * `e4` is the image's wire-format surface (see e4.ts: adaptE4(module.exports of dist/e4.js)),
 * or a function returning it (loaded on first use). `send(controlTopic, bytes, { qos: 2 })`
 * publishes one command and resolves once the broker acknowledged it (QoS 2: PUBCOMP). It means
 * the broker has taken responsibility for the message, not that the device received or applied
 * it. Without `send`, commands stay queued in the database until `flush()` with a sender.
 *
 * Every command is protected with the device's client key and a timestamp that strictly
 * increases for that device. A new key (client or topic) becomes the key the C2 protects with
 * at once (commands reach a device in order); older keys are kept until a newer one has been
 * acknowledged, so a key a device may still hold is never lost. See docs/c2.md.
 */
import { randomBytes } from 'node:crypto';
import { C2Error, DEFAULT_KDF, Store } from './store.ts';
import { adaptE4 } from './e4.ts';

export { C2Error, DEFAULT_KDF } from './store.ts';

export const ROLES = ['pub', 'sub', 'both'];
const HEX_ID = /^[0-9a-fA-F]{32}$/;
const enc = new TextEncoder();

function toHex(b) {
  return Buffer.from(b).toString('hex');
}
function fromHex(s) {
  return new Uint8Array(Buffer.from(s, 'hex'));
}
function newKey() {
  const b = randomBytes(32);
  const k = new Uint8Array(b);
  b.fill(0);
  return k;
}
function wipe(b) {
  if (b) b.fill(0);
}

/** A data topic the C2 can manage: non-empty MQTT topic name, no wildcards, outside `e4/` and `$`. */
export function checkTopic(topic) {
  if (typeof topic !== 'string' || topic.length === 0) throw new C2Error('USAGE', 'a topic must be a non-empty string');
  if (enc.encode(topic).length > 65535) throw new C2Error('USAGE', 'a topic must be at most 65535 bytes (MQTT)');
  if (/[+#\u0000]/.test(topic)) throw new C2Error('USAGE', `topic ${JSON.stringify(topic)}: wildcards (+, #) and NUL are not allowed`);
  if (topic.startsWith('e4/')) throw new C2Error('USAGE', `topic ${JSON.stringify(topic)}: the e4/ prefix is reserved for control topics`);
  if (topic.startsWith('$')) throw new C2Error('USAGE', `topic ${JSON.stringify(topic)}: topics starting with $ are reserved by brokers`);
  return topic;
}

export function checkRole(role) {
  if (!ROLES.includes(role)) throw new C2Error('USAGE', `role must be one of ${ROLES.join(', ')} (got ${JSON.stringify(role)})`);
  return role;
}

/** Runs async jobs with at most `limit` at once. */
async function pool(jobs, limit) {
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      await jobs[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
}

function withTimeout(promise, ms) {
  if (!ms) return promise;
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no acknowledgement within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function resolveE4(e4) {
  if (!e4) return () => {
    throw new C2Error('USAGE', 'this operation needs the E4 image: pass `e4` to openC2/initC2');
  };
  if (typeof e4 === 'function') {
    let cached = null;
    return () => (cached ||= adaptE4(e4()));
  }
  const adapted = adaptE4(e4);
  return () => adapted;
}

/** QoS 2 publishes in flight at once. Mosquitto 2.0 completes the QoS 2 handshake for messages
 * beyond its max_inflight_messages (default 20) and then drops them, so the sender would believe
 * undelivered commands were acknowledged: stay below that limit. */
export const MAX_IN_FLIGHT = 16;

export class C2 {
  /** @param {Store} store */
  constructor(store, { e4, send, now, sendTimeoutMs = 15000, concurrency = MAX_IN_FLIGHT } = {}) {
    this.store = store;
    this.e4 = resolveE4(e4);
    this.send = send || null;
    this.now = now || (() => Date.now() / 1000);
    this.sendTimeoutMs = sendTimeoutMs;
    this.concurrency = concurrency;
    this.chain = Promise.resolve();
    this.inBatch = false;
  }

  get dbPath() {
    return this.store.file;
  }

  /** Replaces the publisher, e.g. once an MQTT connection is up. */
  setSend(send) {
    this.send = send || null;
  }

  seconds() {
    return Math.floor(this.now());
  }

  /** Operations run one at a time, in call order (inside `batch`, directly: the batch holds the turn). */
  exclusive(fn) {
    if (this.inBatch) return Promise.resolve().then(fn);
    const run = this.chain.then(fn);
    this.chain = run.catch(() => {});
    return run;
  }

  /**
   * Runs many operations as one: `await c2.batch(async (c2) => { await c2.addDevice(...); ... })`.
   * The file is written once at the end and queued commands are sent once, after it (rotations
   * still consumers first). All or nothing: if fn throws, every change made inside is dropped.
   * Only the operations fn awaits may run meanwhile. Returns { result, delivery }.
   */
  batch(fn) {
    return this.exclusive(async () => {
      this.inBatch = true;
      this.store.deferWrites = true;
      let result;
      try {
        result = await fn(this);
      } catch (e) {
        this.store.deferWrites = false;
        this.store.reload();
        throw e;
      } finally {
        this.inBatch = false;
        this.store.deferWrites = false;
      }
      if (this.store.dirty) this.store.persist();
      return { result, delivery: await this.deliver() };
    });
  }

  // ---------------------------------------------------------------- lookups

  device(ref) {
    let row;
    if (ref && typeof ref === 'object') {
      if (typeof ref.id === 'string') row = this.store.get('SELECT * FROM devices WHERE id = ?', [ref.id.toLowerCase()]);
      else if (ref.id instanceof Uint8Array) row = this.store.get('SELECT * FROM devices WHERE id = ?', [toHex(ref.id)]);
      else if (typeof ref.name === 'string') row = this.store.get('SELECT * FROM devices WHERE name = ?', [ref.name]);
      else throw new C2Error('USAGE', 'a device is named by { name } or { id }');
    } else if (typeof ref === 'string') {
      if (HEX_ID.test(ref)) row = this.store.get('SELECT * FROM devices WHERE id = ?', [ref.toLowerCase()]);
      if (!row) row = this.store.get('SELECT * FROM devices WHERE name = ?', [ref]);
    } else throw new C2Error('USAGE', 'a device is named by its name or its 32-hex-digit id');
    if (!row) throw new C2Error('NOT_FOUND', `no device ${JSON.stringify(typeof ref === 'object' ? ref.name ?? ref.id : ref)} in the C2 database`);
    return row;
  }

  topic(name) {
    if (typeof name !== 'string') throw new C2Error('USAGE', 'a topic is named by a string');
    const row = this.store.get('SELECT * FROM topics WHERE topic = ?', [name]);
    if (!row) throw new C2Error('NOT_FOUND', `no topic ${JSON.stringify(name)} in the C2 database (add-topic first)`);
    return row;
  }

  deviceKey(id, gen) {
    const row = this.store.get('SELECT sealed FROM device_keys WHERE device = ? AND gen = ?', [id, gen]);
    if (!row) throw new C2Error('INTEGRITY', `the key of device ${id} (generation ${gen}) is missing`);
    return this.store.unseal(`e4-c2/v1|device-key|${id}|${gen}`, row.sealed);
  }

  topicKey(hash, gen) {
    const row = this.store.get('SELECT sealed FROM topic_keys WHERE topic = ? AND gen = ?', [hash, gen]);
    if (!row) throw new C2Error('INTEGRITY', `the key of topic ${hash} (generation ${gen}) is missing`);
    return this.store.unseal(`e4-c2/v1|topic-key|${hash}|${gen}`, row.sealed);
  }

  putDeviceKey(id, gen, key) {
    this.store.run('INSERT INTO device_keys (device, gen, sealed, created) VALUES (?, ?, ?, ?)', [
      id,
      gen,
      this.store.seal(`e4-c2/v1|device-key|${id}|${gen}`, key),
      this.seconds(),
    ]);
  }

  putTopicKey(hash, gen, key) {
    this.store.run('INSERT INTO topic_keys (topic, gen, sealed, created) VALUES (?, ?, ?, ?)', [
      hash,
      gen,
      this.store.seal(`e4-c2/v1|topic-key|${hash}|${gen}`, key),
      this.seconds(),
    ]);
  }

  /**
   * Protects one command for a device with its current client key and queues it. Timestamps are
   * strictly increasing per device: the host clock's second, or one more than the last command's
   * if that is not later (a burst or a host clock stepping back). Equal timestamps would be
   * accepted by the device, but the same command twice in one second (grant, revoke, grant) would
   * then be byte-identical and rejected as a replay.
   */
  queue(dev, kind, payload, { topic = null, gen = null, phase = 0 } = {}) {
    const d = this.store.get('SELECT * FROM devices WHERE id = ?', [dev.id]);
    const ts = Math.max(this.seconds(), d.last_ts + 1);
    const key = this.deviceKey(d.id, d.key_gen);
    let message;
    try {
      message = this.e4().protect(key, ts, payload);
    } finally {
      wipe(key);
      wipe(payload);
    }
    // A queued (never acknowledged) topic command that this one overrides is not worth sending.
    if (kind === 'set-topic-key' || kind === 'remove-topic') {
      this.store.run(`DELETE FROM commands WHERE device = ? AND status = 'queued' AND topic = ? AND kind IN ('set-topic-key', 'remove-topic')`, [d.id, topic]);
    } else if (kind === 'reset-topics') {
      this.store.run(`DELETE FROM commands WHERE device = ? AND status = 'queued' AND kind IN ('set-topic-key', 'remove-topic', 'reset-topics')`, [d.id]);
    }
    this.store.run(
      `INSERT INTO commands (device, seq, ts, kind, topic, gen, phase, status, message, created) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)`,
      [d.id, d.next_seq, ts, kind, topic, gen, phase, message, this.seconds()],
    );
    this.store.run('UPDATE devices SET last_ts = ?, next_seq = next_seq + 1 WHERE id = ?', [ts, d.id]);
  }

  /** Drops keys no device can still hold: per device, everything older than the one before the
   * newest acknowledged client key; per topic, everything older than the one before the oldest
   * key a holder may have (acknowledged, or else the one queued to it). */
  retain() {
    this.store.run(`DELETE FROM device_keys WHERE gen < (SELECT acked_key_gen - 1 FROM devices WHERE id = device_keys.device)`);
    this.store.run(
      `DELETE FROM topic_keys WHERE gen < (SELECT MIN(t.key_gen, COALESCE((SELECT MIN(COALESCE(g.acked_gen, g.gen)) FROM grants g
         WHERE g.topic = t.hash), t.key_gen)) - 1 FROM topics t WHERE t.hash = topic_keys.topic)`,
    );
  }

  // ---------------------------------------------------------------- operations

  /** Registers a device from its name (id = SHA3-256(name)[0..16]) or its id; generates its key. */
  addDevice(spec) {
    return this.exclusive(() => {
      let id;
      let name = null;
      if (spec && typeof spec === 'object' && spec.name !== undefined) {
        if (typeof spec.name !== 'string') throw new C2Error('USAGE', 'a device name must be a string');
        if (spec.id !== undefined) throw new C2Error('USAGE', 'give a device name or an id, not both');
        name = spec.name;
        id = toHex(this.e4().clientId(name));
      } else if (spec && typeof spec === 'object' && spec.id !== undefined) {
        id = spec.id instanceof Uint8Array ? toHex(spec.id) : spec.id;
        if (typeof id !== 'string' || !HEX_ID.test(id)) throw new C2Error('USAGE', 'a device id is 16 bytes (32 hex digits)');
        id = id.toLowerCase();
      } else throw new C2Error('USAGE', 'addDevice needs { name } or { id }');
      return this.store.transaction(() => {
        if (this.store.get('SELECT id FROM devices WHERE id = ?', [id])) throw new C2Error('EXISTS', `device ${name ?? id} already exists`);
        this.store.run(
          'INSERT INTO devices (id, name, key_gen, acked_key_gen, last_ts, next_seq, last_seen, created) VALUES (?, ?, 0, 0, 0, 1, NULL, ?)',
          [id, name, this.seconds()],
        );
        const key = newKey();
        this.putDeviceKey(id, 0, key);
        wipe(key);
        return { id, name, controlTopic: 'e4/' + id };
      });
    });
  }

  /** Registers a topic (hash = SHA3-256(topic)[0..16]) and generates its first key. */
  addTopic(topic) {
    return this.exclusive(() => {
      checkTopic(topic);
      const hash = toHex(this.e4().topicHash(topic));
      return this.store.transaction(() => {
        if (this.store.get('SELECT hash FROM topics WHERE hash = ?', [hash])) throw new C2Error('EXISTS', `topic ${JSON.stringify(topic)} already exists`);
        this.store.run('INSERT INTO topics (hash, topic, key_gen, created) VALUES (?, ?, 0, ?)', [hash, topic, this.seconds()]);
        const key = newKey();
        this.putTopicKey(hash, 0, key);
        wipe(key);
        return { topic, hash };
      });
    });
  }

  /** Gives a device a topic's current key (SetTopicKey). An existing grant only changes its role. */
  grant(deviceRef, topicName, { role = 'both' } = {}) {
    return this.exclusive(async () => {
      checkRole(role);
      const result = this.store.transaction(() => {
        const d = this.device(deviceRef);
        const t = this.topic(topicName);
        const g = this.store.get('SELECT * FROM grants WHERE device = ? AND topic = ?', [d.id, t.hash]);
        if (g) {
          if (g.role !== role) this.store.run('UPDATE grants SET role = ? WHERE device = ? AND topic = ?', [role, d.id, t.hash]);
          return { device: d.id, name: d.name, topic: t.topic, role, changed: g.role !== role, sent: false };
        }
        this.store.run('INSERT INTO grants (device, topic, role, gen, acked_gen, seen_gen, created) VALUES (?, ?, ?, ?, NULL, NULL, ?)', [
          d.id,
          t.hash,
          role,
          t.key_gen,
          this.seconds(),
        ]);
        const key = this.topicKey(t.hash, t.key_gen);
        this.queue(d, 'set-topic-key', this.e4().commands.setTopicKey(key, fromHex(t.hash)), { topic: t.hash, gen: t.key_gen });
        wipe(key);
        return { device: d.id, name: d.name, topic: t.topic, role, changed: true, sent: true };
      });
      return { ...result, delivery: await this.deliver() };
    });
  }

  /**
   * Takes a topic away from a device (RemoveTopic). The device knew the key, so with
   * `rotate: true` the topic key is also rotated for the remaining holders.
   */
  revoke(deviceRef, topicName, { rotate = false } = {}) {
    return this.exclusive(async () => {
      const result = this.store.transaction(() => {
        const d = this.device(deviceRef);
        const t = this.topic(topicName);
        if (!this.store.get('SELECT 1 AS x FROM grants WHERE device = ? AND topic = ?', [d.id, t.hash])) {
          throw new C2Error('NOT_FOUND', `device ${d.name ?? d.id} holds no grant for ${JSON.stringify(t.topic)}`);
        }
        this.store.run('DELETE FROM grants WHERE device = ? AND topic = ?', [d.id, t.hash]);
        this.queue(d, 'remove-topic', this.e4().commands.removeTopic(fromHex(t.hash)), { topic: t.hash });
        const out = { device: d.id, name: d.name, topic: t.topic, rotated: null };
        if (rotate) out.rotated = this.rotateTopicTx(t);
        this.retain();
        return out;
      });
      return { ...result, delivery: await this.deliver() };
    });
  }

  rotateTopicTx(t) {
    const gen = t.key_gen + 1;
    const key = newKey();
    this.putTopicKey(t.hash, gen, key);
    this.store.run('UPDATE topics SET key_gen = ? WHERE hash = ?', [gen, t.hash]);
    // Consumers first: phase 1 (subscribe-only) is handed to the broker before phase 2.
    const holders = this.store.all(
      `SELECT g.device AS id, g.role, d.name FROM grants g JOIN devices d ON d.id = g.device WHERE g.topic = ?
       ORDER BY CASE g.role WHEN 'sub' THEN 0 WHEN 'both' THEN 1 ELSE 2 END, g.device`,
      [t.hash],
    );
    for (const h of holders) {
      this.queue(h, 'set-topic-key', this.e4().commands.setTopicKey(key, fromHex(t.hash)), {
        topic: t.hash,
        gen,
        phase: h.role === 'sub' ? 1 : 2,
      });
      this.store.run('UPDATE grants SET gen = ? WHERE device = ? AND topic = ?', [gen, h.id, t.hash]);
    }
    wipe(key);
    return { topic: t.topic, gen, holders: holders.map((h) => ({ id: h.id, name: h.name, role: h.role })) };
  }

  /** New key for a topic, sent to every holder: subscribers first, then publishers. */
  rotateTopic(topicName) {
    return this.exclusive(async () => {
      const result = this.store.transaction(() => {
        const r = this.rotateTopicTx(this.topic(topicName));
        this.retain();
        return r;
      });
      return { ...result, delivery: await this.deliver() };
    });
  }

  /** New client key (SetIdKey, protected with the current one). */
  rotateDeviceKey(deviceRef) {
    return this.exclusive(async () => {
      const result = this.store.transaction(() => {
        const d = this.device(deviceRef);
        const key = newKey();
        this.queue(d, 'set-id-key', this.e4().commands.setIdKey(key), { gen: d.key_gen + 1 });
        this.putDeviceKey(d.id, d.key_gen + 1, key);
        wipe(key);
        this.store.run('UPDATE devices SET key_gen = key_gen + 1 WHERE id = ?', [d.id]);
        this.retain();
        return { device: d.id, name: d.name, gen: d.key_gen + 1 };
      });
      return { ...result, delivery: await this.deliver() };
    });
  }

  /** Removes every topic key from a device (ResetTopics) and all its grants. */
  resetDevice(deviceRef) {
    return this.exclusive(async () => {
      const result = this.store.transaction(() => {
        const d = this.device(deviceRef);
        const n = this.store.get('SELECT COUNT(*) AS n FROM grants WHERE device = ?', [d.id]).n;
        this.store.run('DELETE FROM grants WHERE device = ?', [d.id]);
        this.queue(d, 'reset-topics', this.e4().commands.resetTopics());
        this.retain();
        return { device: d.id, name: d.name, removedGrants: n };
      });
      return { ...result, delivery: await this.deliver() };
    });
  }

  /** Sends every queued command (in order per device; rotations' consumers before publishers). */
  flush() {
    return this.exclusive(() => this.deliver());
  }

  async deliver() {
    if (this.inBatch) return { acked: [], failed: [], queued: [], deferred: true };
    const rows = this.store.all(
      `SELECT c.device, c.seq, c.phase, c.kind, c.topic, c.gen, c.message, d.name, t.topic AS topic_name
       FROM commands c JOIN devices d ON d.id = c.device LEFT JOIN topics t ON t.hash = c.topic
       WHERE c.status = 'queued' ORDER BY c.device, c.seq`,
    );
    const report = { acked: [], failed: [], queued: [] };
    const describe = (c) => ({ device: c.device, name: c.name, kind: c.kind, topic: c.topic_name ?? c.topic, seq: c.seq });
    if (!rows.length) return report;
    if (!this.send) {
      report.queued = rows.map(describe);
      return report;
    }
    const byDevice = new Map();
    for (const c of rows) {
      if (!byDevice.has(c.device)) byDevice.set(c.device, []);
      byDevice.get(c.device).push(c);
    }
    const blocked = new Set();
    for (const round of [1, 2]) {
      const jobs = [];
      for (const [id, list] of byDevice) {
        jobs.push(async () => {
          for (const c of list) {
            if (c.done) continue;
            if (blocked.has(id) || (round === 1 && c.phase >= 2)) break;
            try {
              await withTimeout(Promise.resolve().then(() => this.send('e4/' + id, c.message, { qos: 2 })), this.sendTimeoutMs);
            } catch (e) {
              blocked.add(id);
              report.failed.push({ ...describe(c), error: String((e && e.message) || e) });
              break;
            }
            c.done = true;
            this.acked(c);
            report.acked.push(describe(c));
          }
        });
      }
      await pool(jobs, this.concurrency);
    }
    for (const c of rows) if (!c.done && !report.failed.some((f) => f.device === c.device && f.seq === c.seq)) report.queued.push(describe(c));
    this.retain();
    this.store.persist();
    return report;
  }

  /** The broker has the command (QoS 2 PUBCOMP). Earlier acknowledged commands it supersedes go. */
  acked(c) {
    const s = this.store;
    s.run(`UPDATE commands SET status = 'acked', acked = ?, message = NULL WHERE device = ? AND seq = ?`, [this.seconds(), c.device, c.seq]);
    if (c.kind === 'set-id-key') {
      s.run('UPDATE devices SET acked_key_gen = MAX(acked_key_gen, ?) WHERE id = ?', [c.gen, c.device]);
      s.run(`DELETE FROM commands WHERE device = ? AND status = 'acked' AND kind = 'set-id-key' AND seq < ?`, [c.device, c.seq]);
    } else if (c.kind === 'reset-topics') {
      s.run(`DELETE FROM commands WHERE device = ? AND status = 'acked' AND kind <> 'set-id-key' AND seq < ?`, [c.device, c.seq]);
    } else {
      if (c.kind === 'set-topic-key') {
        s.run('UPDATE grants SET acked_gen = MAX(COALESCE(acked_gen, -1), ?) WHERE device = ? AND topic = ?', [c.gen, c.device, c.topic]);
      }
      s.run(`DELETE FROM commands WHERE device = ? AND status = 'acked' AND topic = ? AND seq < ?`, [c.device, c.topic, c.seq]);
    }
  }

  // ---------------------------------------------------------------- observation

  /**
   * Feeds one message seen on a data topic (e.g. from a subscription on the broker). Returns
   * { topic, gen, current, device } when one of the topic's stored keys opens it, else null.
   * When the topic has exactly one publisher, that device is thereby seen holding key `gen`.
   */
  observe(topicName, message) {
    const t = this.store.get('SELECT * FROM topics WHERE topic = ?', [topicName]);
    if (!t || !(message instanceof Uint8Array)) return null;
    const gens = this.store.all('SELECT gen FROM topic_keys WHERE topic = ? ORDER BY gen DESC', [t.hash]);
    for (const { gen } of gens) {
      const key = this.topicKey(t.hash, gen);
      let ok = false;
      try {
        this.e4().unprotect(key, message);
        ok = true;
      } catch {
        ok = false;
      } finally {
        wipe(key);
      }
      if (!ok) continue;
      const pubs = this.store.all(`SELECT device FROM grants WHERE topic = ? AND role IN ('pub', 'both')`, [t.hash]);
      let device = null;
      if (pubs.length === 1) {
        device = pubs[0].device;
        this.store.run('UPDATE grants SET seen_gen = MAX(COALESCE(seen_gen, -1), ?) WHERE device = ? AND topic = ?', [gen, device, t.hash]);
        this.store.run('UPDATE devices SET last_seen = ? WHERE id = ?', [this.seconds(), device]);
      }
      return { topic: t.topic, gen, current: gen === t.key_gen, device };
    }
    return null;
  }

  /** Notes that a device was seen alive (by whatever the integration knows: a gateway, the broker). */
  seen(deviceRef, at = this.seconds()) {
    const d = this.device(deviceRef);
    this.store.run('UPDATE devices SET last_seen = MAX(COALESCE(last_seen, 0), ?) WHERE id = ?', [Math.floor(at), d.id]);
  }

  /** Writes observations (observe/seen) to the file. */
  save() {
    return this.exclusive(() => {
      if (this.store.dirty) this.store.persist();
    });
  }

  // ---------------------------------------------------------------- reading

  /** Every device, topic and grant, with the delivery state of the latest commands. No keys. */
  list() {
    const s = this.store;
    const topics = s.all('SELECT * FROM topics ORDER BY topic');
    const topicName = new Map(topics.map((t) => [t.hash, t.topic]));
    const devices = s.all('SELECT * FROM devices ORDER BY COALESCE(name, id), id').map((d) => {
      const grants = s.all('SELECT * FROM grants WHERE device = ? ORDER BY created, topic', [d.id]);
      const commands = s.all('SELECT seq, ts, kind, topic, gen, status, created, acked FROM commands WHERE device = ? ORDER BY seq', [d.id]);
      const pending = [];
      for (const c of commands) {
        const g = c.topic ? grants.find((x) => x.topic === c.topic) : null;
        let state;
        if (c.status === 'queued') state = 'queued';
        else if (c.kind === 'set-topic-key' && g && g.seen_gen !== null && g.seen_gen >= c.gen) continue; // confirmed
        else state = 'at-broker';
        pending.push({
          seq: c.seq,
          kind: c.kind,
          topic: c.topic ? topicName.get(c.topic) ?? c.topic : null,
          gen: c.gen,
          state,
          since: c.status === 'queued' ? c.created : c.acked,
          seenSince: state === 'at-broker' ? (d.last_seen === null ? 'never' : d.last_seen >= c.acked ? 'yes' : 'no') : null,
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
    return {
      revision: s.revision(),
      devices,
      topics: topics.map((t) => ({
        topic: t.topic,
        hash: t.hash,
        gen: t.key_gen,
        keysKept: s.get('SELECT COUNT(*) AS n FROM topic_keys WHERE topic = ?', [t.hash]).n,
        holders: s.all('SELECT g.device AS id, d.name, g.role FROM grants g JOIN devices d ON d.id = g.device WHERE g.topic = ? ORDER BY g.device', [t.hash]),
      })),
    };
  }

  /** The device's state as it should be: current client key, current key of every granted topic. */
  provisioning(deviceRef) {
    const d = this.device(deviceRef);
    const grants = this.store.all(
      'SELECT g.topic AS hash, t.topic, t.key_gen FROM grants g JOIN topics t ON t.hash = g.topic WHERE g.device = ? ORDER BY g.created, t.topic',
      [d.id],
    );
    return {
      d,
      key: this.deviceKey(d.id, d.key_gen),
      topics: grants.map((g) => ({ topic: g.topic, hash: fromHex(g.hash), key: this.topicKey(g.hash, g.key_gen) })),
    };
  }

  /** libe4's "E41P" image: "E41P" | id | key | u16 count LE | count × (hash | key). Contains keys. */
  exportE41P(deviceRef) {
    const p = this.provisioning(deviceRef);
    try {
      return this.e4().encodeE41P({ id: fromHex(p.d.id), key: p.key, topics: p.topics.map((t) => ({ hash: t.hash, key: t.key })) });
    } finally {
      wipe(p.key);
      for (const t of p.topics) wipe(t.key);
    }
  }

  /** device.json (format e4-device, version 1) for `flash` and the simulator. Contains keys. */
  deviceConfig(deviceRef, { options, clock, transport } = {}) {
    const p = this.provisioning(deviceRef);
    const cfg = { format: 'e4-device', version: 1 };
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

  /** Writes pending observations and releases the database (and its lock). */
  close() {
    if (this.store.closed) return;
    try {
      if (this.store.dirty && !this.store.readOnly) this.store.persist();
    } finally {
      this.store.close();
    }
  }
}

/** Creates a new C2 database. kdf = { t, m (KiB), p } for Argon2id; the default is DEFAULT_KDF. */
export async function initC2({ dbPath, passphrase, kdf, ...options } = {}) {
  if (typeof dbPath !== 'string' || !dbPath) throw new C2Error('USAGE', 'dbPath is required');
  const store = await Store.create(dbPath, passphrase, kdf || DEFAULT_KDF);
  return new C2(store, options);
}

/** Opens and verifies an existing C2 database (wrong passphrase or modified file: C2Error, nothing changed). */
export async function openC2({ dbPath, passphrase, readOnly = false, ...options } = {}) {
  if (typeof dbPath !== 'string' || !dbPath) throw new C2Error('USAGE', 'dbPath is required');
  const store = await Store.open(dbPath, passphrase, { readOnly });
  return new C2(store, options);
}
