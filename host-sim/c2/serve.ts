/**
 * `e4-c2 serve`: the C2 as a long-running service. It opens the database once (
 * the passphrase is read once and Argon2id runs once), keeps an MQTT connection to the broker
 * (commands out, data topics observed to see which key generation each publisher uses), answers
 * the HTTP API and serves the dashboard, and runs the automation rules every second.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import type { C2 } from './c2.ts';
import { createApi } from './api.ts';
import { ServiceError, asServiceError } from './errors.ts';
import { Service, type E4 } from './service.ts';
import { asRow, text } from './tables.ts';
import { isLoopback, type Listen } from './listen.ts';

export interface ServeOptions {
  c2: C2;
  e4: E4;
  listen: Listen;
  broker?: string | undefined;
  version: string;
  log: (line: string) => void;
  /** How often timed rules are checked (ms). */
  tickMs?: number;
}

export interface Running {
  url: string;
  service: Service;
  close(): Promise<void>;
}

/** The broker connection: commands published with QoS 2, managed topics watched. Reconnects. */
function connectBroker(
  url: string,
  service: Service,
  c2: C2,
  log: (line: string) => void,
): { client: MqttClient; state: () => 'connected' | 'disconnected' } {
  const client = mqtt.connect(url, {
    clientId: 'e4-c2-serve-' + randomBytes(6).toString('hex'),
    clean: true,
    reconnectPeriod: 2000,
    connectTimeout: 5000,
  });
  const publish = async (topic: string, bytes: Uint8Array) => {
    // Refuse at once while disconnected: mqtt.js would keep the message and send it late, after
    // the C2 already counted it as not acknowledged.
    if (!client.connected) throw new Error('not connected to the broker');
    return client.publishAsync(topic, Buffer.from(bytes), { qos: 2 });
  };
  const watched = new Set<string>();
  const watch = (topics: string[]) => {
    const fresh = topics.filter((t) => !watched.has(t));
    if (!fresh.length || !client.connected) return;
    for (const t of fresh) watched.add(t);
    client.subscribeAsync(fresh, { qos: 1 }).catch((e: unknown) => {
      for (const t of fresh) watched.delete(t);
      log(`cannot watch ${fresh.join(', ')}: ${asServiceError(e).message}`);
    });
  };
  client.on('connect', () => {
    log(`connected to the broker ${url}`);
    c2.setSend(service.sender(publish));
    watched.clear();
    service
      .list()
      .then((l) => {
        const topics = Array.isArray(l['topics']) ? l['topics'].map((t: unknown) => text(asRow(t), 'topic')) : [];
        watch(topics);
      })
      .catch((e: unknown) => log(`cannot list topics to watch: ${asServiceError(e).message}`));
    // Commands queued while the broker was away go out now (the retry rule, if any, keeps trying).
    service.flush().catch((e: unknown) => log(`flush after connecting failed: ${asServiceError(e).message}`));
  });
  client.on('close', () => {
    if (watched.size) log(`lost the broker ${url}; commands are queued until it is back`);
    watched.clear();
  });
  client.on('error', (e) => log(`broker: ${e.message}`));
  client.on('message', (topic, payload) => {
    if (topic.startsWith('e4/')) return;
    service.observe(topic, new Uint8Array(payload)).catch((e: unknown) => log(`observing ${topic}: ${asServiceError(e).message}`));
  });
  service.events.subscribe((e) => {
    if (e.kind === 'topic-added' && e.topic) watch([e.topic]);
  });
  return { client, state: () => (client.connected ? 'connected' : 'disconnected') };
}

export async function startServe(opts: ServeOptions): Promise<Running> {
  const { c2, log } = opts;
  const service = await Service.start({ c2, e4: opts.e4 });
  const broker = opts.broker ? connectBroker(opts.broker, service, c2, log) : null;
  const server = http.createServer(createApi({ service, version: opts.version, broker: () => (broker ? broker.state() : 'none') }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new ServiceError('IO', `cannot listen on ${opts.listen.host}:${opts.listen.port}: ${e.message}`)));
    server.listen(opts.listen.port, opts.listen.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;
  if (!isLoopback(opts.listen.host))
    log(`warning: listening beyond loopback (${opts.listen.host}): the API is plain HTTP; put a TLS proxy in front of it`);
  let ticking = false;
  const ticker = setInterval(() => {
    if (ticking) return;
    ticking = true;
    service
      .tick()
      .catch((e: unknown) => log(`rules: ${asServiceError(e).message}`))
      .finally(() => {
        ticking = false;
      });
  }, opts.tickMs ?? 1000);
  return {
    url,
    service,
    async close() {
      clearInterval(ticker);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      if (broker) await broker.client.endAsync().catch(() => undefined);
      await service.close();
    },
  };
}
