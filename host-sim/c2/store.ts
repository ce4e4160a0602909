/**
 * The C2's database: SQLite (better-sqlite3, a file, WAL) or PostgreSQL (pg, selected by a
 * postgres:// URL), with the same schema (schema.ts) and the same SQL: the subset both accept,
 * with `?` placeholders (numbered for PostgreSQL here).
 *
 * Secrets at rest: a master key is derived from the passphrase with Argon2id (salt and
 * parameters in the `meta` table); HKDF-SHA256 splits it into a sealing key, a MAC key and a
 * verifier key. Every E4 key is sealed with AES-256-GCM, the row's identity as associated data.
 * Every other row the C2 relies on (devices, topics, grants, commands) carries an HMAC-SHA256
 * over its table, identity and content, checked whenever the C2 reads it: a row edited, forged or
 * moved outside the C2 is refused (INTEGRITY) and the operation that read it changes nothing. A
 * verifier tells a wrong passphrase from a modified database.
 *
 * Writes are incremental: each operation is one transaction touching only its rows.
 */
import fs from 'node:fs';
import path from 'node:path';
import { AsyncLocalStorage } from 'node:async_hooks';
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import Database from 'better-sqlite3';
import type pg from 'pg';
import { argon2id } from '@noble/hashes/argon2.js';
import { fitsColumn, MIGRATIONS, SCHEMA_VERSION, TABLES } from './schema.ts';
import type { Dialect, Row, SqlValue, Table, TableRows } from './schema.ts';

export type { Dialect, Row, SqlValue } from './schema.ts';

export const FORMAT = 'e4-c2/2';
export interface KdfParams {
  t: number;
  m: number;
  p: number;
}
/** RFC 9106's second recommended option (64 MiB, 3 passes); p = 1 because this Argon2id runs
 * single-threaded anyway. About 0.8 s on one core here. */
export const DEFAULT_KDF: Readonly<KdfParams> = Object.freeze({ t: 3, m: 65536, p: 1 });
/** Bounds accepted from a database (the parameters are authenticated only through the verifier,
 * so a database must not be able to make opening it take hours or all the memory). */
const KDF_LIMITS: { readonly [K in keyof KdfParams]: readonly [number, number] } = { t: [1, 64], m: [8, 4194304], p: [1, 16] };

export type C2ErrorCode = 'USAGE' | 'NOT_FOUND' | 'EXISTS' | 'WRONG_PASSPHRASE' | 'INTEGRITY' | 'IO';

export class C2Error extends Error {
  readonly code: C2ErrorCode;
  constructor(code: C2ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'C2Error';
    this.code = code;
  }
}

const enc = new TextEncoder();

function checkKdf(kdf: unknown): KdfParams {
  if (!kdf || typeof kdf !== 'object') throw new C2Error('USAGE', 'kdf parameters must be an object {t, m, p}');
  const o = kdf as { [k: string]: unknown };
  const out: KdfParams = { t: 0, m: 0, p: 0 };
  for (const k of ['t', 'm', 'p'] as const) {
    const v = o[k];
    const [lo, hi] = KDF_LIMITS[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi)
      throw new C2Error('USAGE', `kdf parameter ${k} must be an integer in [${lo}, ${hi}]`);
    out[k] = v;
  }
  if (out.m < 8 * out.p) throw new C2Error('USAGE', 'kdf memory must be at least 8 KiB per lane');
  return out;
}

export type Passphrase = string | Uint8Array;

function checkPassphrase(passphrase: unknown): Uint8Array {
  if (typeof passphrase !== 'string' && !(passphrase instanceof Uint8Array))
    throw new C2Error('USAGE', 'a passphrase is required (string)');
  if (passphrase.length === 0) throw new C2Error('USAGE', 'the passphrase is empty');
  return typeof passphrase === 'string' ? enc.encode(passphrase) : passphrase;
}

interface Keys {
  seal: Buffer;
  mac: Buffer;
  verify: Buffer;
}

/** Argon2id, then HKDF into independent keys. `version` names the format the keys are for. */
export function deriveKeys(passphrase: Passphrase, salt: Uint8Array, kdf: KdfParams, version = 'e4-c2 v2 '): Keys {
  const master = argon2id(checkPassphrase(passphrase), salt, { t: kdf.t, m: kdf.m, p: kdf.p, dkLen: 32 });
  const sub = (info: string) => Buffer.from(hkdfSync('sha256', master, salt, version + info, 32));
  const keys = { seal: sub('seal'), mac: sub('mac'), verify: sub('verify') };
  master.fill(0);
  return keys;
}

function verifierOf(keys: Keys, salt: Uint8Array, kdfText: string, format = FORMAT): Buffer {
  return createHmac('sha256', keys.verify)
    .update('e4-c2 passphrase verifier|' + format + '|')
    .update(salt)
    .update('|' + kdfText)
    .digest();
}

/** AES-256-GCM: version byte 1 | 12-byte nonce | ciphertext (32) | tag (16). */
export function sealWith(key: Buffer, aad: string, plain: Uint8Array): Uint8Array {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(Buffer.from(aad));
  const ct = Buffer.concat([c.update(plain), c.final()]);
  return new Uint8Array(Buffer.concat([Buffer.from([1]), iv, ct, c.getAuthTag()]));
}

export function unsealWith(key: Buffer, aad: string, sealed: unknown): Uint8Array {
  try {
    if (!(sealed instanceof Uint8Array) || sealed.length !== 1 + 12 + 32 + 16 || sealed[0] !== 1) throw new Error('shape');
    const b = Buffer.from(sealed);
    const d = createDecipheriv('aes-256-gcm', key, b.subarray(1, 13));
    d.setAAD(Buffer.from(aad));
    d.setAuthTag(b.subarray(13 + 32));
    return new Uint8Array(Buffer.concat([d.update(b.subarray(13, 13 + 32)), d.final()]));
  } catch {
    throw new C2Error(
      'INTEGRITY',
      `a sealed key (${aad.split('|').slice(1, 3).join(' ')}) failed authentication: the database was modified`,
    );
  }
}

// ------------------------------------------------------------------ connections

/** One connection's view: rows of a query, or the number of rows a statement changed. */
export interface Connection {
  all(sql: string, params: readonly SqlValue[]): Promise<Row[]>;
  run(sql: string, params: readonly SqlValue[]): Promise<number>;
}

interface Backend {
  readonly dialect: Dialect;
  /** Where the data is, for messages (no password). */
  readonly where: string;
  /** Outside any transaction. */
  readonly query: Connection;
  transaction<T>(fn: (c: Connection) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

const toBind = (v: SqlValue): SqlValue | Buffer =>
  v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : v;

/** A ? -> $n rewrite that leaves quoted text alone. */
function numbered(sql: string): string {
  let n = 0;
  let out = '';
  let quoted = false;
  for (const ch of sql) {
    if (ch === "'") quoted = !quoted;
    out += ch === '?' && !quoted ? '$' + ++n : ch;
  }
  return out;
}

function ioError(where: string, e: unknown): C2Error {
  if (e instanceof C2Error) return e;
  const m = e instanceof Error ? e.message : String(e);
  return new C2Error('IO', `the C2 database (${where}): ${m}`, { cause: e });
}

class SqliteBackend implements Backend {
  readonly dialect = 'sqlite' as const;
  readonly where: string;
  private readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement<(SqlValue | Buffer)[], Row>>();
  /** One connection: a transaction and anything else this process runs take turns. */
  private turn: Promise<unknown> = Promise.resolve();
  readonly query: Connection;
  private readonly direct: Connection;

  constructor(file: string, readOnly: boolean) {
    this.where = file;
    this.db = new Database(file, { readonly: readOnly, fileMustExist: readOnly, timeout: 30000 });
    const direct: Connection = {
      all: async (sql, params) => this.statement(sql).all(...params.map(toBind)),
      run: async (sql, params) => {
        const st = this.statement(sql);
        if (st.reader) {
          st.all(...params.map(toBind));
          return 0;
        }
        return st.run(...params.map(toBind)).changes;
      },
    };
    this.direct = direct;
    this.query = {
      all: (sql, params) => this.take(() => direct.all(sql, params)),
      run: (sql, params) => this.take(() => direct.run(sql, params)),
    };
  }

  /** Settings for a writer: WAL (readers never wait for the writer, commits append), full
   * fsync at commit, freed pages zeroed (a removed sealed key leaves no copy), foreign keys. */
  configure(): void {
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('secure_delete = ON');
    this.db.pragma('foreign_keys = ON');
  }

  private statement(sql: string): Database.Statement<(SqlValue | Buffer)[], Row> {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare<(SqlValue | Buffer)[], Row>(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  private take<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.turn.then(fn);
    this.turn = run.catch(() => undefined);
    return run;
  }

  transaction<T>(fn: (c: Connection) => Promise<T>): Promise<T> {
    return this.take(async () => {
      // IMMEDIATE: the write lock is taken at BEGIN, so two processes never both read and then
      // both write (another process waits up to the busy timeout).
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const r = await fn(this.direct);
        this.db.exec('COMMIT');
        return r;
      } catch (e) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw e;
      }
    });
  }

  async close(): Promise<void> {
    await this.turn;
    this.db.close();
  }
}

/** PostgreSQL errors after which the whole transaction is simply run again. */
const RETRY_CODES = new Set(['40001', '40P01']); // serialization_failure, deadlock_detected

function pgCode(e: unknown): string | undefined {
  return e && typeof e === 'object' && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

class PostgresBackend implements Backend {
  readonly dialect = 'postgres' as const;
  readonly where: string;
  private readonly pool: pg.Pool;
  readonly query: Connection;

  /** `pg` is loaded only when a PostgreSQL URL is given (a SQLite C2 starts faster without it). */
  static async connect(url: string): Promise<PostgresBackend> {
    return new PostgresBackend(url, (await import('pg')).default);
  }

  private constructor(url: string, pgModule: typeof pg) {
    // For messages: the URL without user, password or parameters, and the socket folder if any.
    const socket = /[?&]host=([^&]+)/.exec(url);
    this.where = url.replace(/\/\/[^@/]*@/, '//').replace(/\?.*$/, '') + (socket ? ` (socket ${decodeURIComponent(socket[1])})` : '');
    this.pool = new pgModule.Pool({
      connectionString: url,
      max: 4,
      // BIGINT columns hold seconds, generations and sequence numbers: well inside 2^53.
      types: {
        getTypeParser: (oid: number, format?: 'text' | 'binary') =>
          oid === 20 ? (v: string) => Number(v) : pgModule.types.getTypeParser(oid, format),
      },
    });
    this.pool.on('error', () => undefined); // an idle connection dropped: the next query reconnects
    this.query = PostgresBackend.connection((text, values) => this.pool.query<Row>(text, values));
  }

  private static connection(q: (text: string, values: (SqlValue | Buffer)[]) => Promise<pg.QueryResult<Row>>): Connection {
    return {
      all: async (sql, params) => (await q(numbered(sql), params.map(toBind))).rows,
      run: async (sql, params) => (await q(numbered(sql), params.map(toBind))).rowCount ?? 0,
    };
  }

  /** READ COMMITTED with explicit row locks (SELECT ... FOR UPDATE on the device or topic row
   * an operation changes); a deadlock between two C2 processes aborts one, which runs again. */
  async transaction<T>(fn: (c: Connection) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      const conn = PostgresBackend.connection((text, values) => client.query<Row>(text, values));
      for (let attempt = 1; ; attempt++) {
        await client.query('BEGIN');
        try {
          const r = await fn(conn);
          await client.query('COMMIT');
          return r;
        } catch (e) {
          await client.query('ROLLBACK').catch(() => undefined);
          const code = pgCode(e);
          if (code && RETRY_CODES.has(code) && attempt < 10) {
            await new Promise((r) => setTimeout(r, 5 * attempt + Math.random() * 20));
            continue;
          }
          throw e;
        }
      }
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//.test(location);
}

// ------------------------------------------------------------------ row integrity

function macUpdate(h: ReturnType<typeof createHmac>, v: SqlValue | undefined): void {
  if (v === null || v === undefined) h.update('n;');
  else if (typeof v === 'number') h.update(`i${v};`);
  else if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    h.update(`s${b.length}:`).update(b);
  } else h.update(`b${v.length}:`).update(v);
}

/** Rows per multi-row statement: SQLite binds at most 32,766 parameters, PostgreSQL 65,535. */
const MAX_PARAMS = 30000;

export interface OpenOptions {
  readOnly?: boolean;
}

/**
 * An open, verified database. Reads and writes go through `all`, `get`, `run` (generic SQL) and
 * `read`/`write`/`remove` (rows with their MAC); `transaction(fn)` makes everything fn does one
 * atomic change (calls made while it runs, from fn's async flow, join it).
 */
export class Store {
  readonly dialect: Dialect;
  readonly where: string;
  readonly readOnly: boolean;
  closed = false;
  private readonly backend: Backend;
  private readonly keys: Keys;
  private readonly inTx = new AsyncLocalStorage<Connection>();

  private constructor(backend: Backend, keys: Keys, readOnly: boolean) {
    this.backend = backend;
    this.dialect = backend.dialect;
    this.where = backend.where;
    this.keys = keys;
    this.readOnly = readOnly;
  }

  /** ' FOR UPDATE' where a row lock means something (PostgreSQL); SQLite's transactions hold
   * the database's write lock from BEGIN IMMEDIATE on. */
  get forUpdate(): string {
    return this.dialect === 'postgres' ? ' FOR UPDATE' : '';
  }

  static async create(location: string, passphrase: Passphrase, kdfIn: KdfParams = DEFAULT_KDF): Promise<Store> {
    const kdf = checkKdf(kdfIn);
    checkPassphrase(passphrase);
    let backend: Backend;
    if (isPostgresUrl(location)) {
      backend = await PostgresBackend.connect(location);
      const exists = await backend.query
        .all(`SELECT 1 AS x FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'meta'`, [])
        .catch(async (e: unknown) => {
          await backend.close();
          throw ioError(backend.where, e);
        });
      if (exists.length) {
        await backend.close();
        throw new C2Error('EXISTS', `${backend.where} already holds a C2 database: it is created once`);
      }
    } else {
      if (fs.existsSync(location)) throw new C2Error('EXISTS', `${location} already exists: the C2 database is created once`);
      fs.mkdirSync(path.dirname(path.resolve(location)), { recursive: true, mode: 0o700 });
      const fd = fs.openSync(location, 'wx', 0o600); // the file is the operator's alone
      fs.closeSync(fd);
      const b = new SqliteBackend(location, false);
      b.configure();
      backend = b;
    }
    const salt = randomBytes(16);
    const keys = deriveKeys(passphrase, salt, kdf);
    const kdfText = JSON.stringify({ alg: 'argon2id', v: 19, t: kdf.t, m: kdf.m, p: kdf.p });
    const store = new Store(backend, keys, false);
    try {
      await backend.transaction(async (c) => {
        await c.run('CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)', []);
        for (const [k, v] of [
          ['format', FORMAT],
          ['schema', '0'],
          ['salt', salt.toString('hex')],
          ['kdf', kdfText],
          ['verifier', verifierOf(keys, salt, kdfText).toString('hex')],
          ['created', new Date().toISOString()],
        ])
          await c.run('INSERT INTO meta (k, v) VALUES (?, ?)', [k, v]);
        await Store.migrate(c, backend.dialect, 0);
      });
    } catch (e) {
      await store.close();
      throw ioError(backend.where, e);
    }
    return store;
  }

  private static async migrate(c: Connection, dialect: Dialect, from: number): Promise<void> {
    for (let v = from; v < SCHEMA_VERSION; v++) {
      for (const sql of MIGRATIONS[v](dialect)) await c.run(sql, []);
    }
    await c.run('UPDATE meta SET v = ? WHERE k = ?', [String(SCHEMA_VERSION), 'schema']);
  }

  static async open(location: string, passphrase: Passphrase, { readOnly = false }: OpenOptions = {}): Promise<Store> {
    checkPassphrase(passphrase);
    let backend: Backend;
    if (isPostgresUrl(location)) backend = await PostgresBackend.connect(location);
    else {
      if (!fs.existsSync(location)) throw new C2Error('NOT_FOUND', `no C2 database at ${location}: run \`init\` first`);
      try {
        // Read-only first: nothing (not even WAL mode) is written before the checks pass.
        backend = new SqliteBackend(location, true);
      } catch (e) {
        throw new C2Error('IO', `cannot open ${location}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    let keys: Keys | null = null;
    let schema: number;
    try {
      let meta: Map<string, string>;
      try {
        const rows = await backend.query.all('SELECT k, v FROM meta', []);
        meta = new Map(rows.map((r) => [String(r.k), r.v instanceof Uint8Array ? Buffer.from(r.v).toString() : String(r.v)]));
      } catch (e) {
        if (backend.dialect === 'postgres' && pgCode(e) !== '42P01') throw ioError(backend.where, e); // 42P01: no such table
        throw new C2Error('INTEGRITY', `${backend.where} is not a valid C2 database (corrupt or modified; nothing was changed)`);
      }
      if (meta.get('format') === 'e4-c2/1') {
        throw new C2Error(
          'USAGE',
          `${backend.where} is an e4-c2/1 database (sql.js, whole-file MAC): convert it with \`e4-c2 migrate --from ${location} --db NEW\``,
        );
      }
      if (meta.get('format') !== FORMAT)
        throw new C2Error('INTEGRITY', `${backend.where} is not a valid C2 database (corrupt or modified; nothing was changed)`);
      const salt = Buffer.from(meta.get('salt') ?? '', 'hex');
      const kdfText = meta.get('kdf') ?? '';
      let kdfObj: unknown;
      try {
        kdfObj = JSON.parse(kdfText);
      } catch {
        kdfObj = null;
      }
      if (
        salt.length !== 16 ||
        !kdfObj ||
        typeof kdfObj !== 'object' ||
        !('alg' in kdfObj) ||
        kdfObj.alg !== 'argon2id' ||
        !('v' in kdfObj) ||
        kdfObj.v !== 19
      ) {
        throw new C2Error('INTEGRITY', `${backend.where} is not a valid C2 database (corrupt or modified; nothing was changed)`);
      }
      let kdf: KdfParams;
      try {
        kdf = checkKdf(kdfObj);
      } catch {
        throw new C2Error('INTEGRITY', `${backend.where}: its key-derivation parameters are out of bounds (modified; nothing was changed)`);
      }
      keys = deriveKeys(passphrase, salt, kdf);
      const verifier = Buffer.from(meta.get('verifier') ?? '', 'hex');
      const want = verifierOf(keys, salt, kdfText);
      if (verifier.length !== want.length || !timingSafeEqual(verifier, want)) {
        throw new C2Error(
          'WRONG_PASSPHRASE',
          'wrong passphrase for this C2 database, or its key-derivation parameters were altered (nothing was changed)',
        );
      }
      schema = Number(meta.get('schema'));
      if (!Number.isInteger(schema) || schema < 0)
        throw new C2Error('INTEGRITY', `${backend.where}: its schema version is not a number (modified; nothing was changed)`);
      if (schema > SCHEMA_VERSION)
        throw new C2Error(
          'USAGE',
          `${backend.where} has schema version ${schema}; this C2 knows up to ${SCHEMA_VERSION}: use a newer e4-c2`,
        );
      if (!readOnly && backend instanceof SqliteBackend) {
        await backend.close();
        const sqlite = new SqliteBackend(location, false);
        sqlite.configure();
        backend = sqlite;
      }
      if (schema < SCHEMA_VERSION) {
        if (readOnly)
          throw new C2Error(
            'USAGE',
            `${backend.where} has schema version ${schema}: open it once for writing to migrate it to ${SCHEMA_VERSION}`,
          );
        await backend.transaction(async (c) => {
          const [row] = await c.all(`SELECT v FROM meta WHERE k = 'schema'${backend.dialect === 'postgres' ? ' FOR UPDATE' : ''}`, []);
          const now = Number(row?.v);
          if (now < SCHEMA_VERSION) await Store.migrate(c, backend.dialect, now); // another process may have just done it
        });
      }
    } catch (e) {
      if (keys) for (const k of Object.values(keys)) k.fill(0);
      await backend.close().catch(() => undefined);
      if (e instanceof C2Error) throw e;
      const m = e instanceof Error ? e.message : String(e);
      if (/not a database|malformed|file is not/i.test(m))
        throw new C2Error('INTEGRITY', `${location} is not a valid C2 database (corrupt or modified; nothing was changed)`);
      throw ioError(backend.where, e);
    }
    return new Store(backend, keys, readOnly);
  }

  // ---- generic SQL ----
  private connection(): Connection {
    if (this.closed) throw new C2Error('USAGE', 'the C2 database is closed');
    return this.inTx.getStore() ?? this.backend.query;
  }

  async all<T extends Row = Row>(sql: string, params: readonly SqlValue[] = []): Promise<T[]> {
    try {
      return (await this.connection().all(sql, params)) as T[];
    } catch (e) {
      throw ioError(this.where, e);
    }
  }

  async get<T extends Row = Row>(sql: string, params: readonly SqlValue[] = []): Promise<T | undefined> {
    return (await this.all<T>(sql, params))[0];
  }

  /** Runs a statement; resolves to the number of rows it changed. */
  async run(sql: string, params: readonly SqlValue[] = []): Promise<number> {
    if (!this.inTx.getStore()) this.assertWritable();
    try {
      return await this.connection().run(sql, params);
    } catch (e) {
      throw ioError(this.where, e);
    }
  }

  /** Runs fn as one transaction: all of it or nothing. Calls fn makes (awaited in its flow) join it. */
  transaction<T>(fn: () => Promise<T>): Promise<T> {
    if (this.inTx.getStore()) return fn();
    this.assertWritable();
    return this.backend.transaction((c) => this.inTx.run(c, fn));
  }

  get inTransaction(): boolean {
    return this.inTx.getStore() !== undefined;
  }

  /** Serializes a critical section across C2 processes sharing a PostgreSQL database (a
   * transaction-scoped advisory lock); SQLite's write transaction already excludes the others. */
  async lock(name: string): Promise<void> {
    if (this.dialect === 'postgres') await this.all('SELECT pg_advisory_xact_lock(hashtext(?)) AS x', [name]);
  }

  assertWritable(): void {
    if (this.closed) throw new C2Error('USAGE', 'the C2 database is closed');
    if (this.readOnly) throw new C2Error('USAGE', 'the C2 database was opened read-only');
  }

  /**
   * Which database this is, as opposed to what it holds: the SQLite file's device and inode, or
   * the object ids PostgreSQL gave the C2's tables when they were created. It changes when the
   * database is replaced under an open C2 (an older copy put back over the file, the tables
   * dropped and restored from a dump): this connection would then go on with a database that is
   * no longer the one at `where`. It does not change with any C2's writes, this one's or another
   * process's sharing the database (those are safe: every operation reads its rows afresh, and
   * a row edited outside a C2 fails its MAC).
   */
  async identity(): Promise<string> {
    if (this.dialect === 'postgres') {
      const names = ['meta', ...Object.keys(TABLES), 'api_tokens', 'rules', 'events'].map((t) => `'${t}'`).join(', ');
      const r = await this.get(
        `SELECT string_agg(COALESCE(to_regclass(t)::oid::text, '-'), ':' ORDER BY t) AS ids FROM unnest(ARRAY[${names}]) AS t`,
      );
      return `postgres:${String(r?.ids)}`;
    }
    try {
      const st = fs.statSync(this.where);
      return `sqlite:${st.dev}:${st.ino}`;
    } catch {
      return 'sqlite:gone';
    }
  }

  // ---- authenticated rows ----
  macOf(table: Table, row: Row): Buffer {
    const h = createHmac('sha256', this.keys.mac).update(`e4-c2/2 row|${table}|`);
    for (const c of TABLES[table].columns) macUpdate(h, row[c.name]);
    return h.digest();
  }

  /** A row as read, checked: its MAC, and the type of each column. */
  checked<T extends Table>(table: T, row: Row): TableRows[T] {
    const mac = row.mac;
    const spec = TABLES[table];
    const ok =
      mac instanceof Uint8Array &&
      mac.length === 32 &&
      timingSafeEqual(Buffer.from(mac), this.macOf(table, row)) &&
      spec.columns.every(
        (c) =>
          fitsColumn(c, row[c.name]) && (!spec.words?.[c.name] || row[c.name] === null || spec.words[c.name].includes(String(row[c.name]))),
      );
    if (!ok) {
      const id = spec.key.map((k) => String(row[k])).join(' ');
      throw new C2Error(
        'INTEGRITY',
        `the C2 database failed its integrity check: a row of ${table} (${id}) was modified outside the C2 (nothing was changed)`,
      );
    }
    const out: Row = {};
    for (const c of spec.columns) out[c.name] = row[c.name] ?? null;
    return out as unknown as TableRows[T]; // every column's type was checked just above
  }

  /** Checked rows of `table` matching `where` (SQL after WHERE, may end in ORDER BY / FOR UPDATE). */
  async read<T extends Table>(table: T, where: string, params: readonly SqlValue[] = []): Promise<TableRows[T][]> {
    const rows = await this.all(`SELECT * FROM ${table} WHERE ${where}`, params);
    return rows.map((r) => this.checked(table, r));
  }

  async readOne<T extends Table>(table: T, where: string, params: readonly SqlValue[] = []): Promise<TableRows[T] | undefined> {
    return (await this.read(table, where, params))[0];
  }

  /** Inserts or replaces whole rows, each with its MAC; many rows per statement. */
  async write<T extends Table>(table: T, rows: readonly TableRows[T][]): Promise<void> {
    if (!rows.length) return;
    const spec = TABLES[table];
    const cols = [...spec.columns.map((c) => c.name), 'mac'];
    const set = cols.filter((c) => !spec.key.includes(c)).map((c) => `${c} = excluded.${c}`);
    const perStatement = Math.max(1, Math.floor(MAX_PARAMS / cols.length));
    const one = `(${cols.map(() => '?').join(', ')})`;
    for (let i = 0; i < rows.length; i += perStatement) {
      const chunk = rows.slice(i, i + perStatement);
      const params: SqlValue[] = [];
      for (const r of chunk) {
        const row = r as unknown as Row; // the table's row interface, as plain columns
        for (const c of spec.columns) params.push(row[c.name] ?? null);
        params.push(this.macOf(table, row));
      }
      await this.run(
        `INSERT INTO ${table} (${cols.join(', ')}) VALUES ${chunk.map(() => one).join(', ')} ON CONFLICT (${spec.key.join(', ')}) DO UPDATE SET ${set.join(', ')}`,
        params,
      );
    }
  }

  /** Deletes rows by their primary key; many per statement. Resolves to the number removed. */
  async remove<T extends Table>(table: T, keys: readonly SqlValue[][]): Promise<number> {
    const spec = TABLES[table];
    let n = 0;
    // An OR of key equalities: both engines look each one up in the primary key's index (a
    // row-value IN (VALUES ...) is a scan per value in SQLite).
    const one = `(${spec.key.map((k) => `${k} = ?`).join(' AND ')})`;
    for (let i = 0; i < keys.length; i += 500) {
      const chunk = keys.slice(i, i + 500);
      n += await this.run(`DELETE FROM ${table} WHERE ${chunk.map(() => one).join(' OR ')}`, chunk.flat());
    }
    return n;
  }

  // ---- sealing ----
  seal(aad: string, plain: Uint8Array): Uint8Array {
    return sealWith(this.keys.seal, aad, plain);
  }

  unseal(aad: string, sealed: unknown): Uint8Array {
    return unsealWith(this.keys.seal, aad, sealed);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.backend.close();
    } finally {
      for (const k of Object.values(this.keys)) k.fill(0);
    }
  }
}
