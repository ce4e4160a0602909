/**
 * Run inside `linux-board` by test/mqtt-module.test.ts: loads boards/espruino/modules/MQTT.js into
 * the Linux Espruino over its telnet console and exercises it against an aedes broker on
 * 127.0.0.1:1884 that this script starts, stops and starts again. Prints one JSON line: what the
 * board reported (its "EV ..." lines) and what the host saw.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import mqtt from 'mqtt';
import { startBroker } from '../../host-sim/services/broker.ts';

const PORT = 1884;
const src = readFileSync(new URL('../../boards/espruino/modules/MQTT.js', import.meta.url), 'latin1');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const events: string[] = [];
let buf = '';
const consoleSock = net.connect(2323, '127.0.0.1');
await new Promise<void>((r) => consoleSock.once('connect', () => r()));
consoleSock.on('data', (d) => {
  buf += d.toString('latin1');
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i).replace(/\r$/, '');
    buf = buf.slice(i + 1);
    const at = line.indexOf('EV ');
    if (at >= 0) events.push(line.slice(at + 3));
  }
});
const send = (code: string) => consoleSock.write('\x10' + code + '\n');
const until = async (pred: (e: string) => boolean, ms = 10000): Promise<boolean> => {
  const end = Date.now() + ms;
  while (!events.some(pred) && Date.now() < end) await sleep(100);
  return events.some(pred);
};

let broker = await startBroker({ kind: 'aedes', host: '127.0.0.1', port: PORT });
const host = mqtt.connect(`mqtt://127.0.0.1:${PORT}`, { reconnectPeriod: 200 });
const seen: { topic: string; hex: string; qos: number }[] = [];
host.on('message', (topic, message, packet) => seen.push({ topic, hex: message.toString('hex'), qos: packet.qos }));
await new Promise<void>((r) => host.once('connect', () => r()));
await host.subscribeAsync('up/#', { qos: 1 });

send('var MS="";');
for (let i = 0; i < src.length; i += 600) send(`MS+=atob("${Buffer.from(src.slice(i, i + 600), 'latin1').toString('base64')}");`);
send('Modules.addCached("MQTT",MS);MS=undefined;');
send(
  'var m=require("MQTT").create("127.0.0.1",{port:' +
    PORT +
    ',keep_alive:1,client_id:"board"});' +
    'm.on("connected",function(){print("EV connected");m.subscribe("down/#",{qos:1});});' +
    'm.on("subscribed",function(s){print("EV subscribed "+s.qos);});' +
    'm.on("publish",function(p){print("EV publish "+p.topic+" "+btoa(p.message)+" "+p.qos);});' +
    'm.on("disconnected",function(){print("EV disconnected");setTimeout(function(){m.connect();},500);});' +
    'm.on("error",function(e){print("EV error "+e);});m.connect();',
);
/** What the board and the host saw, printed as the RESULT line. */
interface ModuleRun {
  subscribed: boolean;
  received?: boolean;
  published?: string[];
  keptAlive?: boolean;
  disconnected?: boolean;
  reconnected?: boolean;
  receivedAfter?: boolean;
  events?: string[];
}
const result: ModuleRun = { subscribed: await until((e) => e === 'subscribed 1') };
// QoS 1 to the board: binary payload, acknowledged.
await host.publishAsync('down/x', Buffer.from([0, 1, 0xff, 0x80, 0x41]), { qos: 1 });
result.received = await until((e) => e === `publish down/x ${Buffer.from([0, 1, 0xff, 0x80, 0x41]).toString('base64')} 1`);
// QoS 0 and 1 from the board.
send('print("EV pub "+m.publish("up/q0","\\x00\\xffzero")+" "+m.publish("up/q1","\\x00\\xffone",1));');
await until((e) => e.startsWith('pub '));
await sleep(1000);
result.published = seen.map((s) => `${s.topic} ${s.hex}`);
// Keep-alive 1 s: aedes drops a client silent for 1.5 s; after 4 s the board is still connected.
const before = events.filter((e) => e === 'disconnected').length;
await sleep(4000);
result.keptAlive = events.filter((e) => e === 'disconnected').length === before;
// The broker goes away and comes back: the board says so and connects again.
await broker.close();
result.disconnected = await until((e) => e === 'disconnected');
await sleep(1500);
broker = await startBroker({ kind: 'aedes', host: '127.0.0.1', port: PORT });
const connects = () => events.filter((e) => e === 'connected').length;
const end = Date.now() + 15000;
while (connects() < 2 && Date.now() < end) await sleep(200);
result.reconnected = connects() >= 2;
await sleep(1000);
await host.publishAsync('down/y', Buffer.from('again'), { qos: 1 });
result.receivedAfter = await until((e) => e === `publish down/y ${Buffer.from('again').toString('base64')} 1`);
result.events = events;
console.log('RESULT ' + JSON.stringify(result));
host.end(true);
consoleSock.destroy();
await broker.close();
process.exit(0);
