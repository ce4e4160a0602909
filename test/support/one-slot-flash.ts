/**
 * Run by test/flash-one-slot.test.ts inside host-sim/tools/linux-board.ts: flashes the Puck.js
 * image, fills the board's Storage until a second image no longer fits beside the first (a
 * Puck.js has ≈ 40 KB of Storage, the image ≈ 35 KB), then uploads a new identity through a relay
 * that cuts the connection half-way: the old image is gone (one slot) but the first identity's
 * configuration and key store must remain, so `flash --keep-state` brings the first identity
 * back. Then the new identity is flashed whole. Prints `FIRST`, `BALLAST`, `CUT`, `KEPT` and
 * `SECOND` lines; exit 0 when all hold.
 */
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { flash } from '../../host-sim/tools/flash.ts';
import { hilDevice } from '../../host-sim/tools/hil.ts';
import type { HilDevice } from '../../host-sim/tools/hil.ts';
import { runEspruino } from '../../host-sim/tools/espruino-cli.ts';
import { tagged } from '../../host-sim/shared/flash-files.ts';
import { boardPort, relay, RELAY_PORT } from './cut-relay.ts';

const port = boardPort();
const board = 'espruino-puckjs';
const dir = mkdtempSync(join(tmpdir(), 'e4-one-slot-'));
const deviceFile = (dev: HilDevice, name: string) => {
  const f = join(dir, name);
  writeFileSync(f, JSON.stringify(dev), { mode: 0o600 });
  return f;
};
const logs: string[] = [];
const log = (m: string) => logs.push(m);
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

const first = hilDevice(board);
await flash({ board, port, device: deviceFile(first, 'first.json') }, log);
console.log('FIRST ok');
// Ballast: a file that leaves less free than one more image needs (created blank, nothing to send).
const fill = await runEspruino({
  port,
  script: 'var S=require("Storage");var f=S.getFree();S.write("ballast","x",0,Math.max(0,f-30000));print("E4B free "+S.getFree());\n',
});
console.log('BALLAST ' + tagged(fill.lines, 'E4B free')[0]);
const second = hilDevice(board);
let ok = true;
// Half of an upload, then the link is gone.
const probe = await relay(null);
await flash({ board, port: `tcp://127.0.0.1:${RELAY_PORT}`, device: deviceFile(first, 'first-again.json'), start: false }, () => {}).catch(
  () => {},
);
const size = probe.sent().length;
await probe.close();
const cutter = await relay(Math.floor(size / 2));
const cut = await flash({ board, port: `tcp://127.0.0.1:${RELAY_PORT}`, device: deviceFile(second, 'second.json') }, () => {}).then(
  () => 'completed',
  (e: unknown) => message(e),
);
await cutter.close();
const files = await runEspruino({ port, script: 'print("E4L "+JSON.stringify(require("Storage").list()));\n' });
const listed: unknown = JSON.parse(tagged(files.lines, 'E4L')[0] || '[]');
const list: string[] = Array.isArray(listed) ? listed.map(String) : [];
console.log(`CUT at ${Math.floor(size / 2)} of ${size} bytes: ${cut}; Storage: ${list.join(' ')}`);
ok =
  ok &&
  /its old configuration and keys/.test(cut) &&
  !list.includes('e4.js') &&
  list.includes('e4.json') &&
  list.some((f) => /^e4s[01]$/.test(f));
const kept = await flash({ board, port, 'keep-state': true }, () => {}).then(
  (r) => r.status,
  (e: unknown) => ({ error: message(e) }),
);
console.log(`KEPT ${JSON.stringify(kept)} expected e4/${first.id}`);
ok = ok && !!kept && 'ok' in kept && kept.ok && kept.controlTopic === `e4/${first.id}`;
try {
  const r = await flash({ board, port, device: deviceFile(second, 'second.json') }, log);
  const one = logs.some((l) => /room for one image only/.test(l));
  console.log(
    `SECOND ${one ? 'one-slot' : 'two-slot'} ${r && r.status ? JSON.stringify({ ok: r.status.ok, ctl: r.status.controlTopic }) : 'no status'} expected e4/${second.id}`,
  );
  process.exitCode = ok && one && r.status && r.status.ok && r.status.controlTopic === `e4/${second.id}` ? 0 : 1;
} catch (e) {
  console.log('SECOND failed ' + message(e) + '\n' + logs.join('\n'));
  process.exitCode = 1;
}
