#!/usr/bin/env node
/**
 * Conformance of a built ES5 image on real JavaScript engines.
 *
 *   npm run conformance -- [--engine node|duk|jerry|espruino|<binary path>]... [--kind K]
 *                          [--image dist/e4.min.js] [--batch-bytes N] [--timeout-ms N] [--verbose]
 *                          FILE...
 *
 * FILE is a vector file of either schema in test/vectors/ (e4-sk-vectors.json, rfc5297.json; see test/vectors/README.md).
 * Each engine is fed self-contained scripts: the image + a small ES5 harness + a batch of cases.
 * The harness runs each case through the image's public API (global E4) and prints one tagged line
 * `@@E4R {"id":..,"out":..}` per case between `@@E4BEGIN` and `@@E4END <ms>`; the comparison with
 * the expected values happens here, in Node. Batches are sized per engine kind so that a
 * 12,000-variable Espruino or a 64 KB-heap JerryScript can hold one.
 *
 * Prints counts per file and section, the time per engine, and as its last line
 * `conformance: N passed, M failed`. Exits 1 on any failure or when no case ran, 2 on bad usage.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { causeOf, describeEngine, ENGINES, EngineUsageError, isKind, KIND_DEFAULTS, KINDS, openEngine } from './engines.ts';
import type { Engine, EngineRun, ImageIn } from './engines.ts';
import { isMain, packageVersion } from '../shared/cli.ts';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
export const TAG = '@@E4R ';
export const BEGIN = '@@E4BEGIN';
export const END = '@@E4END';

// ---------------------------------------------------------------------------------------------
// The in-engine harness (ES5; prints with print() or console.log()). Every op takes plain JSON
// arguments (hex strings) and returns plain JSON; errors become { code } (E4Error) or { error }.

export const HARNESS = `
(function (CASES) {
  var out = typeof print === "function" ? print : function (s) { console.log(s); };
  var H = E4.fromHex, X = E4.toHex, vault = E4.vault();
  function fail(e) { return e && e.name === "E4Error" ? { code: e.code } : { error: String(e && e.message ? e.message : e) }; }
  function state(c) {
    var s = c.snapshot(), t = [];
    for (var i = 0; i < s.topics.length; i++) t.push([X(s.topics[i].hash), X(s.topics[i].key)]);
    return { key: X(s.key), topics: t };
  }
  var OPS = {
    text: function (a) {
      var id = E4.clientId(vault, a.text);
      return { utf8: X(E4.utf8(a.text)), id: X(id), topic: E4.controlTopic(id), hash: X(E4.topicHash(vault, a.text)), sha3: X(vault.sha3(H(a.hex))) };
    },
    seal: function (a) {
      var k = H(a.key), ad = H(a.ad), s = vault.sivEncrypt(k, ad, H(a.pt)), bad = H(X(s)), o = vault.sivDecrypt(k, ad, s);
      bad[bad.length - 1] ^= 1;
      return { sealed: X(s), opened: o && X(o), tampered: vault.sivDecrypt(k, ad, bad) };
    },
    siv: function (a) {
      if (!E4.aesBlock) throw new Error("the image exports no aesBlock");
      var ads = [];
      for (var i = 0; i < a.ads.length; i++) ads.push(H(a.ads[i]));
      var c = E4.sivEncrypt(E4.aesBlock, H(a.k1), H(a.k2), ads, H(a.pt)), p = E4.sivDecrypt(E4.aesBlock, H(a.k1), H(a.k2), ads, c);
      return { out: X(c), back: p && X(p) };
    },
    client: function (a) {
      var clock = { kind: "trusted", t: a.now, now: function () { return clock.t; } };
      var c = E4.create({ vault: vault, clock: clock, store: E4.memoryStore() }, a.device, a.options);
      var r = { control: c.controlTopic, steps: [] };
      for (var i = 0; i < a.steps.length; i++) {
        var st = a.steps[i], x;
        clock.t = st.now;
        try {
          if (st.op === "protect") x = { out: X(c.protect(st.topic, H(st.hex))) };
          else { var p = c.unprotect(st.topic, H(st.hex), st.flags); x = { out: p === null ? null : X(p) }; }
        } catch (e) { x = fail(e); }
        if (st.state) x.state = state(c);
        r.steps.push(x);
      }
      c.close();
      return r;
    },
    e41p: function (a) {
      var topics = [];
      for (var i = 0; i < a.topics.length; i++) topics.push({ hash: H(a.topics[i][0]), key: H(a.topics[i][1]), prevKey: null, prevSince: -1 });
      var f = E4.encodeE41P({ id: H(a.id), key: H(a.key), topics: topics, lastCommand: -1, lastTags: new Uint8Array(0) });
      var b = E4.decodeE41P(H(X(f))), c = E4.create({ vault: vault, store: E4.memoryStore(b) });
      var r = { file: X(f), id: X(b.id), state: state(c), exported: X(c.exportE41P()) };
      c.close();
      return r;
    }
  };
  // Espruino: variables in use (without a GC first, so garbage counts: close to the peak).
  var mem = typeof process !== "undefined" && process && typeof process.memory === "function", peak = 0;
  out("${BEGIN} " + CASES.length);
  var t0 = Date.now();
  for (var i = 0; i < CASES.length; i++) {
    var k = CASES[i], r;
    CASES[i] = null;
    try { r = { id: k.id, out: OPS[k.op](k.args) }; } catch (e) { r = { id: k.id, fail: fail(e) }; }
    out("${TAG.trim()} " + JSON.stringify(r));
    if (mem) peak = Math.max(peak, process.memory(false).usage);
  }
  out("${END} " + (Date.now() - t0) + (mem ? " " + peak : ""));
})`;

// ---------------------------------------------------------------------------------------------
// Cases: { section, name, op, args, check(out) -> null | "why it failed" }

/** What the harness takes for each op (hex strings; see OPS in HARNESS). */
interface ClientStep {
  op: 'protect' | 'unprotect';
  topic: string;
  hex: string;
  now: number;
  flags?: number;
  /** Report the client's state after the step. */
  state?: boolean;
}
interface HarnessDevice {
  id: string;
  key: string;
  topics: { topic?: string; hash?: string; key: string }[];
}
export interface CaseArgs {
  text: { text: string; hex: string };
  seal: { key: string; ad: string; pt: string };
  siv: { k1: string; k2: string; ads: string[]; pt: string };
  client: { now: number; device: HarnessDevice; options?: { keyTransition: number }; steps: ClientStep[] };
  e41p: { id: string; key: string; topics: [string, string][] };
}

/** What the harness returns for each op. */
interface ClientState {
  key: string;
  topics: [string, string][];
}
/** One client step: `out` (hex, or null for a message that was not accepted), or what it threw. */
interface StepOutput {
  out?: string | null;
  code?: number;
  error?: string;
  state: ClientState;
}
export interface CaseOutputs {
  text: { utf8: string; id: string; topic: string; hash: string; sha3: string };
  seal: { sealed: string; opened: string | null; tampered: string | null };
  siv: { out: string; back: string | null };
  client: { control: string; steps: StepOutput[] };
  e41p: { file: string; id: string; state: ClientState; exported: string };
}
export type CaseOp = keyof CaseArgs;

/** One vector as a case: `check(out)` says why the harness's output is wrong, or null. */
export interface Case {
  section: string;
  name: string;
  op: CaseOp;
  args: CaseArgs[CaseOp];
  check(out: unknown): string | null;
  /** The vector file's name and `file#index` (set by loadCases). */
  file: string;
  id: string;
}

/**
 * A case whose check reads the output of `op`. The harness's output is the engine's JSON: taken
 * as the op's output shape here, and a different shape makes the check throw, which runBatches
 * reports as "unexpected output shape".
 */
function newCase<O extends CaseOp>(
  section: string,
  name: string,
  op: O,
  args: CaseArgs[O],
  check: (out: CaseOutputs[O]) => string | null,
): Case {
  return { section, name, op, args, check: (out) => check(out as CaseOutputs[O]), file: '', id: '' };
}

// The two vector schemas (test/vectors/README.md): only the fields the cases (and hil.ts) read.
export interface VectorTopic {
  topic: string;
  topic_hash: string;
  key: string;
}
export interface VectorState {
  client_key: string;
  topics: VectorTopic[];
}
interface Expected {
  expected_code: number;
  expected_result: string;
}
interface ScenarioStep extends Expected {
  op: 'protect' | 'unprotect';
  description: string;
  topic: string;
  now: number;
  plaintext: string;
  protected: string;
  expected_protected?: string;
  expected_plaintext?: string | null;
  if_key_transition?: ScenarioStep;
  state_after: VectorState;
}
export interface AesSivVector {
  key: string;
  ad: string;
  plaintext: string;
  output: string;
}
export interface ProtectVector extends Expected {
  topic: string;
  topic_key: string;
  timestamp: number;
  plaintext: string;
  protected: string;
}
export interface UnprotectVector extends Expected {
  case: string;
  receiver: VectorState & { client_id: string; control_topic: string };
  topic: string;
  now: number;
  options: number;
  protected: string;
  expected_plaintext: string | null;
}
export interface CommandVector extends Expected {
  case: string;
  client_id: string;
  control_topic: string;
  protected: string;
  delivered_on_topic: string;
  now: number;
  options: number;
  state_before: VectorState;
  state_after: VectorState;
}
export interface SkVectors {
  meta: { format: 'e4-sk-test-vectors' };
  client_ids?: { name: string; name_utf8_hex: string; id: string; control_topic: string }[];
  topic_hashes?: { topic: string; topic_utf8_hex: string; topic_hash: string }[];
  aes_siv?: AesSivVector[];
  protect?: ProtectVector[];
  unprotect?: UnprotectVector[];
  commands?: CommandVector[];
  scenarios?: { case: string; initial_state: VectorState & { client_id: string; control_topic: string }; steps: ScenarioStep[] }[];
  storage_file?: { case: string; client_id: string; client_key: string; topics: VectorTopic[]; file: string }[];
}
interface RfcVectors {
  vectors: {
    name: string;
    title: string;
    key: string;
    mac_key_k1?: string;
    ctr_key_k2?: string;
    ad_components: string[];
    plaintext: string;
    output: string;
  }[];
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/** The schema is told by its marker (the files are pinned by SHA-256 in test/vectors/README.md). */
export function isSkVectors(v: unknown): v is SkVectors {
  return isObject(v) && isObject(v.meta) && v.meta.format === 'e4-sk-test-vectors';
}
function isRfcVectors(v: unknown): v is RfcVectors {
  return isObject(v) && Array.isArray(v.vectors) && v.vectors.length > 0 && isObject(v.vectors[0]) && Boolean(v.vectors[0].ad_components);
}

const eq = (what: string, got: unknown, want: unknown) =>
  got === want ? null : `${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`;
const first = (...r: (string | null)[]) => r.find((x) => x) || null;
const topicsOf = (list: VectorTopic[]): [string, string][] => list.map((t) => [t.topic_hash, t.key]);

/** libe4 result code of one client step's output. */
function codeOf(x: StepOutput): number | string {
  if (x.code !== undefined) return x.code;
  if (x.error !== undefined) return 'non-E4 error: ' + x.error;
  return x.out === null ? -1 : 0;
}

function checkStep(label: string, x: StepOutput, want: { code: number; name: string; out: string | null | undefined }) {
  const code = codeOf(x);
  if (code !== want.code) return `${label}: result ${code}, want ${want.code} (${want.name})`;
  if (want.code === 0 && want.out !== undefined && want.out !== null) return eq(label + ' output', x.out, want.out);
  return null;
}

function checkState(label: string, got: ClientState, key: string, topics: [string, string][]) {
  return first(eq(label + ' client key', got.key, key), eq(label + ' topics', JSON.stringify(got.topics), JSON.stringify(topics)));
}

function device(id: string, key: string, topics: VectorTopic[]): HarnessDevice {
  return { id, key, topics: topics.map((t) => ({ topic: t.topic, hash: t.topic_hash, key: t.key })) };
}

function skCases(v: SkVectors): Case[] {
  const cases: Case[] = [];
  const add = <O extends CaseOp>(section: string, name: string, op: O, args: CaseArgs[O], check: (out: CaseOutputs[O]) => string | null) =>
    cases.push(newCase(section, name, op, args, check));
  for (const c of v.client_ids || []) {
    add('client_ids', c.name.slice(0, 40), 'text', { text: c.name, hex: c.name_utf8_hex }, (o) =>
      first(
        eq('utf8', o.utf8, c.name_utf8_hex),
        eq('id', o.id, c.id),
        eq('control topic', o.topic, c.control_topic),
        eq('sha3 of the UTF-8 bytes', o.sha3.slice(0, 32), c.id),
      ),
    );
  }
  for (const c of v.topic_hashes || []) {
    add('topic_hashes', c.topic.slice(0, 40), 'text', { text: c.topic, hex: c.topic_utf8_hex }, (o) =>
      first(
        eq('utf8', o.utf8, c.topic_utf8_hex),
        eq('topic hash', o.hash, c.topic_hash),
        eq('sha3 of the UTF-8 bytes', o.sha3.slice(0, 32), c.topic_hash),
      ),
    );
  }
  (v.aes_siv || []).forEach((c, i) => {
    add('aes_siv', `#${i} (${c.plaintext.length / 2} bytes)`, 'seal', { key: c.key, ad: c.ad, pt: c.plaintext }, (o) =>
      first(eq('seal', o.sealed, c.output), eq('open', o.opened, c.plaintext), eq('open of a tampered tag', o.tampered, null)),
    );
  });
  (v.protect || []).forEach((c, i) => {
    const args: CaseArgs['client'] = {
      now: c.timestamp,
      device: { id: '00'.repeat(16), key: '11'.repeat(32), topics: [{ topic: c.topic, key: c.topic_key }] },
      steps: [
        { op: 'protect', topic: c.topic, hex: c.plaintext, now: c.timestamp },
        { op: 'unprotect', topic: c.topic, hex: c.protected, flags: 0, now: c.timestamp },
      ],
    };
    add('protect', `#${i} (${c.plaintext.length / 2} bytes at ${c.timestamp})`, 'client', args, (o) =>
      first(
        checkStep('protect', o.steps[0], { code: c.expected_code, name: c.expected_result, out: c.protected }),
        checkStep('unprotect of the result', o.steps[1], { code: 0, name: 'E4_RESULT_OK', out: c.plaintext }),
      ),
    );
  });
  for (const c of v.unprotect || []) {
    const r = c.receiver;
    const args: CaseArgs['client'] = {
      now: c.now,
      device: device(r.client_id, r.client_key, r.topics),
      steps: [{ op: 'unprotect', topic: c.topic, hex: c.protected, flags: c.options, now: c.now, state: true }],
    };
    add('unprotect', c.case, 'client', args, (o) =>
      first(
        eq('control topic', o.control, r.control_topic),
        checkStep('unprotect', o.steps[0], { code: c.expected_code, name: c.expected_result, out: c.expected_plaintext }),
        checkState('state (unchanged)', o.steps[0].state, r.client_key, topicsOf(r.topics)),
      ),
    );
  }
  for (const c of v.commands || []) {
    const args: CaseArgs['client'] = {
      now: c.now,
      device: device(c.client_id, c.state_before.client_key, c.state_before.topics),
      steps: [{ op: 'unprotect', topic: c.delivered_on_topic, hex: c.protected, flags: c.options, now: c.now, state: true }],
    };
    add('commands', c.case, 'client', args, (o) =>
      first(
        eq('control topic', o.control, c.control_topic),
        checkStep('command', o.steps[0], { code: c.expected_code, name: c.expected_result, out: null }),
        checkState('state after', o.steps[0].state, c.state_after.client_key, topicsOf(c.state_after.topics)),
      ),
    );
  }
  for (const s of v.scenarios || []) {
    for (const transition of [false, true]) {
      const init = s.initial_state;
      const steps = s.steps.map((st): ClientStep =>
        st.op === 'protect'
          ? { op: 'protect', topic: st.topic, hex: st.plaintext, now: st.now }
          : { op: 'unprotect', topic: st.topic, hex: st.protected, flags: 0, now: st.now, state: true },
      );
      const args = {
        now: s.steps[0].now,
        device: device(init.client_id, init.client_key, init.topics),
        options: { keyTransition: transition ? 3600 : 0 },
        steps,
      };
      add('scenarios', `${s.case} (key transition ${transition ? 'on' : 'off'})`, 'client', args, (o) => {
        for (let i = 0; i < s.steps.length; i++) {
          const st = s.steps[i];
          const label = `step ${i} (${st.description})`;
          const want = transition && st.if_key_transition ? st.if_key_transition : st;
          const why =
            st.op === 'protect'
              ? checkStep(label, o.steps[i], { code: want.expected_code, name: want.expected_result, out: want.expected_protected })
              : first(
                  checkStep(label, o.steps[i], { code: want.expected_code, name: want.expected_result, out: want.expected_plaintext }),
                  checkState(label, o.steps[i].state, st.state_after.client_key, topicsOf(st.state_after.topics)),
                );
          if (why) return why;
        }
        return eq('control topic', o.control, init.control_topic);
      });
    }
  }
  for (const c of v.storage_file || []) {
    const topics = topicsOf(c.topics);
    add('storage_file', c.case, 'e41p', { id: c.client_id, key: c.client_key, topics }, (o) =>
      first(
        eq('encoded', o.file, c.file),
        eq('decoded id', o.id, c.client_id),
        checkState('decoded', o.state, c.client_key, topics),
        eq('exported by a client', o.exported, c.file),
      ),
    );
  }
  return cases;
}

function rfcCases(v: RfcVectors): Case[] {
  return v.vectors.map((c) =>
    newCase(
      'rfc5297',
      `${c.name} ${c.title}`,
      'siv',
      {
        k1: c.mac_key_k1 || c.key.slice(0, c.key.length / 2),
        k2: c.ctr_key_k2 || c.key.slice(c.key.length / 2),
        ads: c.ad_components,
        pt: c.plaintext,
      },
      (o) => first(eq('SIV-ENCRYPT', o.out, c.output), eq('SIV-DECRYPT', o.back, c.plaintext)),
    ),
  );
}

/** The cases of one vector file, by its schema. Throws on an unknown schema. */
export function loadCases(file: string): Case[] {
  const v: unknown = JSON.parse(readFileSync(file, 'utf8'));
  let cases;
  if (isSkVectors(v)) cases = skCases(v);
  else if (isRfcVectors(v)) cases = rfcCases(v);
  else throw new Error(`${file}: unknown vector schema (expected e4-sk-test-vectors or the RFC 5297 file)`);
  const name = basename(file);
  cases.forEach((c, i) => {
    c.file = name;
    c.id = `${name}#${i}`;
  });
  return cases;
}

// ---------------------------------------------------------------------------------------------
// Scripts and runs

/** JSON with every non-ASCII character escaped: engines read the script as bytes. */
export function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (ch) => '\\u' + ch.charCodeAt(0).toString(16).padStart(4, '0'));
}

/** Splits cases into batches of at most `batchBytes` bytes of case JSON (at least one case). */
export function batches(cases: Case[], batchBytes: number): Batch[] {
  const out: Batch[] = [];
  let cur: Batch = [];
  let size = 0;
  for (const c of cases) {
    const json = asciiJson({ id: c.id, op: c.op, args: c.args });
    if (cur.length && size + json.length > batchBytes) {
      out.push(cur);
      cur = [];
      size = 0;
    }
    cur.push({ c, json });
    size += json.length + 1;
  }
  if (cur.length) out.push(cur);
  return out;
}

/** Cases of one script, each with its JSON for the harness. */
export type Batch = { c: Case; json: string }[];

export function scriptFor(imageCode: string, batch: Batch): string {
  return `${imageCode}\n${HARNESS}([\n${batch.map((b) => b.json).join(',\n')}\n]);\n`;
}

/** Reads the tagged lines of an engine's output: Map id -> result, and the in-engine time. */
export function parseOutput(stdout: string): ParsedOutput {
  const results = new Map<string, CaseResult>();
  let engineMs: number | null = null;
  let peakVars: number | null = null;
  let begun = false;
  for (const line of stdout.split(/\r?\n/)) {
    const at = line.indexOf(TAG);
    if (line.includes(BEGIN)) begun = true;
    if (at >= 0) {
      try {
        const r: unknown = JSON.parse(line.slice(at + TAG.length).trim());
        if (isObject(r) && typeof r.id === 'string') results.set(r.id, { ...r, id: r.id });
      } catch {
        /* a mangled line: the case counts as having no result */
      }
    }
    const end = line.indexOf(END + ' ');
    if (end >= 0) {
      const words = line
        .slice(end + END.length + 1)
        .trim()
        .split(/\s+/);
      engineMs = Number(words[0]);
      if (words[1] !== undefined) peakVars = Number(words[1]);
    }
  }
  return { results, engineMs, begun, peakVars };
}

/** One tagged result line: the case's id and its output, or what it threw (`fail`). */
export interface CaseResult {
  id: string;
  out?: unknown;
  fail?: unknown;
}

/** The tagged lines of one run: results by case id, the in-engine time, Espruino's peak variables. */
export interface ParsedOutput {
  results: Map<string, CaseResult>;
  engineMs: number | null;
  begun: boolean;
  peakVars: number | null;
}

function tail(s: string, n = 400) {
  s = String(s || '').trim();
  return s.length > n ? '…' + s.slice(-n) : s;
}

/**
 * Stores the image in an Espruino's flash `Storage` as `e4.js`, the way a board holds it, in
 * chunks small enough for a 2,630-variable build (a 20 KB script as source does not fit there).
 * Returns the script prefix that runs it from flash: Espruino then keeps function bodies in
 * flash instead of RAM (the portable image: ≈ 1,000 variables instead of more than 2,630).
 */
async function storeImageInFlash(engine: Engine, imageCode: string, workDir: string) {
  // The file holds the image's UTF-8 bytes, as the flash tool writes them; chunks travel base64
  // encoded (Espruino's string literals would turn a \u escape into several bytes).
  const bytes = Buffer.from(imageCode, 'utf8');
  const CHUNK = 1536;
  for (let off = 0; off < bytes.length; off += CHUNK) {
    const tag = `@@E4STORED ${off}`;
    const chunk = bytes.subarray(off, off + CHUNK).toString('base64');
    const run = await engine.run(`require("Storage").write("e4.js", atob("${chunk}"), ${off}, ${bytes.length});\nprint("${tag}");\n`, {
      endTag: tag,
      workDir,
      timeoutMs: 60000,
    });
    if (!run.stdout.includes(tag))
      throw new Error(`storing the image in Espruino's flash failed at byte ${off} (${causeOf(engine.kind, run)})`);
  }
  return 'eval(require("Storage").read("e4.js"));';
}

/**
 * Runs `cases` on one engine. Returns { engine, kind, cases: [{ c, ok, why }], batches, wallMs,
 * engineMs, peakVars } (peakVars: Espruino's variables in use, else null). `imageIn`: 'flash'
 * stores the image in Espruino's Storage and runs it from there, as a board does (the default of
 * engines whose RAM cannot hold it as source, e.g. espruino32-2630); 'source' sends it in each script.
 */
export async function runCases(
  engine: Engine,
  imageCode: string,
  cases: Case[],
  { batchBytes, timeoutMs, memoryLimit, imageIn, onBatch }: RunCasesOptions = {},
): Promise<CasesRun> {
  const kindDefaults = KIND_DEFAULTS[engine.kind];
  const list = batches(cases, batchBytes || engine.batchBytes || kindDefaults.batchBytes);
  let workDir: string | undefined;
  let code = imageCode;
  if ((imageIn || engine.imageIn) === 'flash') {
    if (engine.kind !== 'espruino') throw new Error(`${engine.name}: only Espruino runs an image from flash Storage`);
    workDir = mkdtempSync(join(tmpdir(), 'e4-espruino-'));
    code = await storeImageInFlash(engine, imageCode, workDir);
  }
  try {
    return await runBatches(engine, code, list, { timeoutMs: timeoutMs || kindDefaults.timeoutMs, memoryLimit, workDir, onBatch });
  } finally {
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  }
}

/** Options of runCases; `onBatch(done, total, run)` is told after each script. */
export interface RunCasesOptions {
  batchBytes?: number;
  timeoutMs?: number;
  memoryLimit?: number | string;
  imageIn?: ImageIn;
  onBatch?: ((done: number, total: number, run: EngineRun) => void) | null;
}

/** One case's verdict: `why` it failed, or null/empty when it passed. */
export interface Outcome {
  c: Case;
  ok: boolean;
  why: string | null | undefined;
}

export interface CasesRun {
  engine: string;
  kind: Engine['kind'];
  cases: Outcome[];
  batches: number;
  wallMs: number;
  engineMs: number;
  peakVars: number | null;
}

async function runBatches(
  engine: Engine,
  imageCode: string,
  list: Batch[],
  { timeoutMs, memoryLimit, workDir, onBatch }: RunCasesOptions & { workDir?: string },
): Promise<CasesRun> {
  const outcomes: Outcome[] = [];
  let wallMs = 0;
  let engineMs = 0;
  let peakVars: number | null = null;
  for (let b = 0; b < list.length; b++) {
    const batch = list[b];
    const run = await engine.run(scriptFor(imageCode, batch), { endTag: END, timeoutMs, memoryLimit, workDir });
    wallMs += run.ms;
    const parsed = parseOutput(run.stdout);
    if (parsed.engineMs !== null) engineMs += parsed.engineMs;
    if (parsed.peakVars !== null) peakVars = Math.max(peakVars || 0, parsed.peakVars);
    for (const { c } of batch) {
      const r = parsed.results.get(c.id);
      let why: string | null;
      if (!r) {
        // The engine died before this case's result: say of what (out of memory, a crash, ...).
        why =
          `no result: the engine died (${causeOf(engine.kind, run)}${parsed.begun ? '' : '; the harness never started'})` +
          (tail(run.stderr) ? `\n      stderr: ${tail(run.stderr)}` : '') +
          (!parsed.begun ? `\n      output: ${tail(run.stdout)}` : '');
      } else if (r.fail) why = 'threw ' + JSON.stringify(r.fail);
      else {
        try {
          why = c.check(r.out);
        } catch (e) {
          why = 'unexpected output shape: ' + (e instanceof Error ? e.message : String(e));
        }
      }
      outcomes.push({ c, ok: !why, why });
    }
    if (onBatch) onBatch(b + 1, list.length, run);
  }
  return { engine: engine.name, kind: engine.kind, cases: outcomes, batches: list.length, wallMs, engineMs, peakVars };
}

/** Per file and section: { key: "file section", passed, failed }. */
export function tally(outcomes: Outcome[]): { key: string; passed: number; failed: number }[] {
  const m = new Map<string, { key: string; passed: number; failed: number }>();
  for (const o of outcomes) {
    const k = `${o.c.file} ${o.c.section}`;
    let t = m.get(k);
    if (!t) m.set(k, (t = { key: k, passed: 0, failed: 0 }));
    t[o.ok ? 'passed' : 'failed']++;
  }
  return [...m.values()];
}

export function defaultImage() {
  const min = join(ROOT, 'dist', 'e4.min.js');
  return existsSync(min) ? min : join(ROOT, 'dist', 'e4.js');
}

const USAGE = `usage: npm run conformance -- [--engine NAME|PATH]... [--kind KIND] [--image FILE] [--batch-bytes N]
                              [--timeout-ms N] [--memory-limit N] [--image-in flash|source] [--sections S,...] [--max-case-bytes N] [--verbose] FILE...
  NAME  node (a device-like node:vm realm) or an engine binary found in $E4_ENGINES or $PATH:
        ${Object.keys(ENGINES).join(', ')}
  KIND  ${KINDS.slice(1).join(', ')} (checked against what the binary answers)
  FILE  vector files, e.g. test/vectors/*.json; --sections keeps only the named sections
        (client_ids, topic_hashes, aes_siv, protect, unprotect, commands, scenarios, storage_file, rfc5297);
        --max-case-bytes leaves out cases whose data is larger (named in the output)
  --image-in flash stores the image in Espruino's flash Storage first and runs it from there, as a
  board does (the default on espruino32-2630, whose RAM cannot hold it as source); --memory-limit
  is MicroQuickJS's heap size (e.g. 64k).`;

function usage(msg?: string): never {
  if (msg) {
    console.error(`conformance: ${msg} (npm run conformance -- --help)`);
    process.exit(2);
  }
  console.log(USAGE);
  process.exit(0);
}

/** The command line of `npm run conformance`. */
export interface ConformanceArgs {
  engines: string[];
  kind: string | null;
  image: string | null;
  batchBytes: number;
  timeoutMs: number;
  memoryLimit: string | null;
  imageIn?: ImageIn;
  sections?: string[];
  maxCaseBytes?: number;
  verbose: boolean;
  files: string[];
}

export function parseArgs(argv: string[]): ConformanceArgs {
  const o: ConformanceArgs = {
    engines: [],
    kind: null,
    image: null,
    batchBytes: 0,
    timeoutMs: 0,
    memoryLimit: null,
    verbose: false,
    files: [],
  };
  let imageIn: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--engine') o.engines.push(val());
    else if (a === '--kind') o.kind = val();
    else if (a === '--image') o.image = val();
    else if (a === '--batch-bytes') o.batchBytes = Number(val());
    else if (a === '--timeout-ms') o.timeoutMs = Number(val());
    else if (a === '--memory-limit') o.memoryLimit = val();
    else if (a === '--image-in') imageIn = val();
    else if (a === '--sections') o.sections = val().split(',');
    else if (a === '--max-case-bytes') o.maxCaseBytes = Number(val());
    else if (a === '--verbose' || a === '-v') o.verbose = true;
    else if (a === '--help' || a === '-h') usage();
    else if (a === '--version') {
      console.log(packageVersion());
      process.exit(0);
    } else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else o.files.push(a);
  }
  if (!o.engines.length) o.engines.push('node');
  for (const e of o.engines)
    if (e !== 'node' && !e.includes('/') && !ENGINES[e])
      usage(`unknown engine ${e}: one of node, ${Object.keys(ENGINES).join(', ')}, or a path`);
  if (imageIn) {
    if (imageIn !== 'flash' && imageIn !== 'source') usage(`--image-in takes flash or source, not ${imageIn}`);
    o.imageIn = imageIn;
  }
  if (o.kind && !isKind(o.kind)) usage(`unknown kind ${o.kind}: one of ${KINDS.slice(1).join(', ')}`);
  return o;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (!o.files.length) usage('no vector file given');
  const imageFile = o.image || defaultImage();
  if (!existsSync(imageFile)) usage(`image ${imageFile} not found: run \`npm run build\` first`);
  const imageCode = readFileSync(imageFile, 'utf8');
  let cases: Case[] = [];
  for (const f of o.files) cases = cases.concat(loadCases(f));
  const sections = o.sections;
  if (sections) cases = cases.filter((c) => sections.includes(c.section));
  const maxCaseBytes = o.maxCaseBytes;
  if (maxCaseBytes) {
    const size = (c: Case) => asciiJson({ id: c.id, op: c.op, args: c.args }).length;
    for (const c of cases.filter((x) => size(x) > maxCaseBytes))
      console.log(`left out (${size(c)} bytes of case data > --max-case-bytes ${maxCaseBytes}): ${c.file} ${c.section} ${c.name}`);
    cases = cases.filter((c) => size(c) <= maxCaseBytes);
  }
  console.log(`image ${imageFile} (${imageCode.length} bytes), ${cases.length} cases from ${o.files.length} file(s)`);
  let passed = 0;
  let failed = 0;
  for (const spec of o.engines) {
    let engine;
    try {
      engine = openEngine(spec, o.kind ?? undefined);
    } catch (e) {
      if (e instanceof EngineUsageError) usage(e.message);
      console.log(`engine ${spec}: ${e instanceof Error ? e.message : String(e)}`);
      failed += cases.length;
      continue;
    }
    console.log(`engine ${describeEngine(engine)}`);
    const res = await runCases(engine, imageCode, cases, {
      batchBytes: o.batchBytes,
      timeoutMs: o.timeoutMs,
      memoryLimit: o.memoryLimit ?? undefined,
      imageIn: o.imageIn,
      onBatch: o.verbose ? (i, n, run) => console.log(`  batch ${i}/${n}: ${run.ms.toFixed(0)} ms, exit ${run.exit}`) : null,
    });
    for (const t of tally(res.cases)) console.log(`  ${t.key}: ${t.passed} passed, ${t.failed} failed`);
    for (const f of res.cases.filter((x) => !x.ok)) console.log(`  FAIL ${f.c.file} ${f.c.section} ${f.c.name}: ${f.why}`);
    const p = res.cases.filter((x) => x.ok).length;
    console.log(
      `  time ${engine.name}: ${res.cases.length} cases in ${res.batches} batches, ${(res.wallMs / 1000).toFixed(2)} s wall, ${(res.engineMs / 1000).toFixed(2)} s in the engine` +
        (res.peakVars !== null ? `, peak ${res.peakVars} variables in use` : ''),
    );
    passed += p;
    failed += res.cases.length - p;
  }
  console.log(`conformance: ${passed} passed, ${failed} failed`);
  process.exit(failed || !passed ? 1 : 0);
}

if (isMain(import.meta.url)) {
  main().catch((e) => {
    console.error(e);
    console.log('conformance: 0 passed, 1 failed');
    process.exit(1);
  });
}
