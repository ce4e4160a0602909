/**
 * The service's event log: what happened to which device and topic, kept in the `events` table
 * (so a dashboard or client that reconnects gets what it missed, by id) and handed at once to
 * the live listeners (the server-sent event stream).
 *
 * Kinds:
 *   command-queued   a command waits in the database (no broker, or behind an unacknowledged one)
 *   command-sent     a command was handed to the broker (QoS 2 publish started)
 *   command-acked    the broker acknowledged it (PUBCOMP): it has the message, the device may not yet
 *   command-failed   the broker did not acknowledge it; it stays queued
 *   key-seen         traffic on a topic opened with key generation `gen` (`device` when the topic
 *                    has one publisher), `current` says whether it is the newest generation
 *   device-confirmed a device was seen using the key generation last sent to it
 *   device-added, topic-added, granted, revoked, topic-rotated, device-key-rotated, device-reset,
 *   rule-run, rule-failed, rule-added, rule-removed, token-created, token-revoked
 */
import { randomBytes } from 'node:crypto';
import type { C2 } from './c2.ts';
import { asRow, int, rowsOf, text, textOrNull } from './tables.ts';

export interface C2Event {
  /** Sortable: later events have greater ids (milliseconds, then a counter, then a random tag). */
  id: string;
  /** Milliseconds since the epoch. */
  at: number;
  kind: string;
  device: string | null;
  topic: string | null;
  detail: Record<string, unknown>;
}

/** `device` (an id) and `topic` (a name) are indexed columns when they are strings; the rest is detail. */
export type EventInput = Record<string, unknown>;

export type EventListener = (event: C2Event) => void;

/** Events kept in the database; older ones are dropped. */
export const EVENTS_KEPT = 5000;

export class EventLog {
  private readonly listeners = new Set<EventListener>();
  private counter = 0;
  private readonly tag = randomBytes(2).toString('hex');
  private sinceTrim = 0;

  constructor(
    private readonly c2: C2,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** Records an event and hands it to the listeners. Persisting is the caller's (one write for many). */
  async emit(kind: string, input: EventInput = {}): Promise<C2Event> {
    const { device, topic, ...detail } = input;
    const at = Math.floor(this.nowMs());
    this.counter = (this.counter + 1) % 1e6;
    const id = `${String(at).padStart(15, '0')}-${String(this.counter).padStart(6, '0')}-${this.tag}`;
    const event: C2Event = {
      id,
      at,
      kind,
      device: typeof device === 'string' ? device : null,
      topic: typeof topic === 'string' ? topic : null,
      detail,
    };
    await rowsOf(this.c2).run('INSERT INTO events (id, at, kind, device, topic, detail) VALUES (?, ?, ?, ?, ?, ?)', [
      id,
      at,
      kind,
      event.device,
      event.topic,
      JSON.stringify(detail),
    ]);
    if (++this.sinceTrim >= 500) await this.trim();
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // a listener's failure (a closed stream) is its own; the event is recorded
      }
    }
    return event;
  }

  async trim(): Promise<void> {
    this.sinceTrim = 0;
    const rows = rowsOf(this.c2);
    const cut = await rows.get('SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?', [EVENTS_KEPT]);
    if (cut) await rows.run('DELETE FROM events WHERE id <= ?', [text(asRow(cut), 'id')]);
  }

  /** Events after `afterId` (all kept ones when null), oldest first. */
  async since(afterId: string | null, limit = 1000): Promise<C2Event[]> {
    const rows = rowsOf(this.c2);
    const list =
      afterId === null
        ? (await rows.all('SELECT * FROM events ORDER BY id DESC LIMIT ?', [limit])).reverse()
        : await rows.all('SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?', [afterId, limit]);
    return list.map((r) => {
      const row = asRow(r);
      const detail: unknown = JSON.parse(text(row, 'detail'));
      return {
        id: text(row, 'id'),
        at: int(row, 'at'),
        kind: text(row, 'kind'),
        device: textOrNull(row, 'device'),
        topic: textOrNull(row, 'topic'),
        detail: detail && typeof detail === 'object' ? (detail as Record<string, unknown>) : {},
      };
    });
  }

  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
