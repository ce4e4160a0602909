/**
 * The C2's tables: the SQL that creates them (one migration per schema version, written in the
 * subset SQLite and PostgreSQL share), and the typed columns of every row the C2 authenticates.
 *
 * Each authenticated row carries `mac`: HMAC-SHA256 over its table name and every column listed
 * here, in this order (identity included, so a row copied onto another identity fails). Columns
 * that only say who is sending a command right now (`claim`, `claimed_at`) are left out: changing
 * them can only delay or repeat a delivery, which a device's replay defences absorb.
 */
export type Dialect = 'sqlite' | 'postgres';
export type SqlValue = string | number | null | Uint8Array;
export type Row = { [column: string]: SqlValue };

type Kind = 'text' | 'int' | 'blob';
interface ColumnSpec {
  readonly name: string;
  readonly kind: Kind;
  readonly nullable: boolean;
}
const col = (name: string, kind: Kind, nullable = false): ColumnSpec => ({ name, kind, nullable });

export interface DeviceRow {
  id: string;
  name: string | null;
  key_gen: number;
  acked_key_gen: number;
  last_ts: number;
  next_seq: number;
  last_seen: number | null;
  created: number;
}
export interface DeviceKeyRow {
  device: string;
  gen: number;
  sealed: Uint8Array;
  created: number;
}
export interface TopicRow {
  hash: string;
  topic: string;
  key_gen: number;
  created: number;
}
export interface TopicKeyRow {
  topic: string;
  gen: number;
  sealed: Uint8Array;
  created: number;
}
export type Role = 'pub' | 'sub' | 'both';
export interface GrantRow {
  device: string;
  topic: string;
  role: Role;
  gen: number;
  acked_gen: number | null;
  seen_gen: number | null;
  created: number;
}
export type CommandKind = 'set-topic-key' | 'remove-topic' | 'reset-topics' | 'set-id-key';
export interface CommandRow {
  device: string;
  seq: number;
  ts: number;
  kind: CommandKind;
  topic: string | null;
  gen: number | null;
  phase: number;
  status: 'queued' | 'acked';
  message: Uint8Array | null;
  created: number;
  acked: number | null;
}

export interface TableRows {
  devices: DeviceRow;
  device_keys: DeviceKeyRow;
  topics: TopicRow;
  topic_keys: TopicKeyRow;
  grants: GrantRow;
  commands: CommandRow;
}
export type Table = keyof TableRows;

interface TableSpec {
  readonly key: readonly string[];
  readonly columns: readonly ColumnSpec[];
  /** Allowed values of text columns that hold one of a few words. */
  readonly words?: { readonly [column: string]: readonly string[] };
}

export const TABLES: { readonly [T in Table]: TableSpec } = {
  devices: {
    key: ['id'],
    columns: [
      col('id', 'text'),
      col('name', 'text', true),
      col('key_gen', 'int'),
      col('acked_key_gen', 'int'),
      col('last_ts', 'int'),
      col('next_seq', 'int'),
      col('last_seen', 'int', true),
      col('created', 'int'),
    ],
  },
  device_keys: {
    key: ['device', 'gen'],
    columns: [col('device', 'text'), col('gen', 'int'), col('sealed', 'blob'), col('created', 'int')],
  },
  topics: { key: ['hash'], columns: [col('hash', 'text'), col('topic', 'text'), col('key_gen', 'int'), col('created', 'int')] },
  topic_keys: { key: ['topic', 'gen'], columns: [col('topic', 'text'), col('gen', 'int'), col('sealed', 'blob'), col('created', 'int')] },
  grants: {
    key: ['device', 'topic'],
    columns: [
      col('device', 'text'),
      col('topic', 'text'),
      col('role', 'text'),
      col('gen', 'int'),
      col('acked_gen', 'int', true),
      col('seen_gen', 'int', true),
      col('created', 'int'),
    ],
    words: { role: ['pub', 'sub', 'both'] },
  },
  commands: {
    key: ['device', 'seq'],
    columns: [
      col('device', 'text'),
      col('seq', 'int'),
      col('ts', 'int'),
      col('kind', 'text'),
      col('topic', 'text', true),
      col('gen', 'int', true),
      col('phase', 'int'),
      col('status', 'text'),
      col('message', 'blob', true),
      col('created', 'int'),
      col('acked', 'int', true),
    ],
    words: { kind: ['set-topic-key', 'remove-topic', 'reset-topics', 'set-id-key'], status: ['queued', 'acked'] },
  },
};

/** True when `v` has the type the column declares (blobs come back as Buffer, a Uint8Array). */
export function fitsColumn(c: ColumnSpec, v: SqlValue | undefined): boolean {
  if (v === null) return c.nullable;
  if (c.kind === 'text') return typeof v === 'string';
  if (c.kind === 'int') return typeof v === 'number' && Number.isSafeInteger(v);
  return v instanceof Uint8Array;
}

/** Schema versions: MIGRATIONS[i] takes a database from version i to i + 1. */
type Migration = (d: Dialect) => string[];

function types(d: Dialect) {
  return d === 'sqlite' ? { INT: 'INTEGER', BLOB: 'BLOB', STRICT: ' STRICT' } : { INT: 'BIGINT', BLOB: 'BYTEA', STRICT: '' };
}

const version1: Migration = (d) => {
  const { INT, BLOB, STRICT } = types(d);
  return [
    `CREATE TABLE devices (id TEXT PRIMARY KEY, name TEXT UNIQUE, key_gen ${INT} NOT NULL, acked_key_gen ${INT} NOT NULL,
       last_ts ${INT} NOT NULL, next_seq ${INT} NOT NULL, last_seen ${INT}, created ${INT} NOT NULL, mac ${BLOB} NOT NULL)${STRICT}`,
    `CREATE TABLE device_keys (device TEXT NOT NULL REFERENCES devices(id), gen ${INT} NOT NULL, sealed ${BLOB} NOT NULL,
       created ${INT} NOT NULL, mac ${BLOB} NOT NULL, PRIMARY KEY (device, gen))${STRICT}`,
    `CREATE TABLE topics (hash TEXT PRIMARY KEY, topic TEXT NOT NULL UNIQUE, key_gen ${INT} NOT NULL, created ${INT} NOT NULL,
       mac ${BLOB} NOT NULL)${STRICT}`,
    `CREATE TABLE topic_keys (topic TEXT NOT NULL REFERENCES topics(hash), gen ${INT} NOT NULL, sealed ${BLOB} NOT NULL,
       created ${INT} NOT NULL, mac ${BLOB} NOT NULL, PRIMARY KEY (topic, gen))${STRICT}`,
    `CREATE TABLE grants (device TEXT NOT NULL REFERENCES devices(id), topic TEXT NOT NULL REFERENCES topics(hash),
       role TEXT NOT NULL CHECK (role IN ('pub', 'sub', 'both')), gen ${INT} NOT NULL, acked_gen ${INT}, seen_gen ${INT},
       created ${INT} NOT NULL, mac ${BLOB} NOT NULL, PRIMARY KEY (device, topic))${STRICT}`,
    `CREATE INDEX grants_by_topic ON grants (topic, device)`,
    `CREATE TABLE commands (device TEXT NOT NULL REFERENCES devices(id), seq ${INT} NOT NULL, ts ${INT} NOT NULL,
       kind TEXT NOT NULL, topic TEXT, gen ${INT}, phase ${INT} NOT NULL,
       status TEXT NOT NULL CHECK (status IN ('queued', 'acked')), message ${BLOB}, created ${INT} NOT NULL, acked ${INT},
       claim TEXT, claimed_at ${INT}, mac ${BLOB} NOT NULL, PRIMARY KEY (device, seq))${STRICT}`,
    `CREATE INDEX commands_queued ON commands (status, device, seq)`,
    `CREATE INDEX commands_by_topic ON commands (topic, device)`,
    // For `e4-c2 serve` (tokens, automation rules, the event feed): written through the generic
    // SQL surface, so these carry no row MAC.
    `CREATE TABLE api_tokens (name TEXT PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, created BIGINT NOT NULL, last_used BIGINT)`,
    `CREATE TABLE rules (id TEXT PRIMARY KEY, kind TEXT NOT NULL, target TEXT, every_s BIGINT, spec TEXT NOT NULL, created BIGINT NOT NULL, last_run BIGINT, next_run BIGINT)`,
    `CREATE TABLE events (id TEXT PRIMARY KEY, at BIGINT NOT NULL, kind TEXT NOT NULL, device TEXT, topic TEXT, detail TEXT NOT NULL)`,
  ];
};

export const MIGRATIONS: readonly Migration[] = [version1];
export const SCHEMA_VERSION = MIGRATIONS.length;
