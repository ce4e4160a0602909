/**
 * device.json (format "e4-device", version 1; see docs/c2.md): reading and checking the files the
 * C2 writes, and making such configurations directly for tests and benchmarks (ids and topic
 * hashes are computed on the host, so devices never need SHA-3 for what they are provisioned with).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { sha3_256 } from '@noble/hashes/sha3.js';
import type { DeviceFile, TopicEntry } from '../../boards/espruino/boot.ts';
import type { Options } from '../../firmware/client.ts';
import { parseClock } from './hal.ts';

export type { DeviceFile, TopicEntry };

/** A topic entry with its key (checkDeviceConfig requires one for every topic). */
export interface KeyedTopicEntry extends TopicEntry {
  key: string;
}

/** A device file that holds its keys: what checkDeviceConfig accepts. */
export interface KeyedDeviceFile extends DeviceFile {
  key: string;
  topics?: KeyedTopicEntry[];
}

/** What makeDeviceConfig returns: id, key, and every topic's name, hash and key filled in. */
export interface MadeDeviceFile extends KeyedDeviceFile {
  format: 'e4-device';
  version: 1;
  id: string;
  topics: (KeyedTopicEntry & { topic: string; hash: string })[];
}

/** makeDeviceConfig's input: a name (the id is derived from it) or an id, and topics by name. */
export interface DeviceConfigSpec {
  name?: string;
  id?: string;
  key?: string;
  /** Topic names, or { topic, key?, hash? } (missing keys are made, missing hashes computed). */
  topics?: (string | { topic: string; key?: string; hash?: string })[];
  clock?: string;
  options?: Options;
  transport?: DeviceFile['transport'];
}

const HEX = (n: number) => new RegExp(`^[0-9a-fA-F]{${2 * n}}$`);
const ID = HEX(16);
const KEY = HEX(32);

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** First 16 bytes of SHA3-256 of the UTF-8 text: client ids and topic hashes. */
export function sha3_16(text: string): string {
  return hex(sha3_256(new TextEncoder().encode(text)).subarray(0, 16));
}

export function newKey(): string {
  return randomBytes(32).toString('hex');
}

/** A device configuration with id, key and topic hashes filled in. topics: names or {topic, key}. */
export function makeDeviceConfig({
  name,
  id,
  key = newKey(),
  topics = [],
  clock,
  options,
  transport,
}: DeviceConfigSpec = {}): MadeDeviceFile {
  const cfg: MadeDeviceFile = {
    format: 'e4-device',
    version: 1,
    ...(name !== undefined ? { name } : {}),
    id: id || sha3_16(name ?? ''),
    key,
    topics: topics.map((t) => {
      const o = typeof t === 'string' ? { topic: t } : t;
      return { topic: o.topic, hash: o.hash || sha3_16(o.topic), key: o.key || newKey() };
    }),
  };
  if (options) cfg.options = options;
  if (clock) cfg.clock = clock;
  if (transport) cfg.transport = transport;
  checkDeviceConfig(cfg);
  return cfg;
}

/** Throws a clear error when `cfg` is not a usable device.json; returns it. */
export function checkDeviceConfig(value: unknown, where = 'device config'): KeyedDeviceFile {
  const bad = (m: string): never => {
    throw new Error(`${where}: ${m}`);
  };
  if (!value || typeof value !== 'object') return bad('not a JSON object');
  const cfg = value as Record<string, unknown>;
  const text = (v: unknown): string => (typeof v === 'string' ? v : '');
  if (cfg.format !== undefined && cfg.format !== 'e4-device') bad(`format is "${cfg.format}", expected "e4-device"`);
  if (cfg.version !== undefined && cfg.version !== 1) bad(`version ${cfg.version} is not supported (1)`);
  if (cfg.id !== undefined && !ID.test(text(cfg.id))) bad('id must be 32 hex digits');
  if (cfg.id === undefined && typeof cfg.name !== 'string') bad('needs an id or a name');
  if (!KEY.test(text(cfg.key))) bad('key must be 64 hex digits');
  const topics = cfg.topics || [];
  if (!Array.isArray(topics)) return bad('topics must be a list');
  for (const t of topics as unknown[]) {
    const e = (t && typeof t === 'object' ? t : {}) as Record<string, unknown>;
    if (!t || !KEY.test(text(e.key))) bad('every topic needs a 64-hex-digit key');
    if (e.hash !== undefined && !ID.test(text(e.hash))) bad(`topic ${e.topic ?? '?'}: hash must be 32 hex digits`);
    if (e.hash === undefined && typeof e.topic !== 'string') bad('every topic needs a topic or a hash');
  }
  if (cfg.clock !== undefined) parseClock(typeof cfg.clock === 'string' ? cfg.clock : bad('clock must be a string'));
  // Every field a device reads was checked above.
  return value as KeyedDeviceFile;
}

export function readDeviceConfig(file: string): KeyedDeviceFile {
  let cfg: unknown;
  try {
    cfg = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    const err = e as NodeJS.ErrnoException; // readFileSync and JSON.parse throw Errors
    throw new Error(`${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`, { cause: e });
  }
  return checkDeviceConfig(cfg, file);
}
