/**
 * The jerryscript image (dist/boards/jerryscript.min.js) with the JavaScript shim of a C port's
 * native functions (host-sim/jerry-shim.js) under Duktape (`duk`, Debian's duktape package; CI
 * installs it: a missing duk fails this test): provisioning from e4.json, subscriptions, receive,
 * publish, a C2 command, a power cycle on the same storage, a topic met at run time.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { aessiv } from '@noble/ciphers/aes.js';
import { sha3_16 } from '../host-sim/tools/flash.mjs';

const ROOT = join(__dirname, '..');
const unhex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));
const hexOf = (b: Uint8Array) => Buffer.from(b).toString('hex');
const key = (n: number) => n.toString(16).padStart(2, '0').repeat(32);

function protect(k: string, ts: number, payload: Uint8Array | string): string {
  const t = Buffer.alloc(8);
  t.writeBigUInt64LE(BigInt(ts));
  const kk = unhex(k);
  const p = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
  return hexOf(Uint8Array.from([...t, ...aessiv(Uint8Array.from([...kk, ...kk]), t).encrypt(p)]));
}
function open(k: string, hex: string): string | null {
  const m = unhex(hex);
  const kk = unhex(k);
  try {
    return new TextDecoder().decode(aessiv(Uint8Array.from([...kk, ...kk]), m.subarray(0, 8)).decrypt(m.subarray(8)));
  } catch {
    return null;
  }
}

export function findEngine(name: string): string | null {
  for (const d of ['/work/engines/bin', ...(process.env.PATH || '').split(delimiter)]) {
    if (d && existsSync(join(d, name))) return join(d, name);
  }
  return null;
}

const TOPICS = ['health/heart-rate', 'health/spo2', 'health/temp', 'health/steps'];
const CFG = {
  format: 'e4-device',
  version: 1,
  name: 'jerry-1',
  id: sha3_16('jerry-1'),
  key: key(0x11),
  topics: TOPICS.map((topic, i) => ({ topic, hash: sha3_16(topic), key: key(0x21 + i) })),
  clock: 'untrusted',
  log: 'info',
};
const CTL = 'e4/' + sha3_16('jerry-1');

/** The device-side script: shim + image (evaluated twice: a power cycle) + the steps. */
export function jerryScript(imageFile = join(ROOT, 'dist/boards/jerryscript.min.js')): string {
  const image = readFileSync(imageFile, 'latin1');
  const shim = readFileSync(join(ROOT, 'host-sim/jerry-shim.js'), 'utf8');
  const steps = `
function H(s){var b=new Uint8Array(s.length/2);for(var i=0;i<b.length;i++)b[i]=parseInt(s.substr(2*i,2),16);return b;}
function X(b){var s="";for(var i=0;i<b.length;i++)s+=(b[i]<16?"0":"")+b[i].toString(16);return s;}
function S(b){var s="";for(var i=0;i<b.length;i++)s+=String.fromCharCode(b[i]);return s;}
function P(tag,v){print("JT "+tag+" "+v);}
var cfgText=${JSON.stringify(JSON.stringify(CFG))};
e4_storage_write("e4.json",H(X((function(){var b=new Uint8Array(cfgText.length);for(var i=0;i<b.length;i++)b[i]=cfgText.charCodeAt(i);return b;})())),0,cfgText.length);
(0,eval)(IMAGE);
var d=E4.boot();
P("status",JSON.stringify(E4.status()));
P("config",S(new Uint8Array(e4_storage_read("e4.json"))));
var got=[];
d.on("message",function(t,p){got.push(t+"="+S(p));});
d.on("command",function(t){got.push("command "+t);});
d.on("error",function(e,t){got.push("error "+e.result+" "+t);});
E4.up();
P("subscribed",JSON.stringify(E4SHIM.subscribed));
E4.receive("health/spo2",H("${protect(key(0x22), 1000, 'spo2 97%')}"));
E4.receive("health/spo2",H("${protect(key(0x22), 1000, 'spo2 97%')}"));
E4.receive(${JSON.stringify(CTL)},H("${protect(key(0x11), 1001, Uint8Array.from([3, ...unhex(key(0x77)), ...unhex(sha3_16('health/spo2'))]))}"));
E4.receive(${JSON.stringify(CTL)},H("${protect(key(0x11), 1002, Uint8Array.from([3, ...unhex(key(0x66)), ...unhex(sha3_16('runtime/topic'))]))}"));
d.subscribe("runtime/topic");
E4.receive("runtime/topic",H("${protect(key(0x66), 1003, 'late topic')}"));
P("got",JSON.stringify(got));
d.publish("health/spo2","spo2 96%");
P("published",E4SHIM.published[0].topic+" "+X(E4SHIM.published[0].data));
P("stats",JSON.stringify(d.stats));
// Power cycle: RAM gone (a new image instance), storage kept.
E4=undefined;E4SHIM.subscribed=[];E4SHIM.now=5000;
(0,eval)(IMAGE);
d=E4.boot();
P("status2",JSON.stringify(E4.status()));
P("after",X(E4.client().protect("health/spo2","after reboot")));
try{E4.client().unprotect(${JSON.stringify(CTL)},H("${protect(key(0x11), 1001, Uint8Array.from([3, ...unhex(key(0x77)), ...unhex(sha3_16('health/spo2'))]))}"));P("replay","accepted");}catch(e){P("replay",e.result);}
P("files",JSON.stringify(Object.keys(E4SHIM.files)));
P("end","ok");
`;
  return `${shim}\nvar IMAGE=${JSON.stringify(image)};\n${steps}`;
}

function results(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^JT (\S+) (.*)$/.exec(line);
    if (m) out[m[1]] = m[2];
  }
  return out;
}

describe('jerryscript image under duk with the native-function shim', () => {
  it('provisions, receives, publishes, runs a command and survives a power cycle', () => {
    const duk = findEngine('duk');
    if (!duk) throw new Error('duk (Debian package duktape) is required for this test' + (process.env.CI ? ' and CI must install it' : ': apt-get install duktape'));
    const dir = mkdtempSync(join(tmpdir(), 'e4-jerry-'));
    const file = join(dir, 'board.js');
    writeFileSync(file, jerryScript());
    const r = spawnSync(duk, [file], { encoding: 'utf8', timeout: 120000 });
    const R = results(r.stdout);
    expect(R.end, r.stdout + r.stderr).toBe('ok');
    expect(JSON.parse(R.status)).toMatchObject({ ok: true, error: '', controlTopic: CTL, topics: 4 });
    const cfg = JSON.parse(R.config);
    expect(cfg.key).toBeUndefined();
    expect(cfg.provisioned).toBe(true);
    expect(cfg.topics).toEqual(TOPICS.map((topic) => ({ topic, hash: sha3_16(topic) })));
    expect(JSON.parse(R.subscribed)).toEqual([CTL, ...TOPICS]);
    expect(JSON.parse(R.got)).toEqual(['health/spo2=spo2 97%', 'error E4_ERROR_MESSAGE_REPLAYED health/spo2', `command ${CTL}`, `command ${CTL}`, 'runtime/topic=late topic']);
    const [topic, hex] = R.published.split(' ');
    expect(topic).toBe('health/spo2');
    expect(open(key(0x77), hex)).toBe('spo2 96%');
    expect(JSON.parse(R.stats)).toEqual({ received: 5, accepted: 4, rejected: 1, commands: 2, published: 1 });
    expect(JSON.parse(R.status2)).toMatchObject({ ok: true, topics: 5 });
    expect(open(key(0x77), R.after)).toBe('after reboot');
    expect(R.replay).toBe('E4_ERROR_MESSAGE_REPLAYED');
    expect(JSON.parse(R.files).sort()).toEqual(['$e4.json', '$e4s0']);
  });
});
