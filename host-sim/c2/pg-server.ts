/**
 * A throwaway PostgreSQL server for the C2's tests and benchmarks: `initdb` in a temporary
 * folder, listening only on a unix socket in that folder (no TCP port), trust authentication,
 * removed by `stop()`. Uses Debian's `postgresql` binaries (/usr/lib/postgresql/N/bin) or those
 * on the PATH. PostgreSQL refuses to run as root: as root, the server runs as the `postgres`
 * user (created by the Debian package) through `runuser`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import pg from 'pg';

/** The folder holding initdb and pg_ctl, or null. */
export function postgresBin(): string | null {
  const debian = '/usr/lib/postgresql';
  if (fs.existsSync(debian)) {
    const versions = fs
      .readdirSync(debian)
      .filter((v) => /^\d+$/.test(v) && fs.existsSync(path.join(debian, v, 'bin', 'pg_ctl')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions.length) return path.join(debian, versions[0], 'bin');
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && fs.existsSync(path.join(dir, 'pg_ctl')) && fs.existsSync(path.join(dir, 'initdb'))) return dir;
  }
  return null;
}

/** Why a throwaway server cannot start here, or null when it can. */
export function postgresAbsentReason(): string | null {
  if (!postgresBin()) return 'PostgreSQL is not installed (Debian package "postgresql": initdb and pg_ctl)';
  if (process.getuid?.() === 0 && spawnSync('id', ['-u', 'postgres']).status !== 0)
    return 'running as root, and there is no "postgres" user to run the server as';
  return null;
}

export interface PgServer {
  /** The socket folder. */
  readonly dir: string;
  /** A postgres:// URL for a database on this server. */
  url(database: string): string;
  /** Creates an empty database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
}

function run(cmd: string, args: string[], asUser: string | null): void {
  const full = asUser ? (['runuser', ['-u', asUser, '--', cmd, ...args]] as const) : ([cmd, args] as const);
  const r = spawnSync(full[0], full[1], { encoding: 'utf8', timeout: 120000 });
  if (r.status !== 0)
    throw new Error(
      `${path.basename(cmd)} failed (${r.status ?? r.signal}): ${(r.stderr || r.stdout || String(r.error ?? '')).trim().slice(0, 800)}`,
    );
}

export async function startPostgres(): Promise<PgServer> {
  const reason = postgresAbsentReason();
  const bin = postgresBin();
  if (reason || !bin) throw new Error(reason ?? 'PostgreSQL is not installed');
  const asUser = process.getuid?.() === 0 ? 'postgres' : null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4-pg-'));
  if (asUser) {
    const uid = Number(spawnSync('id', ['-u', asUser], { encoding: 'utf8' }).stdout.trim());
    const gid = Number(spawnSync('id', ['-g', asUser], { encoding: 'utf8' }).stdout.trim());
    fs.chownSync(dir, uid, gid);
  }
  const data = path.join(dir, 'data');
  const pgCtl = path.join(bin, 'pg_ctl');
  let started = false;
  const stop = async () => {
    if (started) {
      try {
        run(pgCtl, ['-D', data, '-m', 'immediate', '-w', 'stop'], asUser);
      } catch {
        /* already gone */
      }
      started = false;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    run(path.join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C'], asUser);
    // Unix socket only, in our folder; small and fast (fsync off: nothing here outlives the run).
    const opts = `-c listen_addresses='' -c unix_socket_directories='${dir}' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50`;
    run(pgCtl, ['-D', data, '-l', path.join(dir, 'log'), '-o', opts, '-w', '-t', '60', 'start'], asUser);
    started = true;
  } catch (e) {
    await stop();
    throw e;
  }
  const url = (database: string) => `postgres://postgres@localhost/${database}?host=${encodeURIComponent(dir)}`;
  return {
    dir,
    url,
    async createDatabase(name) {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain database name: ${name}`);
      const client = new pg.Client({ connectionString: url('postgres') });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    stop,
  };
}
