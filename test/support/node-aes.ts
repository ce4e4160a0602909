/** AES block primitives from node:crypto, to run the generic SIV (firmware/crypto/siv.ts) in tests. */
import { createCipheriv } from 'node:crypto';
import type { AesBlock } from '../../firmware/hal';
import type { CbcBlock } from '../../boards/espruino/native-siv';

function run(mode: 'ecb' | 'cbc', key: Uint8Array, data: Uint8Array): Uint8Array {
  const c = createCipheriv(`aes-${key.length * 8}-${mode}`, key, mode === 'ecb' ? null : Buffer.alloc(16));
  c.setAutoPadding(false);
  return Uint8Array.from(Buffer.concat([c.update(data), c.final()]));
}

/** ECB and CBC: CMAC in one call per message. */
export const nodeAesCbc: CbcBlock = { ecb: (k, d) => run('ecb', k, d), cbc: (k, d) => run('cbc', k, d) };
/** ECB only: CMAC block by block. */
export const nodeAesEcb: AesBlock = { ecb: (k, d) => run('ecb', k, d) };
