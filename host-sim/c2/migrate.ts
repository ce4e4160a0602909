/**
 * `e4-c2 migrate`: converts a database of the first C2 (format e4-c2/1: a SQLite image written
 * whole by sql.js, followed by `E4C2MAC1` and an HMAC-SHA256 of the image) into a new database
 * (e4-c2/2, SQLite file or PostgreSQL). The old file is checked exactly as the old C2 checked it
 * (passphrase verifier, then the MAC over every byte) and never written to; every row is copied,
 * every key unsealed with the old sealing key and sealed again under the new one.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHmac, timingSafeEqual } from 'node:crypto';
import Database from 'better-sqlite3';
import { C2Error, deriveKeys, Store, unsealWith } from './store.ts';
import type { KdfParams, Passphrase, Row } from './store.ts';
import { TABLES } from './schema.ts';
import type { Table, TableRows } from './schema.ts';

const OLD_FORMAT = 'e4-c2/1';
const TRAILER_MAGIC = Buffer.from('E4C2MAC1');
const TRAILER_LEN = TRAILER_MAGIC.length + 32;

export interface MigrationResult {
  from: string;
  to: string;
  rows: { [T in Table]: number };
}

function invalid(file: string): C2Error {
  return new C2Error('INTEGRITY', `${file} is not a valid e4-c2/1 database (corrupt or modified; nothing was changed)`);
}

/** Rows of an old table, each column checked against the new schema's types. */
function oldRows<T extends Table>(db: Database.Database, table: T): TableRows[T][] {
  const spec = TABLES[table];
  const rows = db.prepare<[], Row>(`SELECT ${spec.columns.map((c) => c.name).join(', ')} FROM ${table}`).all();
  return rows.map((r) => {
    const out: Row = {};
    for (const c of spec.columns) out[c.name] = r[c.name] ?? null;
    return out as unknown as TableRows[T]; // the old file passed its MAC: its rows are the old C2's own
  });
}

export async function migrateV1({ from, to, passphrase }: { from: string; to: string; passphrase: Passphrase }): Promise<MigrationResult> {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(from);
  } catch (e) {
    throw new C2Error('NOT_FOUND', `cannot read ${from}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (bytes.length < TRAILER_LEN + 512 || !bytes.subarray(bytes.length - TRAILER_LEN, bytes.length - 32).equals(TRAILER_MAGIC))
    throw invalid(from);
  const image = bytes.subarray(0, bytes.length - TRAILER_LEN);
  const trailer = bytes.subarray(bytes.length - 32);
  // better-sqlite3 opens files: give it a private copy of the image (the original stays untouched).
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'e4-c2-migrate-'));
  const copy = path.join(tmp, 'old.db');
  fs.writeFileSync(copy, image, { mode: 0o600 });
  let db: Database.Database | null = null;
  try {
    try {
      db = new Database(copy, { readonly: true, fileMustExist: true });
    } catch {
      throw invalid(from);
    }
    const meta = new Map<string, Buffer>();
    try {
      for (const r of db.prepare<[], Row>('SELECT k, v FROM meta').all())
        if (typeof r.k === 'string' && r.v instanceof Uint8Array) meta.set(r.k, Buffer.from(r.v));
    } catch {
      throw invalid(from);
    }
    if (meta.get('format')?.toString() !== OLD_FORMAT) throw invalid(from);
    const salt = meta.get('salt');
    const kdfText = meta.get('kdf')?.toString() ?? '';
    const verifier = meta.get('verifier');
    let kdf: KdfParams;
    try {
      const o: unknown = JSON.parse(kdfText);
      if (!o || typeof o !== 'object' || !('t' in o) || !('m' in o) || !('p' in o)) throw new Error('kdf');
      const { t, m, p } = o;
      if (typeof t !== 'number' || typeof m !== 'number' || typeof p !== 'number') throw new Error('kdf');
      kdf = { t, m, p };
    } catch {
      throw invalid(from);
    }
    if (!salt || !verifier) throw invalid(from);
    const keys = deriveKeys(passphrase, salt, kdf, 'e4-c2 v1 ');
    try {
      const want = createHmac('sha256', keys.verify)
        .update(`e4-c2 passphrase verifier|${OLD_FORMAT}|`)
        .update(salt)
        .update('|' + kdfText)
        .digest();
      if (verifier.length !== want.length || !timingSafeEqual(verifier, want)) {
        throw new C2Error('WRONG_PASSPHRASE', `wrong passphrase for ${from} (nothing was changed)`);
      }
      const mac = createHmac('sha256', keys.mac).update(`e4-c2 file mac|${OLD_FORMAT}|`).update(image).digest();
      if (!timingSafeEqual(trailer, mac))
        throw new C2Error(
          'INTEGRITY',
          `${from} failed its integrity check: it was modified outside the C2 or is corrupt (nothing was changed)`,
        );
      const rows = {
        devices: oldRows(db, 'devices'),
        device_keys: oldRows(db, 'device_keys'),
        topics: oldRows(db, 'topics'),
        topic_keys: oldRows(db, 'topic_keys'),
        grants: oldRows(db, 'grants'),
        commands: oldRows(db, 'commands'),
      };
      const store = await Store.create(to, passphrase, kdf);
      let copied = false;
      try {
        await store.transaction(async () => {
          await store.write('devices', rows.devices);
          await store.write('topics', rows.topics);
          await store.write(
            'device_keys',
            rows.device_keys.map((k) => {
              const aad = `e4-c2/v1|device-key|${k.device}|${k.gen}`;
              const plain = unsealWith(keys.seal, aad, k.sealed);
              const sealed = store.seal(aad, plain);
              plain.fill(0);
              return { ...k, sealed };
            }),
          );
          await store.write(
            'topic_keys',
            rows.topic_keys.map((k) => {
              const aad = `e4-c2/v1|topic-key|${k.topic}|${k.gen}`;
              const plain = unsealWith(keys.seal, aad, k.sealed);
              const sealed = store.seal(aad, plain);
              plain.fill(0);
              return { ...k, sealed };
            }),
          );
          await store.write('grants', rows.grants);
          await store.write('commands', rows.commands);
        });
        copied = true;
      } finally {
        await store.close();
        // A SQLite file made for this copy goes again if the copy failed (a PostgreSQL database
        // keeps its empty tables: drop them, or migrate into another database).
        if (!copied && store.dialect === 'sqlite') for (const f of [to, to + '-wal', to + '-shm']) fs.rmSync(f, { force: true });
      }
      return {
        from,
        to: store.where,
        rows: {
          devices: rows.devices.length,
          device_keys: rows.device_keys.length,
          topics: rows.topics.length,
          topic_keys: rows.topic_keys.length,
          grants: rows.grants.length,
          commands: rows.commands.length,
        },
      };
    } finally {
      for (const k of Object.values(keys)) k.fill(0);
    }
  } finally {
    db?.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
