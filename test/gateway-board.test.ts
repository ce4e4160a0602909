/**
 * The gateway with the real Puck.js board image (dist/boards/espruino-puckjs.min.js, flashed into
 * an emulated Espruino board by the flash tool's own script): the board's link over BLE UART,
 * through host-sim/services/gateway.ts, to a broker and a phone application; C2 commands back through it;
 * a power cycle in the middle.
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { boardLink, boardRunner } from '../host-sim/sim/board-link.ts';
import { SimDevice } from '../host-sim/shared/device.ts';
import { imageDevice } from '../host-sim/sim/espruino-board.ts';
import type { E4Error } from '../firmware/errors';
import { Gateway, loadImageCodec } from '../host-sim/services/gateway.ts';
import { brokerKinds, brokerPerSuite, flashedPuck, image, observer, PUCK_IMAGE, until } from './support/sim.ts';

const TOPIC = 'health/heart-rate';
// `npm test` builds every image first: a missing one is a failure, never a skip.
if (!existsSync(PUCK_IMAGE)) throw new Error(`${PUCK_IMAGE} not built: run npm run build`);

describe.each(brokerKinds())('gateway and the Puck.js image over %s', (kind) => {
  const suite = brokerPerSuite(kind);
  const cleanup = suite.cleanup;

  it('publishes through the gateway, takes C2 commands through it, and survives a power cycle', async () => {
    const obs = await observer(suite.broker.url);
    cleanup.push(() => obs.close());
    const { c2 } = await suite.c2({ send: false });
    // The Puck.js image and its device.json flashed the way `npm run flash` does, and booted.
    const flashed = await flashedPuck(c2, TOPIC);
    const { cfg, board } = flashed;
    let E4 = flashed.E4;
    expect(E4.status()).toMatchObject({ ok: true, controlTopic: 'e4/' + cfg.id });
    const runner = boardRunner(board);
    cleanup.push(async () => runner.stop());

    const gw = new Gateway({ broker: suite.broker.url, codec: loadImageCodec(), ackTimeoutMs: 300 });
    await gw.start();
    cleanup.push(() => gw.stop());
    const events: string[] = [];
    const connect = () => {
      const d = imageDevice(E4);
      d.on('command', () => events.push('command'));
      d.on('error', (e: E4Error) => events.push(e.result));
      const link = boardLink(board, 'Bluetooth');
      gw.attach(link, { name: 'puck', consoleLine: 'E4.gateway()' });
      return link;
    };
    const link = connect();
    await until(() => imageDevice(E4).connected && [...gw.links][0]?.filters.has('e4/' + cfg.id), 5000, 'the Puck.js link handshake');
    expect([...gw.links][0].id).toBe(cfg.id);

    const phone = new SimDevice({ image: image(), config: await c2.deviceConfig('phone'), network: suite.broker.url, subscribe: [TOPIC] });
    await phone.start();
    cleanup.push(() => phone.stop());
    const got: string[] = [];
    phone.on('data', (e: { payload: Buffer }) => got.push(e.payload.toString()));

    // The queued grants go out: the Puck.js gets its command through the gateway (calibration).
    c2.enableSend();
    await c2.flush();
    await until(() => events.includes('command'), 5000, 'the grant at the Puck.js');
    imageDevice(E4).publish(TOPIC, '{"bpm":71,"n":1}');
    await until(() => got.length === 1, 5000, 'the first reading at the phone');
    expect(got).toEqual(['{"bpm":71,"n":1}']);

    // Rotation, consumers first; the Puck.js applies its command, arriving over the gateway.
    const before = events.filter((e) => e === 'command').length;
    await c2.rotateTopic(TOPIC);
    await until(() => events.filter((e) => e === 'command').length === before + 1, 5000, 'the rotation at the Puck.js');
    const after = (await c2.list()).topics[0].gen;
    expect(after).toBe(1);

    // Power cycle: the BLE connection drops; the image boots from Storage and reconnects.
    link.close();
    E4 = board.powerCycle();
    connect();
    await until(() => imageDevice(E4).connected, 5000, 'the link after the power cycle');
    const seenBefore = obs.seen.filter((s) => s.topic === TOPIC).length;
    imageDevice(E4).publish(TOPIC, '{"bpm":73,"n":2}');
    await until(() => got.length === 2, 5000, 'a reading after the power cycle');
    await until(() => obs.seen.filter((s) => s.topic === TOPIC).length > seenBefore, 5000, 'that reading at the observer');
    expect(got[1]).toBe('{"bpm":73,"n":2}');
    // Under the new key: the C2 opens it with generation 1.
    const last = obs.seen.filter((s) => s.topic === TOPIC).at(-1);
    if (!last) throw new Error('no reading at the observer');
    expect(await c2.observe(TOPIC, new Uint8Array(last.payload))).toMatchObject({ gen: 1, current: true });
    for (const s of obs.seen) expect(s.payload.includes('bpm')).toBe(false);
  });
});
