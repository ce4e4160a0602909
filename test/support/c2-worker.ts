/**
 * A C2 process for the concurrency and crash tests (test/c2.test.ts): opens the database given
 * in its JSON argument, runs the operations listed there, and "publishes" each command by
 * appending it to a file (one JSON line: control topic, bytes in hex, this process's pid), after
 * an optional delay. Prints `sent N` after each publish and `done` at the end, so a test can
 * kill it at a chosen point.
 */
import fs from 'node:fs';
import * as E4 from '../../firmware/index.ts';
import { openC2 } from '../../host-sim/c2/c2.ts';

interface Job {
  db: string;
  passphrase: string;
  log: string;
  delayMs?: number;
  concurrency?: number;
  ackBatch?: number;
  ops: (['rotate-topic', string] | ['rotate-device-key', string] | ['grant', string, string] | ['flush'])[];
}

const job = JSON.parse(process.argv[2] ?? '{}') as Job; // written by the test itself
let sent = 0;
const c2 = await openC2({
  dbPath: job.db,
  passphrase: job.passphrase,
  e4: E4,
  concurrency: job.concurrency ?? 16,
  ackBatch: job.ackBatch ?? 2000,
  send: async (topic, bytes) => {
    if (job.delayMs) await new Promise((r) => setTimeout(r, job.delayMs));
    fs.appendFileSync(job.log, JSON.stringify({ topic, hex: Buffer.from(bytes).toString('hex'), pid: process.pid }) + '\n');
    process.stdout.write(`sent ${++sent}\n`);
  },
});
for (const op of job.ops) {
  if (op[0] === 'rotate-topic') await c2.rotateTopic(op[1]);
  else if (op[0] === 'rotate-device-key') await c2.rotateDeviceKey(op[1]);
  else if (op[0] === 'grant') await c2.grant(op[1], op[2]);
  else await c2.flush();
}
await c2.close();
process.stdout.write('done\n');
