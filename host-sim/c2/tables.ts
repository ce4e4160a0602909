/**
 * The service's own tables (API tokens, automation rules, the event log), reached only through
 * the store's generic all/get/run with `?` placeholders and SQL common to SQLite and PostgreSQL.
 *
 * The storage rewrite (SQLite through better-sqlite3, PostgreSQL) creates these tables in its
 * versioned schema; until then `ensureServiceTables` adds them to an existing database once.
 */
import type { C2 } from './c2.ts';

export const SERVICE_TABLES: Readonly<Record<string, string>> = {
  api_tokens:
    'CREATE TABLE IF NOT EXISTS api_tokens (name TEXT PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, created BIGINT NOT NULL, last_used BIGINT)',
  rules: `CREATE TABLE IF NOT EXISTS rules (id TEXT PRIMARY KEY, kind TEXT NOT NULL, target TEXT, every_s BIGINT, spec TEXT NOT NULL,
    created BIGINT NOT NULL, last_run BIGINT, next_run BIGINT)`,
  events:
    'CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, at BIGINT NOT NULL, kind TEXT NOT NULL, device TEXT, topic TEXT, detail TEXT NOT NULL)',
};

/** The few store calls the service uses; each may be synchronous (sql.js) or not (the rewrite). */
export interface Rows {
  all(sql: string, params?: unknown[]): unknown[] | Promise<unknown[]>;
  get(sql: string, params?: unknown[]): unknown | Promise<unknown>;
  run(sql: string, params?: unknown[]): unknown;
}

function isRows(v: unknown): v is Rows {
  if (!v || typeof v !== 'object') return false;
  const r = v as Record<string, unknown>;
  return typeof r['all'] === 'function' && typeof r['get'] === 'function' && typeof r['run'] === 'function';
}

/** The C2's store (checked here: c2.ts does not declare its fields yet). */
export function rowsOf(c2: C2): Rows {
  const store: unknown = Reflect.get(c2, 'store');
  if (!isRows(store)) throw new TypeError('this C2 has no store with all/get/run');
  return store;
}

/** The service tables that the database lacks (SQLite's catalogue: the step the rewrite drops). */
async function missingTables(c2: C2): Promise<string[]> {
  const missing: string[] = [];
  for (const name of Object.keys(SERVICE_TABLES)) {
    const row = await rowsOf(c2).get(`SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?`, [name]);
    if (!row) missing.push(name);
  }
  return missing;
}

/** Adds the service tables to a database that lacks them (written once). */
export async function ensureServiceTables(c2: C2): Promise<void> {
  const missing = await missingTables(c2);
  if (!missing.length) return;
  for (const name of missing) await rowsOf(c2).run(SERVICE_TABLES[name]!);
  await c2.save();
}

/** True when a read-only reader (the CLI's `rules list`) finds the service tables. */
export async function hasServiceTables(c2: C2): Promise<boolean> {
  return (await missingTables(c2)).length === 0;
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
