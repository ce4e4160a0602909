/**
 * The service's own tables (API tokens, automation rules, the event log), created by the store's
 * schema (schema.ts, version 1) and reached through the C2's store with `?` placeholders and SQL
 * common to SQLite and PostgreSQL. They carry no row MAC: see docs/c2.md, "What the service keeps".
 */
import type { C2 } from './c2.ts';
import type { Store } from './store.ts';

/** The C2's store, where the service tables live. */
export function rowsOf(c2: C2): Store {
  return c2.store;
}

// ---- narrowing rows (the store returns untyped records) ----

export type Row = Record<string, unknown>;

export function asRow(v: unknown): Row {
  if (!v || typeof v !== 'object') throw new TypeError('expected a database row');
  return v as Row;
}

export function text(row: Row, column: string): string {
  const v = row[column];
  if (typeof v !== 'string') throw new TypeError(`column ${column} is not text`);
  return v;
}

export function textOrNull(row: Row, column: string): string | null {
  const v = row[column];
  return v === null || v === undefined ? null : text(row, column);
}

/** SQLite gives numbers, PostgreSQL's BIGINT may come as a string or bigint. */
export function int(row: Row, column: string): number {
  const v = row[column];
  const n = typeof v === 'number' ? v : typeof v === 'bigint' || typeof v === 'string' ? Number(v) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw new TypeError(`column ${column} is not an integer`);
  return n;
}

export function intOrNull(row: Row, column: string): number | null {
  const v = row[column];
  return v === null || v === undefined ? null : int(row, column);
}
