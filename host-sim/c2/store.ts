/**
 * The C2's database file: SQLite (sql.js, WebAssembly) held in memory and written back whole,
 * atomically (temporary file, fsync, rename, fsync of the folder), after every operation.
 *
 * Secrets at rest: a master key is derived from the passphrase with Argon2id (salt and
 * parameters in the file); HKDF-SHA256 splits it into a sealing key, a MAC key and a verifier
 * key. Every E4 key is sealed with AES-256-GCM, the row's identity as associated data. Every byte
 * of the SQLite image is authenticated by an HMAC-SHA256 trailer; a verifier tells a wrong
 * passphrase from a modified file. Nothing is written before both checks pass.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import { argon2id } from '@noble/hashes/argon2.js';

export const FORMAT = 'e4-c2/1';
/** RFC 9106's second recommended option (64 MiB, 3 passes); p = 1 because this Argon2id runs
 * single-threaded anyway. About 0.8 s on one core here. */
export const DEFAULT_KDF = Object.freeze({ t: 3, m: 65536, p: 1 });
/** Bounds accepted from a file (the parameters are authenticated only through the verifier, so
 * a file must not be able to make opening it take hours or all the memory). */
const KDF_LIMITS = { t: [1, 64], m: [8, 4194304], p: [1, 16] };

export class C2Error extends Error {
  /** code: USAGE | NOT_FOUND | EXISTS | WRONG_PASSPHRASE | INTEGRITY | LOCKED | IO */
  constructor(code, message, options) {
    super(message, options);
    this.name = 'C2Error';
    this.code = code;
  }
}

const SCHEMA = [
  `CREATE TABLE meta (k TEXT PRIMARY KEY, v BLOB NOT NULL) STRICT`,
  `CREATE TABLE devices (id TEXT PRIMARY KEY, name TEXT UNIQUE, key_gen INTEGER NOT NULL, acked_key_gen INTEGER NOT NULL,
     last_ts INTEGER NOT NULL, next_seq INTEGER NOT NULL, last_seen INTEGER, created INTEGER NOT NULL) STRICT`,
  `CREATE TABLE device_keys (device TEXT NOT NULL REFERENCES devices(id), gen INTEGER NOT NULL, sealed BLOB NOT NULL,
     created INTEGER NOT NULL, PRIMARY KEY (device, gen)) STRICT`,
  `CREATE TABLE topics (hash TEXT PRIMARY KEY, topic TEXT NOT NULL UNIQUE, key_gen INTEGER NOT NULL, created INTEGER NOT NULL) STRICT`,
  `CREATE TABLE topic_keys (topic TEXT NOT NULL REFERENCES topics(hash), gen INTEGER NOT NULL, sealed BLOB NOT NULL,
     created INTEGER NOT NULL, PRIMARY KEY (topic, gen)) STRICT`,
  `CREATE TABLE grants (device TEXT NOT NULL REFERENCES devices(id), topic TEXT NOT NULL REFERENCES topics(hash),
     role TEXT NOT NULL CHECK (role IN ('pub', 'sub', 'both')), gen INTEGER NOT NULL, acked_gen INTEGER, seen_gen INTEGER,
     created INTEGER NOT NULL, PRIMARY KEY (device, topic)) STRICT`,
  `CREATE TABLE commands (device TEXT NOT NULL REFERENCES devices(id), seq INTEGER NOT NULL, ts INTEGER NOT NULL,
     kind TEXT NOT NULL, topic TEXT, gen INTEGER, phase INTEGER NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('queued', 'acked')), message BLOB, created INTEGER NOT NULL, acked INTEGER,
     PRIMARY KEY (device, seq)) STRICT`,
];
let sqlPromise = null;
function loadSql() {
  if (!sqlPromise) sqlPromise = createRequire(import.meta.url)('sql.js')();
  return sqlPromise;
}

const enc = new TextEncoder();

function checkKdf(kdf) {
  if (!kdf || typeof kdf !== 'object') throw new C2Error('USAGE', 'kdf parameters must be an object {t, m, p}');
  for (const k of ['t', 'm', 'p']) {
    const v = kdf[k];
    const [lo, hi] = KDF_LIMITS[k];
    if (!Number.isInteger(v) || v < lo || v > hi) throw new C2Error('USAGE', `kdf parameter ${k} must be an integer in [${lo}, ${hi}]`);
  }
  if (kdf.m < 8 * kdf.p) throw new C2Error('USAGE', 'kdf memory must be at least 8 KiB per lane');
  return { t: kdf.t, m: kdf.m, p: kdf.p };
}

function checkPassphrase(passphrase) {
  if (typeof passphrase !== 'string' && !(passphrase instanceof Uint8Array)) {
    throw new C2Error('USAGE', 'a passphrase is required (string)');
  }
  if (passphrase.length === 0) throw new C2Error('USAGE', 'the passphrase is empty');
  return typeof passphrase === 'string' ? enc.encode(passphrase) : passphrase;
}

/** Argon2id, then HKDF into independent keys. */
function deriveKeys(passphrase, salt, kdf) {
  const master = argon2id(checkPassphrase(passphrase), salt, { t: kdf.t, m: kdf.m, p: kdf.p, dkLen: 32 });
  const sub = (info) => Buffer.from(hkdfSync('sha256', master, salt, 'e4-c2 v1 ' + info, 32));
  const keys = { seal: sub('seal'), mac: sub('mac'), verify: sub('verify') };
  master.fill(0);
  return keys;
}

function verifierOf(keys, salt, kdfText) {
  return createHmac('sha256', keys.verify).update('e4-c2 passphrase verifier|' + FORMAT + '|').update(salt).update('|' + kdfText).digest();
}

function rowsOf(db, sql) {
  const res = db.exec(sql);
  return res.length ? res[0] : { columns: [], values: [] };
}

/** The file is the SQLite image followed by a trailer: MAGIC | HMAC-SHA256(mac key, image). The
 * MAC covers every byte of the image (schema, rows, free space), so any change is detected. SQLite
 * itself ignores the trailer (the page count in the image header says where the image ends). */
const TRAILER_MAGIC = Buffer.from('E4C2MAC1');
const TRAILER_LEN = TRAILER_MAGIC.length + 32;

function fileMac(macKey, image) {
  return createHmac('sha256', macKey).update('e4-c2 file mac|' + FORMAT + '|').update(image).digest();
}

function metaGet(db, k) {
  const r = rowsOf(db, `SELECT v FROM meta WHERE k = '${k}'`);
  return r.values.length ? r.values[0][0] : undefined;
}

function atomicWrite(file, bytes) {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let fd = fs.openSync(tmp, 'wx', 0o600);
  try {
    fs.writeSync(fd, bytes);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  try {
    fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // Some file systems cannot fsync a folder; the rename itself is still atomic.
  }
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/** One writer at a time: `<db>.lock` holds the owner's pid; a lock left by a dead process is taken over. */
function acquireLock(lockFile) {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = fs.openSync(lockFile, 'wx', 0o600);
      fs.writeSync(fd, String(process.pid));
      fs.closeSync(fd);
      return;
    } catch (e) {
      if (e.code !== 'EEXIST') throw new C2Error('IO', `cannot create ${lockFile}: ${e.message}`);
      const pid = Number.parseInt(fs.readFileSync(lockFile, 'utf8'), 10);
      if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) {
        throw new C2Error('LOCKED', `the C2 database is in use by process ${pid} (${lockFile})`);
      }
      fs.rmSync(lockFile, { force: true });
    }
  }
  throw new C2Error('LOCKED', `could not take ${lockFile}`);
}

const heldLocks = new Set();
process.on('exit', () => {
  for (const f of heldLocks) {
    try {
      fs.rmSync(f, { force: true });
    } catch {
      /* exiting anyway */
    }
  }
});

/**
 * An open, verified database. `db` is the sql.js handle; mutate it only inside `transaction`.
 */
export class Store {
  constructor(SQL, db, file, keys, bytes, readOnly, lockFile) {
    this.SQL = SQL;
    this.db = db;
    this.file = file;
    this.keys = keys;
    this.lastBytes = bytes;
    this.readOnly = readOnly;
    this.lockFile = lockFile;
    this.closed = false;
    this.dirty = false;
    /** Set during C2.batch: transactions commit in memory; the batch writes the file once. */
    this.deferWrites = false;
    this.pragmas();
  }

  pragmas() {
    // Freed pages are zeroed, so a removed (sealed) key leaves no copy behind in the file.
    this.db.run('PRAGMA secure_delete = ON');
    this.db.run('PRAGMA foreign_keys = ON');
  }

  static async create(file, passphrase, kdf = DEFAULT_KDF) {
    kdf = checkKdf(kdf);
    checkPassphrase(passphrase);
    if (fs.existsSync(file)) throw new C2Error('EXISTS', `${file} already exists: the C2 database is created once`);
    const SQL = await loadSql();
    const salt = randomBytes(16);
    const keys = deriveKeys(passphrase, salt, kdf);
    const kdfText = JSON.stringify({ alg: 'argon2id', v: 19, t: kdf.t, m: kdf.m, p: kdf.p });
    const db = new SQL.Database();
    for (const s of SCHEMA) db.run(s);
    const put = db.prepare('INSERT INTO meta (k, v) VALUES (?, ?)');
    for (const [k, v] of [
      ['format', enc.encode(FORMAT)],
      ['salt', salt],
      ['kdf', enc.encode(kdfText)],
      ['verifier', verifierOf(keys, salt, kdfText)],
      ['revision', enc.encode('0')],
      ['created', enc.encode(new Date().toISOString())],
    ])
      put.run([k, v]);
    put.free();
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 });
    const lockFile = file + '.lock';
    acquireLock(lockFile);
    heldLocks.add(lockFile);
    const store = new Store(SQL, db, file, keys, null, false, lockFile);
    store.persist();
    return store;
  }

  static async open(file, passphrase, { readOnly = false } = {}) {
    checkPassphrase(passphrase);
    let bytes;
    try {
      bytes = fs.readFileSync(file);
    } catch (e) {
      if (e.code === 'ENOENT') throw new C2Error('NOT_FOUND', `no C2 database at ${file}: run \`init\` first`);
      throw new C2Error('IO', `cannot read ${file}: ${e.message}`);
    }
    const SQL = await loadSql();
    let db;
    let keys;
    let image;
    let trailer;
    try {
      if (bytes.length < TRAILER_LEN + 512 || !bytes.subarray(bytes.length - TRAILER_LEN, bytes.length - 32).equals(TRAILER_MAGIC)) {
        throw new Error('trailer');
      }
      image = new Uint8Array(bytes.subarray(0, bytes.length - TRAILER_LEN));
      trailer = bytes.subarray(bytes.length - 32);
      db = new SQL.Database(image);
      const format = metaGet(db, 'format');
      if (!(format instanceof Uint8Array) || Buffer.from(format).toString() !== FORMAT) throw new Error('format');
      const salt = metaGet(db, 'salt');
      const kdfRaw = metaGet(db, 'kdf');
      const verifier = metaGet(db, 'verifier');
      if (!(salt instanceof Uint8Array) || !(kdfRaw instanceof Uint8Array) || !(verifier instanceof Uint8Array)) throw new Error('meta');
      const kdfText = Buffer.from(kdfRaw).toString();
      const kdfObj = JSON.parse(kdfText);
      if (kdfObj.alg !== 'argon2id' || kdfObj.v !== 19) throw new Error('kdf');
      const kdf = checkKdf(kdfObj);
      keys = deriveKeys(passphrase, salt, kdf);
      const want = verifierOf(keys, salt, kdfText);
      if (verifier.length !== want.length || !timingSafeEqual(Buffer.from(verifier), want)) {
        throw new C2Error('WRONG_PASSPHRASE', 'wrong passphrase for this C2 database, or its key-derivation parameters were altered (nothing was changed)');
      }
    } catch (e) {
      if (db) db.close();
      if (e instanceof C2Error && e.code !== 'USAGE') throw e;
      throw new C2Error('INTEGRITY', `${file} is not a valid C2 database (corrupt or modified; nothing was changed)`);
    }
    if (!timingSafeEqual(trailer, fileMac(keys.mac, image))) {
      db.close();
      throw new C2Error(
        'INTEGRITY',
        `the C2 database ${file} failed its integrity check: it was modified outside the C2 or is corrupt (nothing was changed)`,
      );
    }
    let lockFile = null;
    if (!readOnly) {
      lockFile = file + '.lock';
      try {
        acquireLock(lockFile);
      } catch (e) {
        db.close();
        throw e;
      }
      heldLocks.add(lockFile);
    }
    return new Store(SQL, db, file, keys, image, readOnly, lockFile);
  }

  // ---- rows ----
  all(sql, params = []) {
    const st = this.db.prepare(sql);
    try {
      st.bind(params);
      const out = [];
      while (st.step()) out.push(st.getAsObject());
      return out;
    } finally {
      st.free();
    }
  }

  get(sql, params = []) {
    return this.all(sql, params)[0];
  }

  run(sql, params = []) {
    this.db.run(sql, params);
    this.dirty = true;
  }

  /** Runs fn inside BEGIN/COMMIT and writes the file; any error rolls everything back. */
  transaction(fn) {
    this.assertWritable();
    this.db.run('BEGIN');
    let result;
    try {
      result = fn();
      this.db.run('COMMIT');
    } catch (e) {
      try {
        this.db.run('ROLLBACK');
      } catch {
        /* already rolled back */
      }
      this.dirty = false;
      throw e;
    }
    if (this.deferWrites) this.dirty = true;
    else this.persist();
    return result;
  }

  assertWritable() {
    if (this.closed) throw new C2Error('USAGE', 'the C2 database is closed');
    if (this.readOnly) throw new C2Error('USAGE', 'the C2 database was opened read-only');
  }

  // ---- sealing ----
  seal(aad, plain) {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.keys.seal, iv);
    c.setAAD(Buffer.from(aad));
    const ct = Buffer.concat([c.update(plain), c.final()]);
    return new Uint8Array(Buffer.concat([Buffer.from([1]), iv, ct, c.getAuthTag()]));
  }

  unseal(aad, sealed) {
    try {
      if (!(sealed instanceof Uint8Array) || sealed.length !== 1 + 12 + 32 + 16 || sealed[0] !== 1) throw new Error('shape');
      const b = Buffer.from(sealed);
      const d = createDecipheriv('aes-256-gcm', this.keys.seal, b.subarray(1, 13));
      d.setAAD(Buffer.from(aad));
      d.setAuthTag(b.subarray(13 + 32));
      return new Uint8Array(Buffer.concat([d.update(b.subarray(13, 13 + 32)), d.final()]));
    } catch {
      throw new C2Error('INTEGRITY', `a sealed key (${aad.split('|').slice(1, 3).join(' ')}) failed authentication: the database was modified`);
    }
  }

  // ---- writing ----
  revision() {
    const v = metaGet(this.db, 'revision');
    return v ? Number(Buffer.from(v).toString()) : 0;
  }

  /** MAC, export, atomic replace. On failure the in-memory state goes back to the last file. */
  persist() {
    this.assertWritable();
    try {
      const rev = this.revision() + 1;
      this.db.run(`INSERT OR REPLACE INTO meta (k, v) VALUES ('revision', ?)`, [enc.encode(String(rev))]);
      const bytes = this.db.export();
      this.pragmas(); // export() reopens the database, which resets connection pragmas
      atomicWrite(this.file, Buffer.concat([bytes, TRAILER_MAGIC, fileMac(this.keys.mac, bytes)]));
      this.lastBytes = bytes;
      this.dirty = false;
    } catch (e) {
      this.reload();
      throw e instanceof C2Error ? e : new C2Error('IO', `could not write ${this.file}: ${e.message}`, { cause: e });
    }
  }

  /** Back to the content of the last successful write (or the file as opened). */
  reload() {
    try {
      this.db.close();
    } catch {
      /* already closed */
    }
    this.db = this.lastBytes ? new this.SQL.Database(this.lastBytes) : new this.SQL.Database();
    this.pragmas();
    this.dirty = false;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    try {
      this.db.close();
    } finally {
      for (const k of Object.values(this.keys)) k.fill(0);
      if (this.lockFile) {
        fs.rmSync(this.lockFile, { force: true });
        heldLocks.delete(this.lockFile);
      }
    }
  }
}
