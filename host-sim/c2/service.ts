/**
 * The C2 as a long-running service: every command of the command line as one method, with the
 * event log, the automation rules and the API tokens around it. `serve.ts` puts HTTP and MQTT in
 * front of it; tests drive it directly with an injected clock.
 *
 * Calls run one at a time. Before each, the database is checked to still be the one the service
 * opened and verified (Store.identity: the same SQLite file, the same PostgreSQL tables): a
 * database replaced under the service (an older copy put back, the tables restored from a dump)
 * is refused with DB_CHANGED until the service is restarted, which verifies it again, so the
 * service never writes to a database it has not verified. Writes by other C2 processes sharing
 * the database are not a change in this sense (the store is made for that), and a row edited by
 * anything else fails its MAC when read (INTEGRITY).
 */
import type { C2, DeviceRef } from './c2.ts';
import type { Role } from './schema.ts';
import type { C2E4 } from './e4.ts';
import { ServiceError, asServiceError } from './errors.ts';
import { EventLog } from './events.ts';
import { Rules, type PlannedAction, type Rule, type RuleActions, type RuleRequest, type RuleRun } from './rules.ts';
import { asRow, int, rowsOf, text, textOrNull } from './tables.ts';
import { authenticate, createToken, listTokens, revokeToken, type NewToken, type TokenInfo } from './tokens.ts';

export type E4 = C2E4;
export type Sender = (topic: string, bytes: Uint8Array, options: { qos: 2 }) => Promise<unknown>;

export interface ServiceOptions {
  c2: C2;
  e4: E4;
  /** Seconds since the epoch; the C2 must be opened with the same clock. */
  nowS?: () => number;
}

export type DeviceSpec = { name: string } | { id: string };

/** A C2 operation's result as the API returns it (the C2 library defines its fields). */
export type Result = Record<string, unknown>;

export interface Protected {
  topic: string;
  gen: number;
  timestamp: number;
  message: Uint8Array;
}

export interface Unprotected {
  topic: string;
  gen: number;
  current: boolean;
  timestamp: number;
  payload: Uint8Array;
}

/** A protected message is the 8-byte timestamp and the AES-SIV output (16-byte tag, then the data). */
const MIN_MESSAGE = 8 + 16;

function list(v: unknown): Record<string, unknown>[] {
  return Array.isArray(v) ? v.map(asRow) : [];
}

function wipe(b: unknown): void {
  if (b instanceof Uint8Array) b.fill(0);
}

export class Service {
  readonly c2: C2;
  readonly e4: E4;
  readonly nowS: () => number;
  readonly events: EventLog;
  readonly rules: Rules;
  private chain: Promise<unknown> = Promise.resolve();
  /** Store.identity() when the service started. */
  private identity = '';
  private changedUnder = false;
  private readonly reportedQueued = new Set<string>();
  /** Per topic, the last (device, generation) seen publishing: key-seen is emitted on a change. */
  private readonly lastSeen = new Map<string, string>();
  private closed = false;

  private constructor(opts: ServiceOptions) {
    this.c2 = opts.c2;
    this.e4 = opts.e4;
    this.nowS = opts.nowS ?? (() => Date.now() / 1000);
    this.events = new EventLog(this.c2, () => this.nowS() * 1000);
    this.rules = new Rules(this.c2, this.nowS);
  }

  static async start(opts: ServiceOptions): Promise<Service> {
    const s = new Service(opts);
    s.identity = await s.c2.store.identity();
    return s;
  }

  // ------------------------------------------------------------ serialisation and the database guard

  /** True once the database at the service's location is not the one it opened. */
  private async replaced(): Promise<boolean> {
    if (!this.changedUnder && !this.closed && (await this.c2.store.identity()) !== this.identity) this.changedUnder = true;
    return this.changedUnder;
  }

  private async checkDatabase(): Promise<void> {
    if (this.closed) throw new ServiceError('IO', 'the service is stopping');
    if (await this.replaced()) {
      throw new ServiceError(
        'DB_CHANGED',
        `the database ${this.c2.dbPath} was replaced while the service ran (not the one it opened and verified): nothing was written; restart the service to verify and load it`,
      );
    }
  }

  /** The database as this service sees it: 'ok', 'changed' (refusing every call) or
   * 'unreachable' (PostgreSQL did not answer). */
  async databaseState(): Promise<'ok' | 'changed' | 'unreachable'> {
    try {
      return (await this.replaced()) ? 'changed' : 'ok';
    } catch {
      return 'unreachable';
    }
  }

  /** Runs fn alone, after the guard. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const step = this.chain.then(async () => {
      await this.checkDatabase();
      return fn();
    });
    this.chain = step.catch(() => undefined);
    return step;
  }

  /** Waits for the call under way and closes the database (nothing is pending: every call wrote
   * what it changed in its own transactions). */
  async close(): Promise<void> {
    await this.chain;
    this.closed = true;
    await this.c2.close();
  }

  // ------------------------------------------------------------ delivery -> events

  /** The publisher the C2 uses, reporting each command as it is handed to the broker. */
  sender(publish: Sender): Sender {
    return async (topic, bytes, options) => {
      await this.events.emit('command-sent', { device: topic.startsWith('e4/') ? topic.slice(3) : null, controlTopic: topic });
      return publish(topic, bytes, options);
    };
  }

  private async reportDelivery(delivery: unknown): Promise<void> {
    if (!delivery || typeof delivery !== 'object') return;
    const d = asRow(delivery);
    const fields = (c: Record<string, unknown>) => ({
      device: typeof c['device'] === 'string' ? c['device'] : null,
      topic: typeof c['topic'] === 'string' ? c['topic'] : null,
      name: c['name'] ?? null,
      kind: c['kind'],
      seq: c['seq'],
    });
    for (const c of list(d['acked'])) {
      this.reportedQueued.delete(`${String(c['device'])}:${String(c['seq'])}`);
      await this.events.emit('command-acked', fields(c));
    }
    for (const c of list(d['failed'])) await this.events.emit('command-failed', { ...fields(c), error: c['error'] });
    for (const c of list(d['queued'])) {
      const key = `${String(c['device'])}:${String(c['seq'])}`;
      if (this.reportedQueued.has(key)) continue;
      this.reportedQueued.add(key);
      await this.events.emit('command-queued', fields(c));
    }
  }

  /** Runs a C2 operation, then records its event and its delivery. */
  private async operate(kind: string, op: () => Promise<unknown>, describe: (r: Result) => Record<string, unknown>): Promise<Result> {
    const r = asRow(await op());
    await this.events.emit(kind, describe(r));
    await this.reportDelivery(r['delivery']);
    return r;
  }

  // ------------------------------------------------------------ the commands

  addDevice(spec: DeviceSpec): Promise<Result> {
    return this.run(() =>
      this.operate(
        'device-added',
        () => this.c2.addDevice(spec),
        (r) => ({ device: r['id'], name: r['name'] }),
      ),
    );
  }

  addTopic(topic: string): Promise<Result> {
    return this.run(() =>
      this.operate(
        'topic-added',
        () => this.c2.addTopic(topic),
        (r) => ({ topic: r['topic'], hash: r['hash'] }),
      ),
    );
  }

  grant(device: DeviceRef, topic: string, role: Role): Promise<Result> {
    return this.run(() =>
      this.operate(
        'granted',
        () => this.c2.grant(device, topic, { role }),
        (r) => ({ device: r['device'], name: r['name'], topic: r['topic'], role: r['role'], changed: r['changed'] }),
      ),
    );
  }

  /** Revokes; a rotate-on-removal rule covering the device also rotates the topic. */
  revoke(device: string, topic: string, rotate: boolean): Promise<Result> {
    return this.run(async () => {
      const id = text(asRow(await this.c2.device(device)), 'id');
      const rules = await this.rules.onRemoval(id);
      const r = await this.operate(
        'revoked',
        () => this.c2.revoke(device, topic, { rotate: rotate || rules.length > 0 }),
        (res) => ({
          device: res['device'],
          name: res['name'],
          topic: res['topic'],
          rotated: res['rotated'] ? asRow(res['rotated'])['gen'] : null,
        }),
      );
      await this.ruleRan(rules, `rotated ${topic} after revoking it from ${device}`);
      return r;
    });
  }

  rotateTopic(topic: string): Promise<Result> {
    return this.run(() => this.rotateTopicNow(topic));
  }

  private rotateTopicNow(topic: string): Promise<Result> {
    return this.operate(
      'topic-rotated',
      () => this.c2.rotateTopic(topic),
      (r) => ({
        topic: r['topic'],
        gen: r['gen'],
        holders: list(r['holders']).map((h) => h['name'] ?? h['id']),
      }),
    );
  }

  rotateDeviceKey(device: string): Promise<Result> {
    return this.run(() => this.rotateDeviceKeyNow(device));
  }

  private rotateDeviceKeyNow(device: string): Promise<Result> {
    return this.operate(
      'device-key-rotated',
      () => this.c2.rotateDeviceKey(device),
      (r) => ({ device: r['device'], name: r['name'], gen: r['gen'] }),
    );
  }

  /** Resets; a rotate-on-removal rule covering the device also rotates every topic it held, in the
   * same batch (all or nothing, one write, sent together). */
  resetDevice(device: string): Promise<Result> {
    return this.run(async () => {
      const id = text(asRow(await this.c2.device(device)), 'id');
      const rules = await this.rules.onRemoval(id);
      const held = rules.length ? await this.topicsOf(id) : [];
      const describe = (r: Result) => ({ device: r['device'], name: r['name'], removedGrants: r['removedGrants'] });
      if (!held.length) return this.operate('device-reset', () => this.c2.resetDevice(device), describe);
      const { result, delivery } = asRow(
        await this.c2.batch(async (c: C2) => {
          const reset = asRow(await c.resetDevice(device));
          const rotated: Result[] = [];
          for (const t of held) rotated.push(asRow(await c.rotateTopic(t)));
          return { ...reset, delivery: undefined, rotated: rotated.map((r) => ({ topic: r['topic'], gen: r['gen'] })) };
        }),
      );
      const r: Result = { ...asRow(result), delivery };
      await this.events.emit('device-reset', describe(r));
      for (const t of list(r['rotated']))
        await this.events.emit('topic-rotated', { topic: t['topic'], gen: t['gen'], because: `reset of ${device}` });
      await this.reportDelivery(delivery);
      await this.ruleRan(rules, `rotated ${held.join(', ')} after resetting ${device}`);
      return r;
    });
  }

  flush(): Promise<Result> {
    return this.run(() => this.flushNow());
  }

  private async flushNow(): Promise<Result> {
    const delivery = await this.c2.flush();
    await this.reportDelivery(delivery);
    return asRow(delivery);
  }

  list(): Promise<Result> {
    return this.run(async () => asRow(await this.c2.list()));
  }

  device(ref: string): Promise<Result> {
    return this.run(async () => asRow(await this.c2.device(ref)));
  }

  config(ref: string, options: { clock?: string; transport?: Record<string, unknown> }): Promise<Result> {
    return this.run(async () => asRow(await this.c2.deviceConfig(ref, options)));
  }

  exportE41P(ref: string): Promise<Uint8Array> {
    return this.run(async () => {
      const bytes: unknown = await this.c2.exportE41P(ref);
      if (!(bytes instanceof Uint8Array)) throw new ServiceError('INTERNAL', 'the E41P export is not bytes');
      return bytes;
    });
  }

  // ------------------------------------------------------------ protect / unprotect for integrations

  /** Protects a payload for a topic with its current key (what a device holding it can open). */
  protect(topic: string, payload: Uint8Array): Promise<Protected> {
    return this.run(async () => {
      const t = asRow(await this.c2.topic(topic));
      const gen = int(t, 'key_gen');
      const timestamp = Math.floor(this.nowS());
      const key = await this.c2.topicKey(text(t, 'hash'), gen);
      try {
        const message = this.e4.protect(key, timestamp, payload);
        return { topic, gen, timestamp, message };
      } finally {
        wipe(key);
      }
    });
  }

  /** Opens a message on a topic with any key generation the C2 still keeps, newest first. */
  unprotect(topic: string, message: Uint8Array): Promise<Unprotected> {
    return this.run(async () => {
      const t = asRow(await this.c2.topic(topic));
      const hash = text(t, 'hash');
      if (message.length < MIN_MESSAGE)
        throw new ServiceError('USAGE', `a protected message is at least ${MIN_MESSAGE} bytes (got ${message.length})`);
      const gens = (await rowsOf(this.c2).all('SELECT gen FROM topic_keys WHERE topic = ? ORDER BY gen DESC', [hash])).map((r) =>
        int(asRow(r), 'gen'),
      );
      for (const gen of gens) {
        const key = await this.c2.topicKey(hash, gen);
        let opened: ReturnType<E4['unprotect']> | null;
        try {
          opened = this.e4.unprotect(key, message);
        } catch {
          opened = null; // not this generation's key
        } finally {
          wipe(key);
        }
        if (opened) return { topic, gen, current: gen === int(t, 'key_gen'), timestamp: opened.timestamp, payload: opened.plaintext };
      }
      throw new ServiceError(
        'INVALID_TAG',
        `no key of topic ${JSON.stringify(topic)} the C2 keeps (generations ${gens.join(', ')}) opens this message`,
      );
    });
  }

  // ------------------------------------------------------------ observation (MQTT traffic)

  /** A message seen on a data topic: which key generation opens it, and who publishes with it. */
  observe(topic: string, message: Uint8Array): Promise<void> {
    return this.run(async () => {
      const seen: unknown = await this.c2.observe(topic, message);
      if (!seen) return;
      const r = asRow(seen);
      const device = textOrNull(r, 'device');
      const gen = int(r, 'gen');
      const current = r['current'] === true;
      const was = this.lastSeen.get(topic);
      const now = `${device ?? '?'}|${gen}`;
      if (was === now) return;
      this.lastSeen.set(topic, now);
      await this.events.emit('key-seen', { device, topic, gen, current });
      if (device && current) await this.events.emit('device-confirmed', { device, topic, gen });
    });
  }

  // ------------------------------------------------------------ rules

  listRules(): Promise<Rule[]> {
    return this.run(() => this.rules.list());
  }

  addRule(req: RuleRequest): Promise<Rule> {
    return this.run(async () => {
      const rule = await this.rules.add(req);
      await this.events.emit('rule-added', {
        rule: rule.id,
        kind: rule.kind,
        target: rule.target,
        device: rule.kind === 'rotate-topic' ? null : rule.target,
        topic: rule.kind === 'rotate-topic' ? rule.target : null,
      });
      return rule;
    });
  }

  removeRule(id: string): Promise<Rule> {
    return this.run(async () => {
      const rule = await this.rules.remove(id);
      await this.events.emit('rule-removed', { rule: rule.id, kind: rule.kind });
      return rule;
    });
  }

  planRules(): Promise<PlannedAction[]> {
    return this.run(() => this.rules.plan(this.ruleActions()));
  }

  /** Runs the timed rules that are due (serve calls this every second; tests move the clock). */
  tick(): Promise<RuleRun[]> {
    return this.run(() => this.rules.runDue(this.ruleActions()));
  }

  private async ruleRan(rules: Rule[], what: string): Promise<void> {
    const at = Math.floor(this.nowS());
    for (const rule of rules) {
      await this.rules.ran(rule, at, null);
      await this.events.emit('rule-run', { rule: rule.id, kind: rule.kind, action: what });
    }
  }

  private async topicsOf(deviceId: string): Promise<string[]> {
    const rows = await rowsOf(this.c2).all(
      'SELECT t.topic FROM grants g JOIN topics t ON t.hash = g.topic WHERE g.device = ? ORDER BY t.topic',
      [deviceId],
    );
    return rows.map((r) => text(asRow(r), 'topic'));
  }

  private ruleActions(): RuleActions {
    return {
      rotateTopic: async (topic, rule) => {
        await this.rotateTopicNow(topic);
        await this.events.emit('rule-run', { rule: rule.id, kind: rule.kind, topic, action: `rotated ${topic}` });
      },
      rotateDeviceKey: async (device, rule) => {
        await this.rotateDeviceKeyNow(device);
        await this.events.emit('rule-run', { rule: rule.id, kind: rule.kind, device, action: 'new client key' });
      },
      retryQueued: async (rule) => {
        const delivery = await this.flushNow();
        const left = list(delivery['failed']).length + list(delivery['queued']).length;
        await this.events.emit('rule-run', {
          rule: rule.id,
          kind: rule.kind,
          action: `re-sent: ${list(delivery['acked']).length} acknowledged, ${left} still unacknowledged`,
        });
        return left;
      },
      queuedCount: async () => int(asRow(await rowsOf(this.c2).get(`SELECT COUNT(*) AS n FROM commands WHERE status = 'queued'`)), 'n'),
      deviceIds: async () => (await rowsOf(this.c2).all('SELECT id FROM devices ORDER BY id')).map((r) => text(asRow(r), 'id')),
      topicsOf: (id) => this.topicsOf(id),
      deviceLabel: async (id) => {
        const row = await rowsOf(this.c2).get('SELECT name FROM devices WHERE id = ?', [id]);
        return (row ? textOrNull(asRow(row), 'name') : null) ?? id;
      },
      ruleFailed: async (rule, e) => {
        await this.events.emit('rule-failed', { rule: rule.id, kind: rule.kind, error: asServiceError(e).message });
      },
    };
  }

  // ------------------------------------------------------------ tokens

  authenticate(header: string | undefined): Promise<string> {
    return this.run(() => authenticate(this.c2, header, this.nowS()));
  }

  createToken(name: string): Promise<NewToken> {
    return this.run(async () => {
      const t = await createToken(this.c2, name, this.nowS());
      await this.events.emit('token-created', { name });
      return t;
    });
  }

  listTokens(): Promise<TokenInfo[]> {
    return this.run(() => listTokens(this.c2));
  }

  revokeToken(name: string): Promise<{ name: string }> {
    return this.run(async () => {
      const r = await revokeToken(this.c2, name);
      await this.events.emit('token-revoked', { name });
      return r;
    });
  }
}
