/**
 * Run inside host-sim/tools/linux-board.ts (the board's console at $E4_BOARD_PORT): flashes
 * identity A, then uploads identity B through a TCP relay that cuts the connection after N bytes
 * from the host, for every N in CUTS (fractions of the upload, and bytes around the switch line);
 * after each cut the board is restarted (load()) and must boot with A's identity and keys, or, for
 * a cut after the switch line, with B's. A last upload through the relay runs to the end: B.
 * Prints one `CUT <n> <bytes> <outcome> <identity>` line per cut and `RESULT ok|fail`.
 */
import { boardPort, relay, RELAY_PORT } from './cut-relay.ts';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { flash, checkBoot } from '../../host-sim/tools/flash.ts';
import { hilDevice, protect as hostProtect, open } from '../../host-sim/tools/hil.ts';
import { runEspruino } from '../../host-sim/tools/espruino-cli.ts';
import { tagged } from '../../host-sim/shared/flash-files.ts';
import type { BootStatus } from '../../host-sim/tools/flash.ts';

type Identity = 'A' | 'B';
const IDENTITIES: Identity[] = ['A', 'B'];
const board = process.argv[2] || 'espruino-puckjs';
const port = boardPort();
const dir = mkdtempSync(join(tmpdir(), 'e4-cut-'));
const ids = { A: hilDevice(board), B: hilDevice(board) };
const files = { A: join(dir, 'A.json'), B: join(dir, 'B.json') };
for (const k of IDENTITIES) writeFileSync(files[k], JSON.stringify(ids[k]), { mode: 0o600 });
const quiet = () => {};
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Restarts the board and says whose identity and keys it runs with: 'A', 'B' or why neither. */
async function whoBoots(): Promise<string> {
  await runEspruino({ port, script: 'load();\n', reset: false, timeoutMs: 60000 });
  let s: BootStatus;
  try {
    s = await checkBoot({ port });
  } catch (e) {
    return `broken (${message(e)})`;
  }
  const id = IDENTITIES.find((k) => s.controlTopic === `e4/${ids[k].id}`);
  if (!id) return `unknown identity ${s.controlTopic}`;
  // The keys: a message protected on the board opens with the identity's topic key on the host,
  // and the board opens one protected here with it.
  const t = ids[id].topics[0];
  const msg = Buffer.from(hostProtect(t.key, 1, Buffer.from('cut'))).toString('hex');
  const r = await runEspruino({
    port,
    reset: false,
    timeoutMs: 60000,
    script: `function H(s){var b=new Uint8Array(s.length/2);for(var i=0;i<b.length;i++)b[i]=parseInt(s.substr(2*i,2),16);return b;}function X(b){var s="";for(var i=0;i<b.length;i++)s+=(b[i]<16?"0":"")+b[i].toString(16);return s;}
try{var c=E4.client();print("E4CUT "+X(c.protect(${JSON.stringify(t.topic)},"board"))+" "+E.toString(c.unprotect(${JSON.stringify(t.topic)},H("${msg}"))));}catch(e){print("E4CUT error "+(e.result||e));}
`,
  });
  const line = tagged(r.lines, 'E4CUT')[0];
  if (!line) return `${id} (no answer to the key check)`;
  const [hex, text] = line.split(' ');
  const opened = open(t.key, Uint8Array.from(Buffer.from(hex, 'hex')));
  return opened && Buffer.from(opened).toString() === 'board' && text === 'cut' ? id : `${id} without its keys (${line.slice(0, 80)})`;
}

let ok = true;
await flash({ board, port, device: files.A }, quiet);
console.log(`FLASHED A ${await whoBoots()}`);

// One complete upload through the relay, to know its length and where the switch line is.
const probe = await relay(null);
await flash({ board, port: `tcp://127.0.0.1:${RELAY_PORT}`, device: files.A }, quiet);
const stream = probe.sent();
await probe.close();
const total = stream.length;
const switchAt = stream.indexOf('E4FLASH switched');
const lineStart = stream.lastIndexOf('\n', switchAt) + 1;
// The console runs a line when its first end-of-line byte (\r or \n) arrives.
const ends = ['\r', '\n'].map((c) => stream.indexOf(c, switchAt)).filter((i) => i >= 0);
const lineEnd = Math.min(...ends) + 1;
console.log(`UPLOAD ${total} bytes, switch line at bytes ${lineStart}..${lineEnd}`);
// Identity A again (the probe re-flashed A: the board now starts A from the other slot).
// E4_CUTS=all: more points (twice as long).
const fractions = process.env.E4_CUTS === 'all' ? [0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.97] : [0.5, 0.9];
const cuts = [
  ...new Set([
    1,
    700,
    ...fractions.map((f) => Math.floor(f * lineStart)),
    lineStart - 1,
    lineStart + 40,
    lineEnd - 20,
    lineEnd,
    lineEnd + 20,
    total - 30,
  ]),
].filter((n) => n > 0 && n < total);
let current: Identity = 'A';
for (const n of cuts) {
  const r = await relay(n);
  let outcome = 'completed';
  try {
    await flash({ board, port: `tcp://127.0.0.1:${RELAY_PORT}`, device: files[current === 'A' ? 'B' : 'A'], timeout: 60 }, quiet);
  } catch (e) {
    outcome = `failed: ${message(e).replace(/\s+/g, ' ').slice(0, 120)}`;
  }
  await r.close();
  const target: Identity = current === 'A' ? 'B' : 'A';
  const got = await whoBoots();
  // Up to the switch line's end: the old identity. Once the upload's end came through: the new
  // one. Between, either, but whole: the probe's stream is not byte for byte this one (CRCs
  // printed in decimal differ in length), and the console drops input that arrives together with
  // the connection's close (seen: a cut 20 bytes after the line left the old identity).
  const expect = n <= lineEnd - 16 ? current : n >= total - 100 ? target : 'A|B';
  const pass = expect === 'A|B' ? got === 'A' || got === 'B' : got === expect;
  if (!pass) ok = false;
  console.log(`CUT ${n}/${total} ${pass ? 'pass' : 'FAIL'} boots ${got} (expected ${expect}); flash ${outcome}`);
  current = got === 'A' || got === 'B' ? got : current;
}
const last = await relay(null);
const target: Identity = current === 'A' ? 'B' : 'A';
await flash({ board, port: `tcp://127.0.0.1:${RELAY_PORT}`, device: files[target] }, quiet);
await last.close();
const final = await whoBoots();
if (final !== target) ok = false;
console.log(`COMPLETE ${final === target ? 'pass' : 'FAIL'} boots ${final} (expected ${target})`);
// --keep-state on a board whose e4.json is damaged: the image is written, the runtime cannot
// start, and flash says so (non-zero) instead of reporting success.
await runEspruino({ port, script: 'require("Storage").write("e4.json","{damaged");\n', reset: false, timeoutMs: 60000 });
let keep;
try {
  await flash({ board, port, 'keep-state': true }, quiet);
  keep = 'succeeded';
} catch (e) {
  keep = `failed: ${message(e)}`;
}
const keepOk = /runtime started but has no client/.test(keep);
if (!keepOk) ok = false;
console.log(`KEEPSTATE ${keepOk ? 'pass' : 'FAIL'} flash --keep-state on a damaged e4.json ${keep}`);
console.log(`RESULT ${ok ? 'ok' : 'fail'}`);
process.exit(ok ? 0 : 1);
