#!/usr/bin/env node
/**
 * `node host-sim/tools/linux-board.ts --engine espruino32-2630 [--flash-dir DIR] [--broker aedes|mosquitto] -- COMMAND...`
 *
 * Runs the Linux build of Espruino as a board, for the flash and hil tools: the interpreter
 * serves its console with `--telnet` on TCP port 2323 of every interface, so it is started in a
 * private network namespace of its own (`unshare -n`, only loopback up there), one at a time, and
 * COMMAND runs in the same namespace against `tcp://127.0.0.1:2323` (given to it in
 * $E4_BOARD_PORT). The board's flash (`espruino.flash`) lives in --flash-dir (default: a temporary
 * folder, removed afterwards). --broker starts an MQTT broker in the same namespace, on
 * 127.0.0.1:1883 (the project's aedes, or Debian's mosquitto), for boards that speak MQTT and the
 * host tools that talk to them ($E4_BROKER_URL). Exits with COMMAND's status; 2 on a usage error, 3 when the
 * interpreter or the namespace cannot be had (the message says why).
 *
 * Needs `unshare` and `ip` (util-linux, iproute2) and the right to make a network namespace (root,
 * or unprivileged user namespaces: then `unshare -rn`).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { resolve, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ENGINES, engineIfPresent, absentReason } from './engines.ts';
import { TS_NODE, packageVersion, useCallerFolder } from '../shared/cli.ts';
import { BROKER_KINDS, startBroker } from '../services/broker.ts';
import type { RunningBroker } from '../services/broker.ts';

export const TELNET_PORT = 2323;
export const BROKER_PORT = 1883;
const USAGE = `usage: node host-sim/tools/linux-board.ts --engine NAME [--flash-dir DIR] [--broker KIND] -- COMMAND...
  NAME  ${Object.keys(ENGINES)
    .filter((n) => ENGINES[n].kind === 'espruino')
    .join(', ')}
  KIND  ${BROKER_KINDS.join(', ')}: an MQTT broker on 127.0.0.1:${BROKER_PORT} beside the board ($E4_BROKER_URL)`;
const INSIDE = 'E4_LINUX_BOARD_NETNS';

function fail(code: number, message: string): never {
  process.stderr.write(`linux-board: ${message}\n`);
  process.exit(code);
}

/** The command line: which Espruino build, where its flash lives, and the command to run. */
interface LinuxBoardArgs {
  engine: string;
  flashDir: string | null;
  broker: string | null;
  command: string[];
}

function parse(argv: string[]): LinuxBoardArgs {
  const o: { engine: string | null; flashDir: string | null; broker: string | null; command: string[] } = {
    engine: null,
    flashDir: null,
    broker: null,
    command: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      o.command = argv.slice(i + 1);
      break;
    }
    if (a === '--help' || a === '-h') {
      console.log(USAGE);
      process.exit(0);
    }
    if (a === '--version') {
      console.log(packageVersion());
      process.exit(0);
    }
    if (a === '--engine' || a === '--flash-dir' || a === '--broker') {
      if (argv[i + 1] === undefined) fail(2, `${a} needs a value (${USAGE.split('\n')[0]})`);
      if (a === '--engine') o.engine = argv[++i];
      else if (a === '--broker') o.broker = argv[++i];
      else o.flashDir = resolve(argv[++i]);
      continue;
    }
    fail(2, `unexpected argument ${a} (--help for usage)`);
  }
  const engine = o.engine;
  if (!engine) fail(2, '--engine is required (--help for usage)');
  if (!ENGINES[engine] || ENGINES[engine].kind !== 'espruino') fail(2, `--engine ${engine} is not an Espruino build (--help for usage)`);
  if (o.broker !== null && !BROKER_KINDS.includes(o.broker))
    fail(2, `--broker ${o.broker}: expected ${BROKER_KINDS.join(' or ')} (--help for usage)`);
  if (!o.command.length) fail(2, 'no command given after -- (--help for usage)');
  return { ...o, engine };
}

/** Resolves when something accepts TCP connections on the port, rejects after `ms`. */
function waitForPort(port: number, ms: number): Promise<void> {
  const until = Date.now() + ms;
  return new Promise<void>((resolvePromise, reject) => {
    const attempt = () => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolvePromise();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > until) reject(new Error(`nothing listens on port ${port} after ${ms} ms`));
        else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

async function inside(o: LinuxBoardArgs) {
  const ip = spawnSync('ip', ['link', 'set', 'lo', 'up'], { encoding: 'utf8' });
  if (ip.status !== 0)
    fail(3, `cannot bring up loopback in the private namespace: ${(ip.stderr || ip.error || '').toString().trim()} (install iproute2)`);
  const binary = engineIfPresent(o.engine);
  if (!binary) fail(3, absentReason(o.engine));
  const dir = o.flashDir || mkdtempSync(join(tmpdir(), 'e4-linux-board-'));
  // stdin stays open: at its end the interpreter keeps interrupting what the console runs.
  const board = spawn(binary, ['--telnet'], { cwd: dir, stdio: ['pipe', 'ignore', 'pipe'] });
  let boardErr = '';
  board.stderr.on('data', (d) => (boardErr += d));
  let exited: number | NodeJS.Signals | null = null;
  board.on('exit', (code, signal) => (exited = signal || code));
  const stop = () => {
    // Espruino ignores SIGTERM.
    if (exited === null) board.kill('SIGKILL');
    if (!o.flashDir) rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForPort(TELNET_PORT, 15000);
  } catch (e) {
    stop();
    fail(
      3,
      `${o.engine} did not serve its console: ${e instanceof Error ? e.message : String(e)}${exited !== null ? ` (it exited: ${exited})` : ''} ${boardErr.trim().slice(-300)}`,
    );
  }
  let broker: RunningBroker | null = null;
  if (o.broker) {
    try {
      broker = await startBroker({ kind: o.broker, host: '127.0.0.1', port: BROKER_PORT });
    } catch (e) {
      stop();
      fail(3, `no ${o.broker} broker: ${(e as Error).message}`);
    }
  }
  const env: NodeJS.ProcessEnv = { ...process.env, E4_BOARD_PORT: `tcp://127.0.0.1:${TELNET_PORT}` };
  if (broker) env.E4_BROKER_URL = broker.url;
  // Its own process group: what it leaves running in the background ends with it.
  const cmd = spawn(o.command[0], o.command.slice(1), { stdio: 'inherit', env, detached: true });
  const code = await new Promise<number>((r) => cmd.on('exit', (c, s) => r(c === null ? 128 + (s === 'SIGKILL' ? 9 : 15) : c)));
  try {
    if (cmd.pid !== undefined) process.kill(-cmd.pid, 'SIGKILL');
  } catch {
    // nothing left in the group
  }
  stop();
  if (broker) await broker.close();
  process.exit(code);
}

function main() {
  // Under `npm run linux-board` the command and --flash-dir are the caller's (INIT_CWD).
  if (!process.env[INSIDE]) useCallerFolder('linux-board');
  const o = parse(process.argv.slice(2));
  if (process.env[INSIDE]) return inside(o);
  const self = fileURLToPath(import.meta.url);
  const args = ['-n', process.execPath, ...TS_NODE, self, ...process.argv.slice(2)];
  const env = { ...process.env, [INSIDE]: '1' };
  // Root makes the namespace directly; anyone else through a user namespace (if the kernel allows).
  const r = spawnSync('unshare', process.getuid && process.getuid() === 0 ? args : ['-r', ...args], { stdio: 'inherit', env });
  if (r.error) fail(3, `cannot run unshare: ${r.error.message} (install util-linux)`);
  process.exit(r.status === null ? 1 : r.status);
}

main();
