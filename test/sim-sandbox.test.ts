/**
 * The simulator's device realm and stub HAL (host-sim/shared/image.ts, hal.ts, device.ts): the
 * image's bytes are checked by hash, run with only what a device engine has, over a flash that
 * survives power cycles and fails on demand.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeDeviceConfig } from '../host-sim/shared/device-config.ts';
import { SimDevice } from '../host-sim/shared/device.ts';
import { flashStore, makeClock, parseClock, virtualTime } from '../host-sim/shared/hal.ts';
import { createSandbox, loadImage } from '../host-sim/shared/image.ts';
import { IMAGE_PATH, image, tempDir } from './support/sim.ts';

const img = image();

describe('image loading', () => {
  it('reports the SHA-256 of the exact bytes and refuses bytes that do not match', () => {
    expect(img.sha256).toBe(createHash('sha256').update(readFileSync(IMAGE_PATH)).digest('hex'));
    expect(() => loadImage(IMAGE_PATH, { expectSha256: '00'.repeat(32) })).toThrow(/does not match/);
    const t = tempDir();
    try {
      const copy = join(t.dir, 'e4.js');
      copyFileSync(IMAGE_PATH, copy);
      writeFileSync(join(t.dir, 'size.json'), JSON.stringify({ images: [{ file: 'e4.js', bytes: img.size, sha256: img.sha256 }] }));
      expect(loadImage(copy).check).toBe('size.json');
      writeFileSync(copy, readFileSync(copy, 'utf8') + '\n/* one more byte */');
      expect(() => loadImage(copy)).toThrow(/sha256 .* does not match/);
      expect(() => loadImage(join(t.dir, 'missing.js'))).toThrow(/npm run build/);
    } finally {
      t.remove();
    }
  });
});

describe('device sandbox', () => {
  it('holds only ES5 with typed arrays, print and log', () => {
    const printed: string[] = [];
    const sb = createSandbox(img, { print: (s) => printed.push(s) });
    for (const g of [
      'Map',
      'Set',
      'WeakMap',
      'Promise',
      'Proxy',
      'Reflect',
      'Symbol',
      'BigInt',
      'TextEncoder',
      'TextDecoder',
      'console',
      'WebAssembly',
      'Intl',
      'SharedArrayBuffer',
      'require',
      'process',
      'setTimeout',
    ]) {
      expect(sb.run(`typeof ${g}`), g).toBe('undefined');
    }
    for (const m of [
      'Array.from',
      'Object.assign',
      'Uint8Array.from',
      'Uint8Array.prototype.slice',
      'Uint8Array.prototype.fill',
      'Math.imul',
      'ArrayBuffer.isView',
    ]) {
      expect(sb.run(`typeof ${m}`), m).toBe('undefined');
    }
    for (const ok of ['Uint8Array', 'DataView', 'JSON', 'Math.floor', 'Uint8Array.prototype.subarray', 'Uint8Array.prototype.set'])
      expect(sb.run(`typeof ${ok}`), ok).not.toBe('undefined');
    expect(() => sb.run('Function("return 1")()')).toThrow(/Code generation from strings disallowed/);
    sb.run('print("hello", 42)');
    expect(printed).toEqual(['hello 42']);
    expect(sb.run('typeof E4.create')).toBe('function');
  });

  it('isolates devices from each other and from the host', () => {
    const a = createSandbox(img);
    const b = createSandbox(img);
    a.run('globalThis.leak = 1; E4.version = "tampered"');
    expect(b.run('typeof leak')).toBe('undefined');
    expect(b.E4.version).not.toBe('tampered');
    expect(a.run('Object.getPrototypeOf(Uint8Array)')).not.toBe(Object.getPrototypeOf(Uint8Array));
    expect(Reflect.get(globalThis, 'leak')).toBeUndefined();
  });

  it('runs the image over host bytes converted into the realm (the core checks instanceof)', () => {
    const sb = createSandbox(img);
    const cfg = makeDeviceConfig({ name: 'x', topics: ['t/1'] });
    const c = sb.E4.create({ vault: sb.E4.vault() }, cfg);
    const m = sb.bytesOut(c.protect('t/1', 'hi'));
    expect(Buffer.isBuffer(m)).toBe(true);
    expect(() => c.unprotect('t/1', new Uint8Array(m))).toThrow(/PARAMETER_INVALID/); // a host array is foreign there
    const plaintext = c.unprotect('t/1', sb.bytesIn(m));
    if (!plaintext) throw new Error('a data message was taken for a command');
    expect(sb.bytesOut(plaintext).toString()).toBe('hi');
  });
});

describe('stub HAL', () => {
  it('parses clock modes and rejects anything else', () => {
    expect(parseClock('skewed:-90')).toEqual({ mode: 'skewed', skew: -90 });
    expect(() => parseClock('sundial')).toThrow(/bad clock/);
    const w = virtualTime(1_800_000_000);
    expect(makeClock('trusted', w)?.now()).toBe(1_800_000_000);
    expect(makeClock('skewed:+30', w)).toMatchObject({ kind: 'untrusted' });
    expect(makeClock('skewed:+30', w)?.now()).toBe(1_800_000_030);
    const mono = makeClock('monotonic', w);
    w.advance(7);
    expect(mono?.now()).toBe(7);
    expect(makeClock('none', w)).toBeUndefined();
  });

  it('keeps flash across power cycles, erases replaced keys from it, and fails on demand without changing state', async () => {
    const t = tempDir();
    try {
      const store = flashStore({ file: join(t.dir, 'dev.flash') });
      const cfg = makeDeviceConfig({ name: 'd', topics: ['a/b'] });
      const dev = new SimDevice({ image: img, config: cfg, store, clock: 'none' });
      await dev.start();
      const hash = cfg.topics[0].hash;
      expect(store.contains(Buffer.from(cfg.topics[0].key, 'hex'))).toBe(true);
      dev.client!.setTopicKey({ hash }, 'ab'.repeat(32)); // on: start() made the client
      expect(store.contains(Buffer.from(cfg.topics[0].key, 'hex'))).toBe(false);
      // An injected write failure: PERSISTENCE_ERROR, and the key in force is unchanged.
      store.failNext();
      expect(() => dev.client!.setTopicKey({ hash }, 'cd'.repeat(32))).toThrow(/PERSISTENCE_ERROR/);
      expect(dev.topicKey(hash)).toBe('ab'.repeat(32));
      await dev.powerCycle();
      expect(dev.topicKey(hash)).toBe('ab'.repeat(32));
      // Another process, same file.
      await dev.stop();
      const again = new SimDevice({ image: img, config: cfg, store: flashStore({ file: join(t.dir, 'dev.flash') }), clock: 'none' });
      await again.start();
      expect(again.topicKey(hash)).toBe('ab'.repeat(32));
      await again.stop();
      // A damaged medium is refused, never half-loaded.
      store.corrupt();
      const broken = new SimDevice({ image: img, config: cfg, store, clock: 'none' });
      await expect(broken.start()).rejects.toMatchObject({ result: 'E4_ERROR_PERSISTENCE_INCOMPATIBLE' });
    } finally {
      t.remove();
    }
  });

  it('shared-image mode: many clients in one sandbox stay separate devices', async () => {
    const realm = createSandbox(img);
    const devs = [];
    for (let i = 0; i < 5; i++) {
      const d = new SimDevice({ realm, config: makeDeviceConfig({ name: `s${i}`, topics: ['x/y'] }) });
      await d.start();
      devs.push(d);
    }
    expect(new Set(devs.map((d) => d.id)).size).toBe(5);
    const m = devs[0].protect('x/y', 'only mine');
    expect(devs[1].deliver('x/y', m)).toMatchObject({ kind: 'rejected', result: 'E4_ERROR_INVALID_TAG' });
    for (const d of devs) await d.stop();
  });
});
