/**
 * A self-contained script that runs the jerryscript board image (dist/boards/jerryscript.min.js)
 * with the native-function shim (host-sim/sim/jerry-shim.js) through a device's life: provisioning
 * from e4.json, subscriptions, receiving (and a duplicate), two C2 commands, a topic met at run
 * time, publishing, a 1,000-byte message out and back in, then a power cycle on the same storage. It prints `JT <tag> <value>` lines.
 * Used by test/jerryscript-board.test.ts (under duk) and host-sim/tools/jerry-memory.ts
 * (JerryScript with a 64 KB heap). Messages are made here on the host with noble.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { aessiv } from '@noble/ciphers/aes.js';
import { sha3_16 } from '../shared/device-config.ts';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
export const unhex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));
const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');
export const key = (n: number): string => n.toString(16).padStart(2, '0').repeat(32);

export function protect(k: string, ts: number, payload: Uint8Array | string): string {
  const t = Buffer.alloc(8);
  t.writeBigUInt64LE(BigInt(ts));
  const kk = unhex(k);
  const p = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
  return hexOf(Uint8Array.from([...t, ...aessiv(Uint8Array.from([...kk, ...kk]), t).encrypt(p)]));
}

export function open(k: string, hex: string): string | null {
  const m = unhex(hex);
  const kk = unhex(k);
  try {
    return new TextDecoder().decode(aessiv(Uint8Array.from([...kk, ...kk]), m.subarray(0, 8)).decrypt(m.subarray(8)));
  } catch {
    return null;
  }
}

export const TOPICS = ['health/heart-rate', 'health/spo2', 'health/temp', 'health/steps'];
export const CFG = {
  format: 'e4-device',
  version: 1,
  name: 'jerry-1',
  id: sha3_16('jerry-1'),
  key: key(0x11),
  topics: TOPICS.map((topic, i) => ({ topic, hash: sha3_16(topic), key: key(0x21 + i) })),
  clock: 'untrusted',
  log: 'info',
};
export const CTL = 'e4/' + sha3_16('jerry-1');
/** The payload the life cycle publishes and receives back on health/temp: BIG letters a..z repeated. */
export const BIG = 1000;
export const bigPayload = () => Array.from({ length: BIG }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
export const bigChecksum = () => [...bigPayload()].reduce((s, c) => (s + c.charCodeAt(0)) % 65536, 0);
const setTopicKey = (k: string, topic: string): Uint8Array => Uint8Array.from([3, ...unhex(k), ...unhex(sha3_16(topic))]);

/**
 * `inline`: the image's source appears once in the script, as a C port would load it (parsed
 * from a buffer outside the JavaScript heap), and there is no power cycle; `nativeAes`: the shim
 * registers the optional native AES functions too (host-sim/sim/jerry-shim-aes.js); otherwise the script
 * keeps the source as a string to evaluate it a second time after the "power cycle".
 */
export interface JerryBoardOptions {
  /** The image (default dist/boards/jerryscript.min.js). */
  imageFile?: string;
  inline?: boolean;
  nativeAes?: boolean;
}

export function jerryBoardScript({
  imageFile = join(ROOT, 'dist/boards/jerryscript.min.js'),
  inline = false,
  nativeAes = false,
}: JerryBoardOptions = {}): string {
  const image = readFileSync(imageFile, 'latin1');
  // `nativeAes`: the port also registers the optional native AES functions.
  const shim =
    readFileSync(join(ROOT, 'host-sim/sim/jerry-shim.js'), 'utf8') +
    (nativeAes ? '\n' + readFileSync(join(ROOT, 'host-sim/sim/jerry-shim-aes.js'), 'utf8') : '');
  const cmd1 = protect(key(0x11), 1001, setTopicKey(key(0x77), 'health/spo2'));
  const steps = `
function H(s){var b=new Uint8Array(s.length/2);for(var i=0;i<b.length;i++)b[i]=parseInt(s.substr(2*i,2),16);return b;}
function X(b){var s="";for(var i=0;i<b.length;i++)s+=(b[i]<16?"0":"")+b[i].toString(16);return s;}
function S(b){var s="";for(var i=0;i<b.length;i++)s+=String.fromCharCode(b[i]);return s;}
function P(tag,v){print("JT "+tag+" "+v);}
var cfgText=${JSON.stringify(JSON.stringify(CFG))};
(function(){var b=new Uint8Array(cfgText.length);for(var i=0;i<b.length;i++)b[i]=cfgText.charCodeAt(i);e4_storage_write("e4.json",b,0,b.length);})();
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
E4.receive(${JSON.stringify(CTL)},H("${cmd1}"));
E4.receive(${JSON.stringify(CTL)},H("${protect(key(0x11), 1002, setTopicKey(key(0x66), 'runtime/topic'))}"));
d.subscribe("runtime/topic");
E4.receive("runtime/topic",H("${protect(key(0x66), 1003, 'late topic')}"));
P("got",JSON.stringify(got));
d.publish("health/spo2","spo2 96%");
P("published",E4SHIM.published[0].topic+" "+X(E4SHIM.published[0].data));
P("stats",JSON.stringify(d.stats));
(function(){
var big=new Uint8Array(${BIG});
for(var i=0;i<big.length;i++)big[i]=97+i%26;
d.on("message",function(t,p){var s=0;for(var i=0;i<p.length;i++)s=(s+p[i])%65536;P("bigin",t+" "+p.length+" "+s);});
d.publish("health/temp",big);
big=undefined;
var m=E4SHIM.published[E4SHIM.published.length-1];
${inline ? 'P("bigout",m.topic+" "+m.data.length);' : 'P("bigout",m.topic+" "+X(m.data));'}
E4.receive("health/temp",m.data);
})();
${inline ? 'P("end","ok");' : ''}
E4=undefined;d=undefined;E4SHIM.subscribed=[];E4SHIM.now=5000;
(0,eval)(IMAGE);
d=E4.boot();
P("status2",JSON.stringify(E4.status()));
P("after",X(E4.client().protect("health/spo2","after reboot")));
try{E4.client().unprotect(${JSON.stringify(CTL)},H("${cmd1}"));P("replay","accepted");}catch(e){P("replay",e.result);}
P("files",JSON.stringify(Object.keys(E4SHIM.files)));
P("end","ok");
`;
  if (inline) {
    const [first] = steps.split('E4=undefined;');
    return `${shim}\n${image}\n${first.replace('(0,eval)(IMAGE);', '')}`;
  }
  return `${shim}\nvar IMAGE=${JSON.stringify(image)};\n${steps}`;
}

/** The JT lines of an output, by tag. */
export function jerryResults(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^JT (\S+) (.*)$/.exec(line.replace(/\r$/, ''));
    if (m) out[m[1]] = m[2];
  }
  return out;
}
