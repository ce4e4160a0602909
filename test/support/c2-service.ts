/**
 * A real `e4-c2 serve` for the tests: a temporary database made with the command line, an API
 * token, the service started as a child process on a loopback port, and small clients for its
 * JSON API and its server-sent event stream.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { TS_NODE } from '../../host-sim/shared/cli.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = path.join(ROOT, 'host-sim/c2/cli.ts');
export const PASS = 'correct horse battery staple';

export interface CliResult {
  code: number | null;
  out: string;
  err: string;
}

export interface C2Dir {
  dir: string;
  db: string;
  passFile: string;
  /** --db and --passphrase-file */
  base: string[];
  cli(args: string[], env?: Record<string, string>): CliResult;
  cliAsync(args: string[], env?: Record<string, string>): Promise<CliResult>;
  remove(): void;
}

const CLEAN_ENV = { E4_C2_PASSPHRASE: '', E4_C2_BROKER: '', E4_C2_DB: '', E4_C2_SERVER: '', E4_C2_TOKEN: '' };

/** A fresh folder with an initialised database (Argon2id at test strength): a SQLite file in the
 * folder, or the PostgreSQL database `db` names (a postgres:// URL). */
export function c2Dir(db?: string): C2Dir {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4-c2-serve-'));
  db ??= path.join(dir, 'c2.db');
  const passFile = path.join(dir, 'pass');
  fs.writeFileSync(passFile, PASS + '\n', { mode: 0o600 });
  const base = ['--db', db, '--passphrase-file', passFile];
  const cli = (args: string[], env: Record<string, string> = {}): CliResult => {
    const r = spawnSync(process.execPath, [...TS_NODE, CLI, ...args], {
      cwd: dir,
      env: { ...process.env, ...CLEAN_ENV, ...env },
      encoding: 'utf8',
      timeout: 60000,
    });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  const cliAsync = (args: string[], env: Record<string, string> = {}) =>
    new Promise<CliResult>((resolve) => {
      const p = spawn(process.execPath, [...TS_NODE, CLI, ...args], { cwd: dir, env: { ...process.env, ...CLEAN_ENV, ...env } });
      let out = '';
      let err = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (err += d.toString()));
      p.on('close', (code) => resolve({ code, out, err }));
    });
  const r = cli(['init', ...base, '--kdf-time', '1', '--kdf-memory', '64']);
  if (r.code !== 0) throw new Error('init failed: ' + r.err);
  return { dir, db, passFile, base, cli, cliAsync, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Creates a token with the command line and returns it (and writes it to a file for --token-file). */
export function makeToken(c2: C2Dir, name: string): { token: string; file: string } {
  const r = c2.cli(['token', 'create', name, ...c2.base, '--json']);
  if (r.code !== 0) throw new Error('token create failed: ' + r.err);
  const token = (JSON.parse(r.out) as { token: string }).token;
  const file = path.join(c2.dir, `${name}.token`);
  fs.writeFileSync(file, token + '\n', { mode: 0o600 });
  return { token, file };
}

export interface Served {
  url: string;
  child: ChildProcess;
  stderr: () => string;
  stop(): Promise<number | null>;
}

/** Starts `e4-c2 serve` on an ephemeral loopback port; resolves once it listens. */
export function serve(c2: C2Dir, extra: string[] = []): Promise<Served> {
  const child = spawn(process.execPath, [...TS_NODE, CLI, 'serve', ...c2.base, '--listen', '127.0.0.1:0', ...extra], {
    cwd: c2.dir,
    env: { ...process.env, ...CLEAN_ENV },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('serve did not start in 30 s: ' + err)), 30000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({
          url: m[1]!,
          child,
          stderr: () => err,
          stop: () =>
            new Promise((done) => {
              if (child.exitCode !== null) return done(child.exitCode);
              child.once('exit', (code) => done(code));
              child.kill('SIGTERM');
              setTimeout(() => child.exitCode === null && child.kill('SIGKILL'), 10000).unref();
            }),
        });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code}: ${err}`));
    });
  });
}

export interface ApiAnswer {
  status: number;
  body: Record<string, unknown>;
}

/** One call: `body` as given (a string is sent as it is, an object as JSON). */
export async function call(url: string, token: string | null, method: string, name: string, body?: unknown): Promise<ApiAnswer> {
  const headers: Record<string, string> = {};
  if (token !== null) headers['authorization'] = `Bearer ${token}`;
  const res = await fetch(`${url}/api/${name}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

export interface StreamedEvent {
  id: string;
  kind: string;
  device: string | null;
  topic: string | null;
  detail: Record<string, unknown>;
}

/** Follows GET /api/events; `until(pred)` resolves with the first event matching it. */
export function followEvents(url: string, token: string, query = '') {
  const events: StreamedEvent[] = [];
  const waiters: { pred: (e: StreamedEvent) => boolean; resolve: (e: StreamedEvent) => void }[] = [];
  const controller = new AbortController();
  let endedByServer = false;
  const ready = (async () => {
    const res = await fetch(`${url}/api/events${query}`, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal });
    if (!res.ok || !res.body) throw new Error('event stream: HTTP ' + res.status);
    return { res, reader: res.body.pipeThrough(new TextDecoderStream()).getReader() };
  })();
  const pump = ready.then(async ({ reader }) => {
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          endedByServer = true;
          return;
        }
        buf += value;
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const data = frame
            .split('\n')
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('\n');
          if (!data) continue;
          const e = JSON.parse(data) as StreamedEvent;
          events.push(e);
          for (const w of [...waiters]) {
            if (w.pred(e)) {
              waiters.splice(waiters.indexOf(w), 1);
              w.resolve(e);
            }
          }
        }
      }
    } catch {
      // aborted
    }
  });
  return {
    events,
    ready,
    /** True once the service ended the stream (not our close()). */
    endedByServer: () => endedByServer,
    until(pred: (e: StreamedEvent) => boolean, ms = 15000): Promise<StreamedEvent> {
      const found = events.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no matching event within ${ms} ms; got ${events.map((e) => e.kind).join(', ')}`)),
          ms,
        );
        waiters.push({ pred, resolve: (e) => (clearTimeout(timer), resolve(e)) });
      });
    },
    async close() {
      controller.abort();
      await pump;
    },
  };
}

/** Every row of every table of a SQLite C2 database, as comparable text, read beside a running
 * service (WAL: committed changes are in the -wal file until a checkpoint, not in the file). */
export function dumpDb(db: string): Record<string, string[]> {
  const conn = new Database(db, { readonly: true, fileMustExist: true });
  try {
    const out: Record<string, string[]> = {};
    const tables = conn.prepare<[], { name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).all();
    for (const { name } of tables) {
      const rows = conn.prepare<[], Record<string, unknown>>(`SELECT * FROM "${name}"`).all();
      out[name] = rows
        .map((r) => JSON.stringify(Object.entries(r).map(([k, v]) => [k, v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v])))
        .sort();
    }
    return out;
  } finally {
    conn.close();
  }
}
