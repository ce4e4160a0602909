/**
 * Automation: rules kept in the database and run by `e4-c2 serve`.
 *
 *   rotate-topic TOPIC --every 24h        a new key for TOPIC every period
 *   rotate-device-key [DEVICE] --every 30d a new client key for DEVICE (or every device) every period
 *   rotate-on-removal [DEVICE]             when DEVICE (or any device) is revoked from a topic or
 *                                          reset, every topic it held gets a new key, which it never
 *                                          receives (it knew the old one)
 *   retry --base 30s --max 1h              re-sends unacknowledged commands; the wait doubles after
 *                                          each attempt that leaves some unacknowledged, up to max
 *
 * Time comes from an injected clock (seconds), so tests move it instead of waiting. A rule whose
 * time passed while the service was down runs once when it starts, not once per missed period.
 */
import { randomBytes } from 'node:crypto';
import type { C2 } from './c2.ts';
import { ServiceError } from './errors.ts';
import { asRow, int, intOrNull, rowsOf, text, textOrNull, type Row } from './tables.ts';

export const RULE_KINDS = ['rotate-topic', 'rotate-device-key', 'rotate-on-removal', 'retry'] as const;
export type RuleKind = (typeof RULE_KINDS)[number];

/** Shortest periods accepted: a rule must not turn into a flood of commands. */
const MIN_EVERY_S = 60;
const MIN_RETRY_S = 1;
export const DEFAULT_RETRY = { baseS: 30, maxS: 3600 };

export interface RetryState {
  baseS: number;
  maxS: number;
  /** Attempts in a row that left commands unacknowledged (the back-off exponent). */
  failures: number;
}

export interface Rule {
  id: string;
  kind: RuleKind;
  /** A topic name (rotate-topic), a device id, or null for every device. */
  target: string | null;
  everyS: number | null;
  retry: RetryState | null;
  created: number;
  lastRun: number | null;
  /** Seconds since the epoch; null for the rule that waits for an event (rotate-on-removal). */
  nextRun: number | null;
}

/** What a client asks for (API body or command line); checked by `Rules.add`. */
export interface RuleRequest {
  kind?: unknown;
  target?: unknown;
  every?: unknown;
  base?: unknown;
  max?: unknown;
}

/** A step of the dry run: what a rule would do next, and when. */
export interface PlannedAction {
  rule: string;
  kind: RuleKind;
  /** Seconds since the epoch; null: on the event. */
  at: number | null;
  action: string;
  targets: string[];
}

/** What running a rule needs from the service. */
export interface RuleActions {
  rotateTopic(topic: string, rule: Rule): Promise<void>;
  rotateDeviceKey(device: string, rule: Rule): Promise<void>;
  /** Sends queued commands; the count still unacknowledged afterwards. */
  retryQueued(rule: Rule): Promise<number>;
  queuedCount(): Promise<number>;
  deviceIds(): Promise<string[]>;
  /** The topics a device holds (names). */
  topicsOf(deviceId: string): Promise<string[]>;
  deviceLabel(deviceId: string): Promise<string>;
  ruleFailed(rule: Rule, error: unknown): Promise<void>;
}

export interface RuleRun {
  rule: string;
  kind: RuleKind;
  at: number;
  ok: boolean;
}

/** "90s", "15m", "6h", "30d" (or a number of seconds) -> seconds. */
export function parseDuration(value: unknown, what: string): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value;
  const m = typeof value === 'string' ? /^(\d+)\s*(s|m|h|d)$/.exec(value.trim()) : null;
  if (!m) throw new ServiceError('USAGE', `${what} must be a duration such as 90s, 15m, 6h or 30d (got ${JSON.stringify(value)})`);
  const n = Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
  if (!Number.isSafeInteger(n) || n <= 0) throw new ServiceError('USAGE', `${what} must be positive`);
  return n;
}

/** A wait in words, rounded: "3d 4h", "5h 59m", "12m 5s". */
export function roughly(s: number): string {
  const units: [number, string][] = [
    [86400, 'd'],
    [3600, 'h'],
    [60, 'm'],
    [1, 's'],
  ];
  const parts: string[] = [];
  for (const [n, u] of units) {
    if (s >= n || (u === 's' && !parts.length)) {
      parts.push(`${Math.floor(s / n)}${u}`);
      s %= n;
    }
    if (parts.length === 2) break;
  }
  return parts.join(' ');
}

export function formatDuration(s: number): string {
  if (s % 86400 === 0) return `${s / 86400}d`;
  if (s % 3600 === 0) return `${s / 3600}h`;
  if (s % 60 === 0) return `${s / 60}m`;
  return `${s}s`;
}

function isKind(k: unknown): k is RuleKind {
  return typeof k === 'string' && (RULE_KINDS as readonly string[]).includes(k);
}

function ruleOf(row: Row): Rule {
  const kind = text(row, 'kind');
  if (!isKind(kind)) throw new ServiceError('INTEGRITY', `rule ${text(row, 'id')} has an unknown kind ${JSON.stringify(kind)}`);
  let retry: RetryState | null = null;
  if (kind === 'retry') {
    const spec = asRow(JSON.parse(text(row, 'spec')));
    retry = { baseS: int(spec, 'baseS'), maxS: int(spec, 'maxS'), failures: int(spec, 'failures') };
  }
  return {
    id: text(row, 'id'),
    kind,
    target: textOrNull(row, 'target'),
    everyS: intOrNull(row, 'every_s'),
    retry,
    created: int(row, 'created'),
    lastRun: intOrNull(row, 'last_run'),
    nextRun: intOrNull(row, 'next_run'),
  };
}

function specOf(rule: Pick<Rule, 'retry'>): string {
  return JSON.stringify(rule.retry ?? {});
}

/** Back-off: base, 2 base, 4 base, ... up to max. */
export function retryDelay(state: RetryState): number {
  return Math.min(state.maxS, state.baseS * 2 ** Math.min(state.failures, 30));
}

export class Rules {
  constructor(
    private readonly c2: C2,
    private readonly nowS: () => number,
  ) {}

  private now(): number {
    return Math.floor(this.nowS());
  }

  async list(): Promise<Rule[]> {
    const rows = await rowsOf(this.c2).all('SELECT * FROM rules ORDER BY created, id');
    return rows.map((r) => ruleOf(asRow(r)));
  }

  async get(id: string): Promise<Rule> {
    const row = await rowsOf(this.c2).get('SELECT * FROM rules WHERE id = ?', [id]);
    if (!row) throw new ServiceError('NOT_FOUND', `no rule ${JSON.stringify(id)}`);
    return ruleOf(asRow(row));
  }

  /** Checks a request (the topic or device must exist) and stores the rule. */
  async add(req: RuleRequest): Promise<Rule> {
    const known = ['kind', 'target', 'every', 'base', 'max'];
    for (const k of Object.keys(req))
      if (!known.includes(k)) throw new ServiceError('USAGE', `a rule has no field ${JSON.stringify(k)} (fields: ${known.join(', ')})`);
    const { kind } = req;
    if (!isKind(kind)) throw new ServiceError('USAGE', `a rule's kind is one of ${RULE_KINDS.join(', ')} (got ${JSON.stringify(kind)})`);
    if (req.target !== undefined && req.target !== null && typeof req.target !== 'string')
      throw new ServiceError('USAGE', 'a rule target is a string');
    const now = this.now();
    let target: string | null = typeof req.target === 'string' && req.target !== '' ? req.target : null;
    let everyS: number | null = null;
    let retry: RetryState | null = null;
    let nextRun: number | null = null;
    const refuse = (field: string) => {
      if (req[field as keyof RuleRequest] !== undefined) throw new ServiceError('USAGE', `a ${kind} rule takes no ${field}`);
    };
    if (kind === 'rotate-topic' || kind === 'rotate-device-key') {
      refuse('base');
      refuse('max');
      if (req.every === undefined)
        throw new ServiceError('USAGE', `a ${kind} rule needs every (e.g. ${kind === 'rotate-topic' ? '24h' : '30d'})`);
      everyS = parseDuration(req.every, 'every');
      if (everyS < MIN_EVERY_S) throw new ServiceError('USAGE', `every must be at least ${MIN_EVERY_S} s`);
      nextRun = now + everyS;
    }
    if (kind === 'rotate-topic') {
      if (target === null) throw new ServiceError('USAGE', 'a rotate-topic rule needs the topic (target)');
      const t = asRow(await this.c2.topic(target));
      target = text(t, 'topic');
    } else if (kind === 'rotate-device-key' || kind === 'rotate-on-removal') {
      if (target !== null) target = text(asRow(await this.c2.device(target)), 'id');
      if (kind === 'rotate-on-removal') {
        refuse('every');
        refuse('base');
        refuse('max');
      }
    } else {
      refuse('every');
      if (target !== null) throw new ServiceError('USAGE', 'a retry rule has no target: it covers every queued command');
      const baseS = req.base === undefined ? DEFAULT_RETRY.baseS : parseDuration(req.base, 'base');
      const maxS = req.max === undefined ? Math.max(DEFAULT_RETRY.maxS, baseS) : parseDuration(req.max, 'max');
      if (baseS < MIN_RETRY_S || maxS < baseS) throw new ServiceError('USAGE', 'retry needs 1 s <= base <= max');
      retry = { baseS, maxS, failures: 0 };
      nextRun = now + baseS;
    }
    const rows = rowsOf(this.c2);
    if (kind === 'retry' && (await rows.get(`SELECT id FROM rules WHERE kind = 'retry'`)))
      throw new ServiceError('EXISTS', 'there is already a retry rule (remove it first)');
    const same = await rows.get('SELECT id FROM rules WHERE kind = ? AND COALESCE(target, ?) = ?', [kind, '*', target ?? '*']);
    if (same) throw new ServiceError('EXISTS', `rule ${text(asRow(same), 'id')} already does this (${kind}${target ? ' ' + target : ''})`);
    const rule: Rule = { id: 'r-' + randomBytes(4).toString('hex'), kind, target, everyS, retry, created: now, lastRun: null, nextRun };
    await rows.run('INSERT INTO rules (id, kind, target, every_s, spec, created, last_run, next_run) VALUES (?, ?, ?, ?, ?, ?, NULL, ?)', [
      rule.id,
      kind,
      target,
      everyS,
      specOf(rule),
      now,
      nextRun,
    ]);
    return rule;
  }

  async remove(id: string): Promise<Rule> {
    const rule = await this.get(id);
    await rowsOf(this.c2).run('DELETE FROM rules WHERE id = ?', [id]);
    return rule;
  }

  /** The rotate-on-removal rules that cover a device. */
  async onRemoval(deviceId: string): Promise<Rule[]> {
    return (await this.list()).filter((r) => r.kind === 'rotate-on-removal' && (r.target === null || r.target === deviceId));
  }

  async ran(rule: Rule, at: number, nextRun: number | null, retry: RetryState | null = rule.retry): Promise<void> {
    await rowsOf(this.c2).run('UPDATE rules SET last_run = ?, next_run = ?, spec = ? WHERE id = ?', [
      at,
      nextRun,
      specOf({ retry }),
      rule.id,
    ]);
  }

  /** Seconds until the next timed rule is due (null: none). */
  async nextDue(): Promise<number | null> {
    const times = (await this.list()).map((r) => r.nextRun).filter((t): t is number => t !== null);
    return times.length ? Math.max(0, Math.min(...times) - this.now()) : null;
  }

  /** Runs every timed rule that is due, oldest first. */
  async runDue(actions: RuleActions): Promise<RuleRun[]> {
    const now = this.now();
    const due = (await this.list()).filter((r) => r.nextRun !== null && r.nextRun <= now).sort((a, b) => a.nextRun! - b.nextRun!);
    const runs: RuleRun[] = [];
    for (const rule of due) {
      let ok = true;
      try {
        await this.runOne(rule, actions, now);
      } catch (e) {
        ok = false;
        await actions.ruleFailed(rule, e);
        // A failing rule waits a period (or the back-off) before trying again, never spins.
        const retry = rule.retry && { ...rule.retry, failures: rule.retry.failures + 1 };
        await this.ran(rule, now, now + (retry ? retryDelay(retry) : (rule.everyS ?? MIN_EVERY_S)), retry);
      }
      runs.push({ rule: rule.id, kind: rule.kind, at: now, ok });
    }
    return runs;
  }

  private async runOne(rule: Rule, actions: RuleActions, now: number): Promise<void> {
    if (rule.kind === 'rotate-topic') {
      await actions.rotateTopic(rule.target!, rule);
      await this.ran(rule, now, now + rule.everyS!);
    } else if (rule.kind === 'rotate-device-key') {
      for (const id of rule.target === null ? await actions.deviceIds() : [rule.target]) await actions.rotateDeviceKey(id, rule);
      await this.ran(rule, now, now + rule.everyS!);
    } else if (rule.kind === 'retry') {
      const state = rule.retry!;
      if ((await actions.queuedCount()) === 0) {
        await this.ran(rule, rule.lastRun ?? now, now + state.baseS, { ...state, failures: 0 });
        return;
      }
      const left = await actions.retryQueued(rule);
      const next = left ? { ...state, failures: state.failures + 1 } : { ...state, failures: 0 };
      await this.ran(rule, now, now + (left ? retryDelay(next) : state.baseS), next);
    }
  }

  /** The dry run: what each rule would do next and when, soonest first (event rules last). */
  async plan(actions: RuleActions): Promise<PlannedAction[]> {
    const now = this.now();
    const out: PlannedAction[] = [];
    for (const rule of await this.list()) {
      const at = rule.nextRun === null ? null : Math.max(now, rule.nextRun);
      if (rule.kind === 'rotate-topic') {
        out.push({
          rule: rule.id,
          kind: rule.kind,
          at,
          action: `rotate topic ${rule.target} (every ${formatDuration(rule.everyS!)})`,
          targets: [],
        });
      } else if (rule.kind === 'rotate-device-key') {
        const ids = rule.target === null ? await actions.deviceIds() : [rule.target];
        const labels = await Promise.all(ids.map((id) => actions.deviceLabel(id)));
        out.push({
          rule: rule.id,
          kind: rule.kind,
          at,
          action: `new client key for ${rule.target === null ? `every device (${ids.length})` : labels[0]} (every ${formatDuration(rule.everyS!)})`,
          targets: labels,
        });
      } else if (rule.kind === 'rotate-on-removal') {
        const ids = rule.target === null ? await actions.deviceIds() : [rule.target];
        const topics = new Set<string>();
        for (const id of ids) for (const t of await actions.topicsOf(id)) topics.add(t);
        const who = rule.target === null ? 'any device' : await actions.deviceLabel(rule.target);
        out.push({
          rule: rule.id,
          kind: rule.kind,
          at: null,
          action: `when ${who} is revoked or reset: rotate the topics it held`,
          targets: [...topics].sort(),
        });
      } else {
        const queued = await actions.queuedCount();
        out.push({
          rule: rule.id,
          kind: rule.kind,
          at,
          action: queued
            ? `re-send ${queued} unacknowledged command(s) (wait after this: ${formatDuration(retryDelay({ ...rule.retry!, failures: rule.retry!.failures + 1 }))} if some stay unacknowledged)`
            : 'nothing unacknowledged: check again',
          targets: [],
        });
      }
    }
    return out.sort((a, b) => (a.at ?? Infinity) - (b.at ?? Infinity));
  }
}
