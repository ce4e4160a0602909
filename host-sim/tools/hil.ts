#!/usr/bin/env node
/**
 * `npm run hil -- --board <board> --port <serial | BLE address | tcp://host:port>`
 *
 * Hardware in the loop: flashes the board image with a fresh test identity (random keys, four
 * topics, no transport), then over the board's console:
 *  1. boot: the image started from flash and opened its store; runtime memory (process.memory()
 *     with and without the runtime) after boot and after a 64-byte protect/unprotect, and its
 *     peaks during a 256-byte protect + unprotect and during each kind of C2 command (sampled in
 *     hooks on AES, Storage, Flash and CRC-32: memoryScript below; npm run size runs the same);
 *  2. a subset of the conformance vectors (test/vectors/e4-sk-vectors.json), run on the
 *     board in small batches (aes_siv, protect, unprotect, commands) against the board's vault;
 *  3. store survives reset: a C2 command (SetTopicKey) applied, the board reloaded (load()),
 *     then a message the board protects on that topic must open with the new key on the host,
 *     and a replay of the command must be rejected;
 *  4. timing: protect + unprotect of 64 bytes on the board.
 * Prints `hil: N passed, M failed`; exit status 0 only when nothing failed. Without --port it
 * explains how to attach a board and exits 2.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { aessiv } from '@noble/ciphers/aes.js';
import { flash } from './flash.ts';
import { parseArgs, portKind, ROOT, runEspruino } from './espruino-cli.ts';
import type { EspruinoResult, EspruinoRun, ParsedArgs } from './espruino-cli.ts';
import { isSkVectors } from './conformance.ts';
import type { AesSivVector, CommandVector, ProtectVector, SkVectors, UnprotectVector, VectorTopic } from './conformance.ts';
import type { DeviceFile } from '../../boards/espruino/boot.ts';
import { ESPRUINO_BOARDS, sha3_16, tagged } from '../shared/flash-files.ts';
import { answerHelpOrVersion, runIfMain, UsageError } from '../shared/cli.ts';
import { runExample } from './hil-example.ts';

export const USAGE = `usage: npm run hil -- --board <board> --port <port> [options]

  --board      ${ESPRUINO_BOARDS.join(' | ')}
  --port, -p   the board's connection:
                 a serial device        --port /dev/ttyACM0 (Linux), /dev/tty.usbmodem* (macOS), COM3
                 Bluetooth LE address   --port aa:bb:cc:dd:ee:ff (needs the 'noble' BLE stack;
                                        find it with: npx espruino --list)
                 an Espruino console over TCP, e.g. the Linux build of Espruino:
                   mkdir /tmp/esp && cd /tmp/esp && sleep 3600 | espruino --telnet
                   --port tcp://127.0.0.1:2323
  --baud, -b   serial speed (default the espruino tool's, 9600)
  --cases      number of vector cases to run on the board (default 24)
  --batch      bytes of case data per upload (default 1200; 500 on espruino-nrf52, whose
               portable AES leaves ~650 of a 2,630-variable board's variables free)
  --max-bytes  largest vector payload run on the board (default 256; 1024 on ESP32)
  --no-flash   the board already holds the image and the HIL identity of an earlier run
               (read from --state)
  --state      folder for the run's state (the test identity, kept for --no-flash reruns;
               default: e4-hil in the system's temporary folder)
  --timeout    seconds per espruino tool run (default 300)
  --example    NAME of examples/: flash it as the board's application with a throwaway
               identity and check, through a broker, that its readings arrive protected and
               decrypt, and that it receives a message protected for it (instead of the tests
               above; host-sim/tools/hil-example.ts)
  --broker     with --example: the MQTT broker URL (default: aedes started on loopback; an
               ESP32 on Wi-Fi needs one it can reach, and E4_WIFI_SSID / E4_WIFI_PASSWORD)
  --verbose    show the espruino tool's output
  --version    the package's version

The board's Storage is rewritten (image, configuration, store): do not run this on a
provisioned device.`;

const ARGS = {
  example: 'string',
  broker: 'string',
  board: 'string',
  port: 'string',
  baud: 'number',
  cases: 'number',
  batch: 'number',
  'max-bytes': 'number',
  'no-flash': 'boolean',
  state: 'string',
  timeout: 'number',
  verbose: 'boolean',
  help: 'boolean',
  version: 'boolean',
} as const;

/** The options of a run, as on the command line. */
export type HilOptions = ParsedArgs<typeof ARGS>;

/** The throwaway identity a run flashes: every topic has its name, hash and key. */
export interface HilDevice extends DeviceFile {
  name: string;
  id: string;
  key: string;
  topics: { topic: string; hash: string; key: string }[];
}

/** Memory figures of the run (Espruino variables), or null when the board sent none. */
export interface HilMemory {
  boot: number;
  after: number;
  peak256: number;
  peakCommands: Record<string, number>;
  peak: number;
  base: number;
  total: number;
  blocksize?: number;
}

/** What a run found: counts, the failed checks, and the figures measured. */
export interface HilResult {
  passed: number;
  failed: number;
  failures: string[];
  memory: HilMemory | null;
  /** Milliseconds per operation (64-byte payload, mean of 10). */
  timing: { protect: number; unprotect: number } | null;
}

/** Case data per upload where the board's free RAM is smaller than the default needs (measured
 * on the 2,630-variable Linux Espruino: 1,200 bytes runs it out of memory, 500 passes). */
const DEFAULT_BATCH: Record<string, number> = { 'espruino-nrf52': 500 };

/** Where a run keeps the identity it flashed (never inside the source tree). */
export function stateFile(opts: HilOptions): string {
  return join(opts.state ? resolve(opts.state) : join(tmpdir(), 'e4-hil'), `${opts.board}.device.json`);
}

const hexOf = (b: Uint8Array) => Buffer.from(b).toString('hex');
const unhex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));

/** The E4 protected message: timestamp (8, LE) | AES-SIV(key|key, AD = timestamp, payload). */
export function protect(key: string, ts: number, payload: Uint8Array): Uint8Array {
  const t = Buffer.alloc(8);
  t.writeBigUInt64LE(BigInt(ts));
  const k = unhex(key);
  const sealed = aessiv(Uint8Array.from([...k, ...k]), t).encrypt(payload);
  return Uint8Array.from([...t, ...sealed]);
}

export function open(key: string, message: Uint8Array): Uint8Array | null {
  const k = unhex(key);
  try {
    return aessiv(Uint8Array.from([...k, ...k]), message.subarray(0, 8)).decrypt(message.subarray(8));
  } catch {
    return null;
  }
}

/** A throwaway identity for the test: random keys, four topics with host-computed hashes. */
export function hilDevice(board: string): HilDevice {
  const key = () => randomBytes(32).toString('hex');
  const name = `hil-${board}-${randomBytes(4).toString('hex')}`;
  const topics = ['hil/t1', 'hil/t2', 'hil/t3', 'hil/t4'].map((topic) => ({ topic, hash: sha3_16(topic), key: key() }));
  const dev: HilDevice = { format: 'e4-device', version: 1, name, id: sha3_16(name), key: key(), topics, clock: 'monotonic', log: 'warn' };
  // nRF52 images get their link transport (it waits for a gateway), so the memory figures
  // include the runtime a deployed board has. The ESP32 would need Wi-Fi: none there.
  if (board !== 'espruino-esp32') dev.transport = { link: { kind: 'ble-uart' } };
  return dev;
}

/** On-board helpers (ES5): hex in and out, the result name of a call. */
const HELPERS = `
function H(s){var b=new Uint8Array(s.length/2);for(var i=0;i<b.length;i++)b[i]=parseInt(s.substr(2*i,2),16);return b;}
function X(b){var s="";for(var i=0;i<b.length;i++)s+=(b[i]<16?"0":"")+b[i].toString(16);return s;}
function R(f){try{var p=f();return p===null?"E4_RESULT_OK_CONTROL":"E4_RESULT_OK:"+X(p);}catch(e){return e&&e.result?e.result:"JS "+e;}}
`;

/** The vector harness: the board's own runtime is stopped first (on a Puck.js there is no room
 * for a second client next to it), then each case gets a client on a fixed clock. */
const HARNESS = `E4.stop();${HELPERS}
function T(n,g,e){HQ.push(n+" "+(g===e?"pass":"fail got="+g+" expected="+e));}
function C(r,now,topics){var c={t:now},k={},i;for(i=0;i<topics.length;i++)k[topics[i].topic]=1;for(i=0;i<NAMES.length;i++)if(!k[NAMES[i].topic])topics.push(NAMES[i]);return {k:c,c:E4.create({vault:E4.vault(),clock:{kind:"trusted",now:function(){return c.t;}}},{id:r.id,key:r.key,topics:topics},{})};}
function S(c){var s=c.snapshot(),o=[];for(var i=0;i<s.topics.length;i++)o.push(X(s.topics[i].hash)+":"+X(s.topics[i].key));return X(s.key)+"/"+o.join(",");}
`;

/** Bytes a case moves (plaintext or message). */
const caseBytes = (c: { plaintext?: string; protected?: string }) => (c.plaintext || c.protected || '').length / 2;

/** A vector the board runs, by the section it comes from. */
export type HilCase =
  | { kind: 'aes_siv'; name: string; c: AesSivVector }
  | { kind: 'protect'; name: string; c: ProtectVector }
  | { kind: 'unprotect'; name: string; c: UnprotectVector }
  | { kind: 'commands'; name: string; c: CommandVector };

/** The case subset: a spread over each section (first, edges, last), of cases whose payload fits
 * the board (a 1000-byte message does not fit beside the runtime in a Puck.js's RAM). */
export function pickCases(V: SkVectors, n: number, maxBytes = Infinity): HilCase[] {
  const fits = <T extends { plaintext?: string; protected?: string }>(list: T[]) => list.filter((c) => caseBytes(c) <= maxBytes);
  const take = <T extends { plaintext?: string; protected?: string }>(all: T[] | undefined, k: number): T[] => {
    const list = fits(all ?? []);
    if (list.length <= k) return list;
    const out: T[] = [];
    for (let i = 0; i < k; i++) out.push(list[Math.floor((i * list.length) / k)]);
    return out;
  };
  const per = Math.max(1, Math.floor(n / 4));
  const cases: HilCase[] = [];
  take(V.aes_siv, per).forEach((c, i) => cases.push({ kind: 'aes_siv', name: `aes_siv#${i}`, c }));
  take(V.protect, per).forEach((c, i) => cases.push({ kind: 'protect', name: `protect#${i}`, c }));
  take(V.unprotect, per).forEach((c) => cases.push({ kind: 'unprotect', name: c.case, c }));
  take(V.commands, n - 3 * per).forEach((c) => cases.push({ kind: 'commands', name: c.case, c }));
  return cases;
}

/** One case as on-board code (the expected outcome travels with it; the board prints pass/fail). */
export function caseCode(hc: HilCase): string {
  const n = JSON.stringify(hc.name);
  if (hc.kind === 'aes_siv') {
    const c = hc.c;
    return `(function(){var v=E4.vault();T(${n}+" seal",X(v.sivEncrypt(H("${c.key}"),H("${c.ad}"),H("${c.plaintext}"))),"${c.output}");var p=v.sivDecrypt(H("${c.key}"),H("${c.ad}"),H("${c.output}"));T(${n}+" open",p?X(p):"null","${c.plaintext}");})();`;
  }
  if (hc.kind === 'protect') {
    const c = hc.c;
    const hash = sha3_16(c.topic);
    return `(function(){var x=C({id:"${'00'.repeat(16)}",key:"${'11'.repeat(32)}"},${c.timestamp},[{topic:${JSON.stringify(c.topic)},hash:"${hash}",key:"${c.topic_key}"}]).c;T(${n},X(x.protect(${JSON.stringify(c.topic)},H("${c.plaintext}"))),"${c.protected}");})();`;
  }
  if (hc.kind === 'unprotect') {
    const c = hc.c;
    const r = c.receiver;
    const topics = r.topics.map((t) => ({ topic: t.topic, hash: t.topic_hash, key: t.key }));
    const exp = c.expected_result === 'E4_RESULT_OK' ? `E4_RESULT_OK:${c.expected_plaintext}` : c.expected_result;
    return `(function(){var x=C({id:"${r.client_id}",key:"${r.client_key}"},${c.now},${JSON.stringify(topics)}).c;T(${n},R(function(){return x.unprotect(${JSON.stringify(c.topic)},H("${c.protected}"),${c.options});}),"${exp}");})();`;
  }
  const c = hc.c;
  const topics = c.state_before.topics.map((t) => ({ topic: t.topic, hash: t.topic_hash, key: t.key }));
  const after = c.state_after.client_key + '/' + c.state_after.topics.map((t) => `${t.topic_hash}:${t.key}`).join(',');
  return `(function(){var x=C({id:"${c.client_id}",key:"${c.state_before.client_key}"},${c.now},${JSON.stringify(topics)}).c;T(${n},R(function(){return x.unprotect(${JSON.stringify(c.delivered_on_topic)},H("${c.protected}"),${c.options});}),"${c.expected_result}");T(${n}+" state",S(x),"${after}");})();`;
}

/** Topic names of the cases with their hashes: boards without SHA-3 learn them as key-less topic entries. */
function namesOf(cases: HilCase[]) {
  const names = new Set<string>();
  for (const { c } of cases) {
    if ('topic' in c && c.topic) names.add(c.topic);
    if ('delivered_on_topic' in c && c.delivered_on_topic) names.add(c.delivered_on_topic);
    const held: VectorTopic[] =
      ('receiver' in c && c.receiver && c.receiver.topics) || ('state_before' in c && c.state_before && c.state_before.topics) || [];
    for (const t of held) if (t.topic) names.add(t.topic);
  }
  return [...names].map((topic) => ({ topic, hash: sha3_16(topic) }));
}

/** The memory run (step 1): on-board script, the C2 commands it applies and their new keys. */
export function memoryScript(dev: HilDevice) {
  const now = Math.floor(Date.now() / 1000);
  const cmdKeys = { t1: randomBytes(32).toString('hex'), t5: randomBytes(32).toString('hex'), id: randomBytes(32).toString('hex') };
  const t5 = sha3_16('hil/t5');
  // Each command: its name, the key it is protected with, its plaintext.
  const steps: [string, string, number[]][] = [
    ['SetTopicKey (new topic)', dev.key, [3, ...unhex(cmdKeys.t5), ...unhex(t5)]],
    ['SetTopicKey (rotation)', dev.key, [3, ...unhex(cmdKeys.t1), ...unhex(dev.topics[0].hash)]],
    ['RemoveTopic', dev.key, [0, ...unhex(t5)]],
    ['SetIdKey', dev.key, [2, ...unhex(cmdKeys.id)]],
    ['ResetTopics', cmdKeys.id, [1]],
    ...dev.topics.map((t, i): [string, string, number[]] => [
      'SetTopicKey (new topic)',
      cmdKeys.id,
      [3, ...unhex(i === 0 ? cmdKeys.t1 : t.key), ...unhex(t.hash)],
    ]),
  ];
  const commands = steps.map(([name, key, cmd], i) => ({ name, msg: hexOf(protect(key, now - 60 + i, Uint8Array.from(cmd))) }));
  // One function run from a timer (the console tool may hang up before a long script's last
  // lines reach the board), written to Storage and evaluated from there, as an image is: its
  // code stays in flash (npm run size runs the same script the same way).
  const memScript = `${HELPERS}var HM="",s,c,m,k,M={u1:0,u2:0,u3:0,h0:0,h1:0,call:0,p256:0,max:0,c:[${commands.map(() => 0).join(',')}],r:[${commands.map(() => 0).join(',')}],g:[],e:[],i:0,st:null};
function MZ(){
function MS(){var u=process.memory().usage;if(u>M.max)M.max=u;}
function MW(o,k){var f=o[k];return function(a,b,c,d){MS();return f.call(o,a,b,c,d);};}
function MC1(i){M.max=0;MS();k=R(function(){return c.unprotect(c.controlTopic,m);});MS();if(k!=="E4_RESULT_OK_CONTROL")M.e.push(i+" "+k);else M.r[i]=1;M.c[i]=M.max;m=undefined;}
s=E4.status();M.st={ok:s.ok,error:s.error,ctl:s.controlTopic,topics:s.topics};s=undefined;
c=E4.client();M.u1=process.memory().usage;
m=c.protect("hil/t1","0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
c.unprotect("hil/t1",m);m=undefined;c=undefined;
M.u2=process.memory().usage;
M.h0=process.memory().usage;
var MR=require,MX={crypto:{AES:{encrypt:MW(MR("crypto").AES,"encrypt")}},Storage:{},Flash:{}};
["read","readArrayBuffer","readJSON","write","erase","compact"].forEach(function(k){MX.Storage[k]=MW(MR("Storage"),k);});
["read","write","erasePage"].forEach(function(k){MX.Flash[k]=MW(MR("Flash"),k);});
global.require=function(n){return MX[n]||MR(n);};
var MC=E.CRC32;E.CRC32=function(a){MS();return MC(a);};
M.h1=process.memory().usage;
E4.stop();E4.start();
c=E4.client();M.max=0;MS();
m=c.protect("hil/t1",(function(){for(var p="",j=0;j<256;j++)p+=String.fromCharCode(32+j%90);return p;})());MS();
c.unprotect("hil/t1",m);MS();m=undefined;M.p256=M.max;
${commands.map((x, i) => `m=H("${x.msg}");MC1(${i});`).join('\n')}
m=undefined;c=undefined;
for(k in global)if(k.substr(0,2)==="E4")M.g.push(k);
M.g.forEach(function(k){delete global[k];});M.g=k=undefined;
E.removeAllListeners("init");E.removeAllListeners("kill");clearInterval();clearTimeout();
M.u3=process.memory().usage;M.max=0;MX.Storage.read("e4-none");M.call=M.max-M.u3;var mm=process.memory();
HM=JSON.stringify({status:M.st,boot:M.u1-(M.u3-(M.h1-M.h0)),after:M.u2-(M.u3-(M.h1-M.h0)),peak256:M.p256-M.u3-M.call,commands:M.c.map(function(v){return v-M.u3-M.call;}),results:M.r,errors:M.e,base:M.u3-(M.h1-M.h0),total:mm.total,blocksize:mm.blocksize});
print("E4HIL mem "+HM);
MR("Storage").erase("e4hil.js");
}
setTimeout(MZ,10);
`;
  return { script: memScript, commands, cmdKeys };
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The identity an earlier run kept in its state file. */
function isHilDevice(v: unknown): v is HilDevice {
  return (
    isRecord(v) &&
    typeof v.id === 'string' &&
    typeof v.key === 'string' &&
    Array.isArray(v.topics) &&
    v.topics.every((t) => isRecord(t) && typeof t.hash === 'string' && typeof t.key === 'string')
  );
}

/** The memory run's report (`E4HIL mem`, printed by memoryScript's on-board code). */
export interface MemReport {
  status?: { ok: boolean; error?: string; ctl: string; topics: number } | null;
  boot: number;
  after: number;
  peak256: number;
  commands: number[];
  results: number[];
  errors: string[];
  base: number;
  total: number;
  /** Bytes per variable (absent on builds whose process.memory() does not say). */
  blocksize?: number;
}

export function isMemReport(v: unknown): v is MemReport {
  const numbers = (x: unknown) => Array.isArray(x) && x.every((n) => typeof n === 'number');
  return (
    isRecord(v) &&
    ['boot', 'after', 'peak256', 'base', 'total'].every((k) => typeof v[k] === 'number') &&
    numbers(v.commands) &&
    numbers(v.results) &&
    Array.isArray(v.errors) &&
    (v.status === undefined || v.status === null || isRecord(v.status))
  );
}

/** Results of one run: counts pass/fail lines and keeps failures for the report. */
export class Tally {
  passed: number;
  failed: number;
  failures: string[];
  log: (m: string) => void;
  constructor(log: (m: string) => void) {
    this.passed = 0;
    this.failed = 0;
    this.failures = [];
    this.log = log;
  }
  check(name: string, ok: boolean, detail = '') {
    if (ok) this.passed++;
    else {
      this.failed++;
      this.failures.push(`${name}${detail ? ': ' + detail : ''}`);
    }
    this.log(`hil: ${ok ? 'pass' : 'FAIL'} ${name}${detail && (!ok || detail.startsWith('(')) ? ' ' + detail : ''}`);
  }
}

export async function hil(opts: HilOptions, log = (m: string) => console.log(m)): Promise<HilResult> {
  const board = opts.board;
  if (!board) throw new UsageError('--board is required');
  if (!ESPRUINO_BOARDS.includes(board))
    throw new UsageError(`--board ${JSON.stringify(board)}: expected one of ${ESPRUINO_BOARDS.join(', ')}`);
  const port = opts.port;
  portKind(port);
  if (port === undefined) throw new UsageError('--port is required'); // portKind() checked it already
  if (opts.example) {
    const t = new Tally(log);
    await runExample(opts, t, { protect, open }, log);
    return { passed: t.passed, failed: t.failed, failures: t.failures, memory: null, timing: null };
  }
  if (opts.broker) throw new UsageError('--broker goes with --example');
  const timeoutMs = (opts.timeout || 300) * 1000;
  // A failed run (timeout, lost connection) fails the checks that needed it, not the whole run.
  const run = (o: Omit<EspruinoRun, 'port'>): Promise<Pick<EspruinoResult, 'lines' | 'code'>> =>
    runEspruino({ port, baud: opts.baud, timeoutMs, verbose: !!opts.verbose, ...o }).catch((e: Error) => {
      log(`hil: ${e.message}`);
      return { lines: [`E4HIL error ${e.message}`], code: -1 };
    });
  /** Polls a batch started from a timer until it ends. A query runs only when the board is idle,
   * so an answer from a started batch that has not ended means it died (e.g. out of memory). */
  const collect = async (started: { lines: string[] }): Promise<{ done: boolean; lines: string[]; why?: string }> => {
    const lines: string[] = [];
    const until = Date.now() + timeoutMs;
    let last = started;
    while (Date.now() < until) {
      const q = await run({ script: 'print("E4HIL q "+JSON.stringify({b:HB,l:HQ.splice(0,HQ.length)}));\n', reset: false });
      const a = tagged(q.lines, 'E4HIL q').find((t) => t.startsWith('{'));
      if (a) {
        const answer: unknown = JSON.parse(a);
        const b = isRecord(answer) ? answer.b : undefined;
        if (isRecord(answer) && Array.isArray(answer.l)) lines.push(...answer.l.map(String));
        if (b === 2) return { done: true, lines };
        if (b === 1)
          return {
            done: false,
            lines,
            why:
              [...last.lines, ...q.lines]
                .filter((x) => /error|Error|ERROR|MEMORY/.test(x))
                .slice(0, 3)
                .join(' | ') || 'it stopped before its end',
          };
      } else if (q.code === -1) return { done: false, lines, why: q.lines.join(' | ') };
      last = q;
      await new Promise((r) => setTimeout(r, 500));
    }
    return { done: false, lines, why: 'no answer before the time limit' };
  };
  const tally = new Tally(log);
  const result: Pick<HilResult, 'memory' | 'timing'> = { memory: null, timing: null };

  // --- flash --------------------------------------------------------------------------------
  let dev: HilDevice;
  if (!opts['no-flash']) {
    dev = hilDevice(board);
    const file = stateFile(opts);
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    // The test identity holds keys: readable by this user only.
    writeFileSync(file, JSON.stringify(dev), { mode: 0o600 });
    try {
      const f = await flash({ board, port, device: file, timeout: opts.timeout, verbose: opts.verbose, baud: opts.baud }, log);
      tally.check('flash (image, configuration, boot file verified by CRC-32)', true, `(${f.free} bytes of Storage free)`);
    } catch (e) {
      tally.check('flash', false, e instanceof Error ? e.message : String(e));
      return { ...tally, ...result };
    }
  } else {
    try {
      const saved: unknown = JSON.parse(readFileSync(stateFile(opts), 'utf8'));
      if (!isHilDevice(saved)) throw new Error('not a HIL identity');
      dev = saved;
    } catch {
      throw new UsageError(`--no-flash needs ${stateFile(opts)} from an earlier run (see --state)`);
    }
  }

  // --- 1. boot and memory --------------------------------------------------------------------
  // The tool's reset() runs the boot files again (the image starts from flash); the runtime's
  // share is what is freed when it is dropped (E4 and, for images run at global scope, every
  // global named E4…). The status object read first is the tool's, not the runtime's: it is
  // dropped before the first reading. The peaks are sampled inside hooks that the runtime is
  // restarted through (E4.stop(), E4.start(), so that the runtime picks up the hooked
  // require("crypto"), require("Storage"), require("Flash") and E.CRC32): every native AES call,
  // Storage and Flash call and CRC-32, plus before and after each operation. The hooks' own
  // variables and those of one hooked call at rest are subtracted; each command travels on its
  // own console line (only the one being run is in RAM). Sampling sees what is live at those points (the operation's buffers are, as the
  // AES and store calls take them), not every transient between them. The C2 commands (each kind, timestamps a minute
  // in the past) leave the state as it was, except a new client key and a rotated hil/t1 key.
  const { script: memScript, commands, cmdKeys } = memoryScript(dev);
  const memRes = await run({
    script: `require("Storage").write("e4hil.js",${JSON.stringify(memScript)});eval(require("Storage").read("e4hil.js"));\n`,
  });
  let memLine = tagged(memRes.lines, 'E4HIL mem').find((l) => l.startsWith('{'));
  const memUntil = Date.now() + timeoutMs;
  while (!memLine && Date.now() < memUntil) {
    const q = await run({ script: 'print("E4HIL mem "+HM);\n', reset: false });
    memLine = tagged(q.lines, 'E4HIL mem').find((l) => l.startsWith('{'));
    if (!memLine && q.code === -1) break;
    if (!memLine) await new Promise((r) => setTimeout(r, 2000));
  }
  const report: unknown = memLine ? JSON.parse(memLine) : null;
  const mem = isMemReport(report) ? report : null;
  const boot = mem && mem.status;
  tally.check(
    'boot from flash, store opened, 4 topics',
    !!boot && boot.ok && boot.topics === 4 && boot.ctl === `e4/${dev.id}`,
    boot ? JSON.stringify(boot) : 'no boot report',
  );
  if (mem) {
    const peaks: Record<string, number> = {};
    commands.forEach((cmd, i) => (peaks[cmd.name] = Math.max(peaks[cmd.name] || 0, mem.commands[i])));
    result.memory = {
      boot: mem.boot,
      after: mem.after,
      peak256: mem.peak256,
      peakCommands: peaks,
      peak: Math.max(mem.peak256, ...mem.commands),
      base: mem.base,
      total: mem.total,
      blocksize: mem.blocksize,
    };
    log(
      `hil: memory: runtime ${mem.boot} vars after boot with 4 topics, ${mem.after} after a 64-byte protect/unprotect (interpreter alone ${mem.base} of ${mem.total} vars, ${mem.blocksize} bytes each)`,
    );
    log(
      `hil: memory: peak ${mem.peak256} vars during a 256-byte protect + unprotect; during C2 commands: ${Object.entries(peaks)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
    tally.check(
      'C2 commands of every kind applied (memory run)',
      mem.results.every((r) => r === 1),
      mem.errors.join(' | '),
    );
    dev.key = cmdKeys.id;
    dev.topics[0].key = cmdKeys.t1;
    // The memory run rotated the client key and hil/t1's key: the state file follows.
    writeFileSync(stateFile(opts), JSON.stringify(dev), { mode: 0o600 });
  }
  tally.check('memory report', !!mem);

  // --- 2. conformance vectors ------------------------------------------------------------------
  const V: unknown = JSON.parse(readFileSync(join(ROOT, 'test', 'vectors', 'e4-sk-vectors.json'), 'utf8'));
  if (!isSkVectors(V)) throw new Error('test/vectors/e4-sk-vectors.json: not the e4-sk-test-vectors schema');
  const cases = pickCases(V, opts.cases || 24, opts['max-bytes'] || (opts.board === 'espruino-esp32' ? 1024 : 256));
  const batch = opts.batch || DEFAULT_BATCH[opts.board] || 1200;
  let expected = 0;
  const seen = [];
  for (let i = 0; i < cases.length;) {
    let code = '';
    const inBatch = [];
    while (i < cases.length && (inBatch.length === 0 || code.length + caseCode(cases[i]).length < batch)) {
      code += caseCode(cases[i]) + '\n';
      inBatch.push(cases[i]);
      expected += cases[i].kind === 'aes_siv' || cases[i].kind === 'commands' ? 2 : 1;
      i++;
    }
    const namesCode = `var NAMES=${JSON.stringify(namesOf(inBatch))};`;
    // The batch runs from a timer and its results are collected by later queries: a slow board
    // (pure-JS AES, a loaded host) can stay silent longer than the espruino tool waits.
    const res = await run({ script: `var HQ=[],HB=0;${namesCode}${HARNESS}setTimeout(function(){HB=1;${code}HB=2;},50);\n` });
    const batchResult = await collect(res);
    seen.push(...batchResult.lines);
    if (!batchResult.done) tally.check(`vector batch ending at case ${i}`, false, 'the board did not finish the batch: ' + batchResult.why);
  }
  for (const line of seen) {
    const m = /^(.*) (pass|fail.*)$/.exec(line);
    if (m) tally.check(`vector ${m[1]}`, m[2] === 'pass', m[2] === 'pass' ? '' : m[2]);
  }
  tally.check(`all ${expected} vector checks reported`, seen.length === expected, `${seen.length} reported`);

  // --- 3. store survives reset -------------------------------------------------------------
  const newKey = randomBytes(32).toString('hex');
  const t2 = dev.topics[1];
  const ts = Math.floor(Date.now() / 1000);
  const cmd = Uint8Array.from([3, ...unhex(newKey), ...unhex(t2.hash)]);
  const cmdMsg = hexOf(protect(dev.key, ts, cmd));
  const applyRes = await run({
    script: `${HELPERS}var c=E4.client();print("E4HIL apply "+R(function(){return c.unprotect(c.controlTopic,H("${cmdMsg}"));}));print("E4HIL reload");load();\n`,
  });
  const applied = tagged(applyRes.lines, 'E4HIL apply')[0];
  tally.check('C2 SetTopicKey applied and stored', applied === 'E4_RESULT_OK_CONTROL', applied || 'no answer');
  // load() restarts the interpreter from flash; the next run (after the tool's reset(), which
  // boots the image once more) talks to a runtime that knows only what the store kept.
  const afterRes = await run({
    script: `${HELPERS}var c=E4.client();print("E4HIL after "+X(c.protect("hil/t2","survived reset")));print("E4HIL replay "+R(function(){return c.unprotect(c.controlTopic,H("${cmdMsg}"));}));print("E4HIL time "+JSON.stringify(c.time()));\n`,
  });
  const after = tagged(afterRes.lines, 'E4HIL after')[0];
  const opened = after ? open(newKey, unhex(after)) : null;
  tally.check(
    'store survives reset: the rotated key is in use after reload',
    !!opened && Buffer.from(opened).toString() === 'survived reset',
    after ? '' : 'no answer',
  );
  const replay = tagged(afterRes.lines, 'E4HIL replay')[0];
  tally.check('store survives reset: a replay of the command is rejected', replay === 'E4_ERROR_MESSAGE_REPLAYED', replay || 'no answer');

  // --- 4. timing -------------------------------------------------------------------------------
  // Runs from a timer and is collected by a later query: pure-JS AES on a small board can keep the
  // console quiet longer than the espruino tool waits before it exits.
  await run({
    // Distinct messages: the client rejects an exact duplicate (MESSAGE_REPLAYED).
    script: `var HT="";setTimeout(function(){var c=E4.client();var N=10,p="0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",m=[];var t0=getTime();for(var i=0;i<N;i++)m.push(c.protect("hil/t3",p+i));var t1=getTime();for(i=0;i<N;i++)c.unprotect("hil/t3",m[i],1);var t2=getTime();HT=JSON.stringify({protect:(t1-t0)*1000/N,unprotect:(t2-t1)*1000/N});},100);\n`,
  });
  let timing: string | undefined;
  const until = Date.now() + timeoutMs;
  while (!timing && Date.now() < until) {
    const q = await run({ script: 'print("E4HIL timing "+HT);\n', reset: false });
    timing = tagged(q.lines, 'E4HIL timing').find((t) => t.startsWith('{'));
    if (!timing && q.code === -1) break;
    if (!timing) await new Promise((r) => setTimeout(r, 2000));
  }
  const times: unknown = timing ? JSON.parse(timing) : null;
  if (isRecord(times) && typeof times.protect === 'number' && typeof times.unprotect === 'number') {
    result.timing = { protect: times.protect, unprotect: times.unprotect };
    log(`hil: timing: protect ${times.protect.toFixed(2)} ms, unprotect ${times.unprotect.toFixed(2)} ms (64-byte payload, mean of 10)`);
  }
  tally.check('protect/unprotect timing', !!result.timing);
  return { passed: tally.passed, failed: tally.failed, failures: tally.failures, ...result };
}

async function main(argv: string[]) {
  let opts: HilOptions;
  try {
    // -p and -b as the espruino tool spells them.
    const answered = answerHelpOrVersion(argv, USAGE);
    if (answered !== null) return answered;
    opts = parseArgs(argv, ARGS, { p: 'port', b: 'baud' });
    if (!opts.port) {
      // Not a typo but a first run: say how to attach a board.
      console.error('hil: no board attached: give --port.\n\n' + USAGE);
      return 2;
    }
    const r = await hil(opts);
    console.log(`hil: ${r.passed} passed, ${r.failed} failed`);
    return r.failed ? 1 : 0;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`hil: ${e.message} (see npm run hil -- --help)`);
      return 2;
    }
    console.error(`hil: ${e instanceof Error ? e.message : String(e)}`);
    console.log('hil: 0 passed, 1 failed');
    return 1;
  }
}

runIfMain(import.meta.url, 'hil', main);
