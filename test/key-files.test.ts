/**
 * Files the host tools write that hold keys are readable by their owner only (mode 0600): the
 * simulator's and the proxy's flash file, from its first commit and after every rewrite.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SimDevice } from '../host-sim/shared/device.ts';
import { flashStore } from '../host-sim/shared/hal.ts';
import { image, tempDir } from './support/sim.ts';

const hex32 = (v: number) => Buffer.alloc(32, v).toString('hex');

describe('key files', () => {
  it('a flash file is created with mode 0600 and keeps it when rewritten', async () => {
    const tmp = tempDir('e4-keyfile-');
    try {
      const file = join(tmp.dir, 'proxy.flash');
      const dev = new SimDevice({
        image: image(),
        config: { name: 'key-file', key: hex32(3), topics: [{ topic: 'a/b', key: hex32(4) }] },
        store: flashStore({ file }),
      });
      await dev.start();
      expect(statSync(file).mode & 0o777).toBe(0o600);
      await dev.stop();
      await dev.start(); // boots again on the same file and rewrites nothing it needn't
      expect(statSync(file).mode & 0o777).toBe(0o600);
      await dev.stop();
    } finally {
      tmp.remove();
    }
  });
});
