/**
 * MQTT brokers for the simulator and the tests, always on loopback and an ephemeral port:
 * - aedes (embedded, in this process, the default),
 * - Debian's mosquitto (a child process with a generated config),
 * - an external broker given by URL (nothing started).
 *
 *   const b = await startBroker({ kind: 'aedes' });   // { url, kind, close() }
 *
 * As a command: `node host-sim/services/broker.ts [--kind aedes|mosquitto] [--port N]` runs one until
 * killed and prints `listening mqtt://127.0.0.1:PORT` (the fleet benchmark runs the broker in its
 * own process this way).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Aedes } from 'aedes';
import { TS_NODE, runIfMain, stopOnSignal } from '../shared/cli.ts';

export const MOSQUITTO = process.env.MOSQUITTO || '/usr/sbin/mosquitto';
export const BROKER_KINDS = ['aedes', 'mosquitto'];

/** What startBroker() and startBrokerProcess() return: where the broker listens, and how to stop it. */
export interface RunningBroker {
  kind: 'aedes' | 'mosquitto' | 'external';
  url: string;
  host?: string;
  port?: number;
  close(): Promise<void>;
}

/** The embedded aedes broker, in this process. */
export interface AedesBroker extends RunningBroker {
  kind: 'aedes';
  host: string;
  port: number;
  broker: Aedes;
  /** Clients connected now. */
  clients(): number;
}

/** Debian's mosquitto, a child process. */
export interface MosquittoBroker extends RunningBroker {
  kind: 'mosquitto';
  host: string;
  port: number;
  pid: number | undefined;
  /** The last of what it wrote to stderr. */
  stderr(): string;
}

/** A broker of the caller's (nothing started, nothing to stop). */
export interface ExternalBroker extends RunningBroker {
  kind: 'external';
  host: string;
  port: number;
}

/** A broker in a child process of its own. */
export interface BrokerProcess extends RunningBroker {
  pid: number | undefined;
}

export interface BrokerUrl {
  host: string;
  port: number;
  /** The URL normalised: mqtt://host:port. */
  url: string;
}

interface ListenOptions {
  host: string;
  port: number;
  verbose?: boolean;
}

export interface StartBrokerOptions {
  /** 'aedes' (default), 'mosquitto' or 'external' (needs `url`); checked when the broker starts. */
  kind?: string;
  /** An external broker; alone it means kind 'external'. */
  url?: string;
  host?: string;
  /** 0 (default): an ephemeral port. */
  port?: number;
  /** mosquitto logs everything to its stderr. */
  verbose?: boolean;
}

/** True when mosquitto can be started here. */
export function haveMosquitto(): boolean {
  return existsSync(MOSQUITTO);
}

/** Checks a broker URL: mqtt://host:port (tcp). Throws a clear error otherwise. */
export function parseBrokerUrl(url: string): BrokerUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`bad broker URL "${url}": expected mqtt://host:port`);
  }
  if (u.protocol !== 'mqtt:' && u.protocol !== 'tcp:') throw new Error(`bad broker URL "${url}": only mqtt:// (plain TCP) is supported`);
  if (!u.hostname) throw new Error(`bad broker URL "${url}": no host`);
  const port = u.port ? Number(u.port) : 1883;
  return { host: u.hostname, port, url: `mqtt://${u.hostname.includes(':') ? `[${u.hostname}]` : u.hostname}:${port}` };
}

export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as AddressInfo; // a TCP listener: never a pipe name
      s.close(() => resolve(port));
    });
  });
}

export function waitForPort(host: string, port: number, ms: number, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child && child.exitCode !== null) return reject(new Error(`broker exited with code ${child.exitCode}`));
      const sock = net.connect(port, host);
      sock.once('connect', () => {
        sock.destroy();
        resolve();
      });
      sock.once('error', () => {
        sock.destroy();
        if (Date.now() > deadline) reject(new Error(`broker did not listen on ${host}:${port} within ${ms} ms`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

async function startAedes({ host, port }: ListenOptions): Promise<AedesBroker> {
  const { Aedes } = await import('aedes');
  const broker = await Aedes.createBroker({ drainTimeout: 30000, concurrency: 1000, queueLimit: 1000 });
  const server = net.createServer(broker.handle);
  const sockets = new Set<net.Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    kind: 'aedes',
    url: `mqtt://${host}:${actual}`,
    host,
    port: actual,
    broker,
    clients: () => broker.connectedClients,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => broker.close(() => resolve()));
      }),
  };
}

async function startMosquitto({ host, port, verbose }: ListenOptions): Promise<MosquittoBroker> {
  if (!haveMosquitto()) throw new Error(`mosquitto not found at ${MOSQUITTO} (Debian package "mosquitto"; or set MOSQUITTO)`);
  let lastErr: Error | null = null;
  for (let attempt = 0; attempt < 5; attempt++) {
    const p = port || (await freePort(host));
    const dir = mkdtempSync(join(tmpdir(), 'e4-mosquitto-'));
    const conf = join(dir, 'mosquitto.conf');
    writeFileSync(
      conf,
      [
        `listener ${p} ${host}`,
        'allow_anonymous true',
        'persistence false',
        'max_queued_messages 10000',
        'max_inflight_messages 100',
        'set_tcp_nodelay true',
        'log_dest stderr',
        verbose ? 'log_type all' : 'log_type error',
        '',
      ].join('\n'),
    );
    const child = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
      if (stderr.length > 20000) stderr = stderr.slice(-10000);
    });
    try {
      await waitForPort(host, p, 10000, child);
    } catch (e) {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      lastErr = new Error(`mosquitto failed to start on ${host}:${p}: ${(e as Error).message}\n${stderr.trim()}`);
      if (port) break;
      continue;
    }
    return {
      kind: 'mosquitto',
      url: `mqtt://${host}:${p}`,
      host,
      port: p,
      pid: child.pid,
      stderr: () => stderr,
      close: () =>
        new Promise<void>((resolve) => {
          const done = () => {
            rmSync(dir, { recursive: true, force: true });
            resolve();
          };
          if (child.exitCode !== null) return done();
          child.once('exit', done);
          child.kill('SIGTERM');
          setTimeout(() => child.exitCode === null && child.kill('SIGKILL'), 3000).unref();
        }),
    };
  }
  throw lastErr;
}

/**
 * Starts (or names) a broker. `kind`: 'aedes' (default) | 'mosquitto' | 'external' (needs `url`).
 * A `url` alone means external. Returns { kind, url, close() }.
 */
export async function startBroker({ kind, url, host = '127.0.0.1', port = 0, verbose = false }: StartBrokerOptions = {}): Promise<
  AedesBroker | MosquittoBroker | ExternalBroker
> {
  if (url && (!kind || kind === 'external')) {
    const u = parseBrokerUrl(url);
    await waitForPort(u.host, u.port, 5000).catch(() => {
      throw new Error(`no MQTT broker answers at ${u.url}`);
    });
    return { kind: 'external', url: u.url, host: u.host, port: u.port, close: async () => {} };
  }
  kind = kind || 'aedes';
  if (kind === 'aedes') return startAedes({ host, port });
  if (kind === 'mosquitto') return startMosquitto({ host, port, verbose });
  throw new Error(`unknown broker kind "${kind}" (${BROKER_KINDS.join(', ')}, or a URL)`);
}

/**
 * Starts a broker in a child process (`node host-sim/services/broker.ts`) so that its sockets and CPU
 * are not the caller's: used by the fleet benchmark. Returns { kind, url, pid, close() }.
 */
export async function startBrokerProcess({ kind = 'aedes' }: { kind?: string } = {}): Promise<MosquittoBroker | BrokerProcess> {
  if (kind === 'mosquitto') return startMosquitto({ host: '127.0.0.1', port: 0 });
  const child = spawn(process.execPath, [...TS_NODE, new URL(import.meta.url).pathname, '--kind', kind], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('broker process did not start in 10 s')), 10000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening (mqtt:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`broker process exited with code ${code}`));
    });
  });
  return {
    kind: 'aedes', // what the child runs: startBroker refuses any other kind but mosquitto, started above
    url,
    pid: child.pid,
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

async function main(argv: string[]): Promise<void> {
  let kind = 'aedes';
  let port = 0;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--kind' && argv[i + 1]) kind = argv[++i];
    else if (argv[i] === '--port' && /^\d+$/.test(argv[i + 1] || '')) port = Number(argv[++i]);
    else {
      process.stderr.write(`usage: node host-sim/services/broker.ts [--kind aedes|mosquitto] [--port N]\n`);
      process.exit(2);
    }
  }
  const b = await startBroker({ kind, port });
  process.stdout.write(`listening ${b.url}\n`);
  stopOnSignal(() => b.close());
}

runIfMain(import.meta.url, 'broker', main);
