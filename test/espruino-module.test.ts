/**
 * The board image as an Espruino module (boards/espruino/README.md, "As a module"), on the real
 * interpreter (espruino32-12000): `require("e4")` from a Storage file named `e4` and from
 * `Modules.addCached`, with the device file in `e4.json`; after `E4.start()` the runtime holds
 * the configured identity and topics and protects with the topic's key. And the IDE's way: code
 * that says `require("e4")` sent with the espruino tool, which finds `modules/e4.js` in its module
 * folder (MODULE_URL) and uploads it with Modules.addCached, to the Linux Espruino as a board.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needEngine, skipped, titled } from './support/engines';
import { hilDevice, open } from '../host-sim/tools/hil.ts';
import { TS_NODE } from '../host-sim/shared/cli.ts';

const ROOT = join(__dirname, '..');
const e = needEngine('espruino32-12000');

/** Runs a script on the interpreter in `dir` (its Storage, ./espruino.flash, lasts between runs). */
function run(dir: string, script: string) {
  writeFileSync(join(dir, 'app.js'), script);
  const r = spawnSync(e.binary(), ['app.js'], { cwd: dir, encoding: 'utf8', timeout: 30000, killSignal: 'SIGKILL', input: '' });
  return (r.stdout || '') + (r.stderr || '');
}

/**
 * Stores the ESP32 image in Storage as `file` (in chunks, as the flash tool sends it: the whole
 * image as one string literal would not fit in RAM beside its decoded copy), then runs `load`.
 */
function runOnEspruino(file: string, load: string) {
  const dev = hilDevice('espruino-esp32');
  const image = readFileSync(join(ROOT, 'dist/boards/espruino-esp32.min.js'));
  const dir = mkdtempSync(join(tmpdir(), 'e4-module-'));
  try {
    for (let off = 0; off < image.length; off += 2048) {
      const chunk = image.subarray(off, off + 2048).toString('base64');
      const out = run(dir, `require("Storage").write(${JSON.stringify(file)},atob("${chunk}"),${off},${image.length});print("E4W ok");\n`);
      if (!/E4W ok/.test(out)) throw new Error(`storing the image failed at byte ${off}: ${out.slice(-500)}`);
    }
    const out = run(
      dir,
      `var S=require("Storage");S.write("e4.json",${JSON.stringify(JSON.stringify(dev))});
${load}
E4.start();var s=E4.status();
print("E4MOD "+JSON.stringify({ok:s.ok,ctl:s.controlTopic,topics:s.topics}));
var m=E4.client().protect("hil/t1","from the module");var h="";for(var i=0;i<m.length;i++)h+=(m[i]<16?"0":"")+m[i].toString(16);print("E4MSG "+h);
E4.stop();clearInterval();clearTimeout();
`,
    );
    const status = /E4MOD (\{.*\})/.exec(out);
    const msg = /E4MSG ([0-9a-f]+)/.exec(out);
    return { dev, out, status: status ? JSON.parse(status[1]) : null, msg: msg ? Buffer.from(msg[1], 'hex') : null };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe.skipIf(skipped(e))(titled('the board image as an Espruino module on espruino32-12000', e), () => {
  for (const [how, file, load] of [
    ['a Storage file named e4', 'e4', 'var E4=require("e4");'],
    ['Modules.addCached', 'e4src', 'Modules.addCached("e4",S.read("e4src"));var E4=require("e4");'],
  ]) {
    it(`require("e4") from ${how}: starts with the device file's identity and keys`, () => {
      const r = runOnEspruino(file, load);
      expect(r.status, r.out).toEqual({ ok: true, ctl: `e4/${r.dev.id}`, topics: 4 });
      const opened = open(r.dev.topics[0].key, Uint8Array.from(r.msg!));
      expect(opened && Buffer.from(opened).toString(), r.out).toBe('from the module');
    });
  }
});

describe.skipIf(skipped(e))(
  titled("the board image from the module folder of the espruino tool (the IDE's way), on espruino32-12000 as a board", e),
  () => {
    it('code that says require("e4") gets the module uploaded and runs with the device file', () => {
      e.binary();
      const dev = hilDevice('espruino-esp32');
      const dir = mkdtempSync(join(tmpdir(), 'e4-ide-'));
      try {
        mkdirSync(join(dir, 'modules'));
        copyFileSync(join(ROOT, 'dist/boards/espruino-esp32.min.js'), join(dir, 'modules/e4.js'));
        writeFileSync(
          join(dir, 'app.js'),
          `require("Storage").write("e4.json",${JSON.stringify(JSON.stringify(dev))});
var E4=require("e4");E4.start();var s=E4.status();print("E4MOD "+JSON.stringify({ok:s.ok,ctl:s.controlTopic,topics:s.topics}));
`,
        );
        const cli = join(ROOT, 'node_modules/.bin/espruino');
        const r = spawnSync(
          process.execPath,
          [
            ...TS_NODE,
            join(ROOT, 'host-sim/tools/linux-board.ts'),
            '--engine',
            'espruino32-12000',
            '--',
            'sh',
            '-c',
            `cd "${dir}" && exec "${process.execPath}" "${cli}" --no-ble --config MODULE_URL=modules -p "$E4_BOARD_PORT" app.js`,
          ],
          {
            encoding: 'utf8',
            timeout: 120000,
          },
        );
        const out = (r.stdout || '') + (r.stderr || '');
        const status = /E4MOD (\{.*\})/.exec(out);
        expect(status, out).not.toBeNull();
        expect(JSON.parse(status![1])).toEqual({ ok: true, ctl: `e4/${dev.id}`, topics: 4 });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }, 150000);
  },
);
