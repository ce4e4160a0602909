/**
 * The Puck.js memory figures without a console: the board image written to the Storage of a
 * Linux Espruino build sized like a Puck.js (`espruino32-2630`: 2,630 variables of 13 bytes), in
 * a scratch directory (its `espruino.flash`), then booted from flash and measured with the very
 * script `npm run hil` runs (hil.ts memoryScript: after boot with 4 topics, after a 64-byte
 * protect/unprotect, peak during a 256-byte protect+unprotect and during each kind of C2 command).
 * No network: each step is one run of the engine on a script file.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hilDevice, isMemReport, memoryScript } from './hil.ts';
import type { HilMemory } from './hil.ts';

/** Bytes of image per upload script (the script is held in RAM as source while it runs). */
const CHUNK = 6000;

function runFile(engine: string, dir: string, code: string, timeoutMs: number): Promise<{ stdout: string; err: Error | null }> {
  writeFileSync(join(dir, 'step.js'), code);
  return new Promise((resolve) => {
    const child = execFile(
      engine,
      ['step.js'],
      { cwd: dir, timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'latin1' },
      (err, stdout) => resolve({ stdout: stdout || '', err }),
    );
    child.stdin?.end();
  });
}

/** The Puck.js figures (Espruino variables): hil's memory figures without the block size. */
export type PuckMemory = Omit<HilMemory, 'blocksize'>;

/**
 * Measures `imageFile` (a board image) on `engine` (path of espruino32-2630). Resolves
 * { boot, after, peak256, peakCommands, peak, base, total } or throws with the engine's output.
 */
export async function puckMemory({
  engine,
  imageFile,
  board = 'espruino-puckjs',
  timeoutMs = 60000,
}: {
  engine: string;
  imageFile: string;
  board?: string;
  timeoutMs?: number;
}): Promise<PuckMemory> {
  const image = readFileSync(imageFile);
  const dir = mkdtempSync(join(tmpdir(), 'e4-puck-mem-'));
  const S = 'require("Storage")';
  try {
    const steps = [];
    for (let off = 0; off < image.length; off += CHUNK) {
      const part = image.subarray(off, off + CHUNK).toString('base64');
      steps.push(`${off === 0 ? S + '.eraseAll();' : ''}${S}.write("e4.js",atob("${part}"),${off}${off === 0 ? ',' + image.length : ''});`);
    }
    const dev = hilDevice(board);
    steps.push(`${S}.write("e4.json",${JSON.stringify(JSON.stringify(dev))});`);
    // First boot: provisioning moves the keys into the store (as after `npm run flash`).
    steps.push(`eval(${S}.read("e4.js"));E4.start();clearInterval();clearTimeout();`);
    // The measuring script runs from flash too, as console lines would not stay in RAM.
    steps.push(`${S}.write("hs.js",${JSON.stringify(memoryScript(dev).script)});`);
    let out = '';
    for (const code of steps) out += (await runFile(engine, dir, code, timeoutMs)).stdout;
    // The script measures from a timer and clears every timer when done (then the engine exits).
    const r = await runFile(engine, dir, `eval(${S}.read("e4.js"));E4.start();eval(${S}.read("hs.js"));`, timeoutMs);
    out += r.stdout;
    // The report may follow the console's prompt (">" and an erase-line sequence) on its line.
    const line = out.split(/\r?\n/).find((l) => l.includes('E4HIL mem {'));
    if (!line)
      throw new Error(
        'no memory report: ' +
          out
            .split(/\r?\n/)
            .filter((l) => /rror|MEMORY|E4HIL/.test(l))
            .slice(-4)
            .join(' | '),
      );
    const mem: unknown = JSON.parse(line.slice(line.indexOf('E4HIL mem ') + 'E4HIL mem '.length));
    if (!isMemReport(mem)) throw new Error('a memory report without its figures: ' + line.slice(0, 300));
    if (!mem.status || !mem.status.ok || mem.status.topics !== 4)
      throw new Error('the image did not boot with 4 topics: ' + JSON.stringify(mem.status));
    if (!mem.results.every((x) => x === 1)) throw new Error('a C2 command failed in the memory run: ' + mem.errors.join(' | '));
    const names = memoryScript(dev).commands.map((c) => c.name);
    const peakCommands: Record<string, number> = {};
    names.forEach((n, i) => (peakCommands[n] = Math.max(peakCommands[n] || 0, mem.commands[i])));
    return {
      boot: mem.boot,
      after: mem.after,
      peak256: mem.peak256,
      peakCommands,
      peak: Math.max(mem.peak256, ...mem.commands),
      base: mem.base,
      total: mem.total,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
