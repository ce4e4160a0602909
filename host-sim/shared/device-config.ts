/**
 * device.json (format "e4-device", version 1; see docs/c2.md): reading and checking the files the
 * C2 writes, and making such configurations directly for tests and benchmarks (ids and topic
 * hashes are computed on the host, so devices never need SHA-3 for what they are provisioned with).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { sha3_256 } from '@noble/hashes/sha3.js';
import { parseClock } from './hal.ts';

const HEX = (n) => new RegExp(`^[0-9a-fA-F]{${2 * n}}$`);
const ID = HEX(16);
const KEY = HEX(32);

export const hex = (b) => Buffer.from(b).toString('hex');

/** First 16 bytes of SHA3-256 of the UTF-8 text: client ids and topic hashes. */
export function sha3_16(text) {
  return hex(sha3_256(new TextEncoder().encode(text)).subarray(0, 16));
}

export function newKey() {
  return randomBytes(32).toString('hex');
}

/** A device configuration with id, key and topic hashes filled in. topics: names or {topic, key}. */
export function makeDeviceConfig({ name, id, key = newKey(), topics = [], clock, options, transport } = {}) {
  const cfg = { format: 'e4-device', version: 1 };
  if (name !== undefined) cfg.name = name;
  cfg.id = id || sha3_16(name);
  cfg.key = key;
  cfg.topics = topics.map((t) => {
    const o = typeof t === 'string' ? { topic: t } : t;
    return { topic: o.topic, hash: o.hash || sha3_16(o.topic), key: o.key || newKey() };
  });
  if (options) cfg.options = options;
  if (clock) cfg.clock = clock;
  if (transport) cfg.transport = transport;
  return checkDeviceConfig(cfg);
}

/** Throws a clear error when `cfg` is not a usable device.json; returns it. */
export function checkDeviceConfig(cfg, where = 'device config') {
  const bad = (m) => {
    throw new Error(`${where}: ${m}`);
  };
  if (!cfg || typeof cfg !== 'object') bad('not a JSON object');
  if (cfg.format !== undefined && cfg.format !== 'e4-device') bad(`format is "${cfg.format}", expected "e4-device"`);
  if (cfg.version !== undefined && cfg.version !== 1) bad(`version ${cfg.version} is not supported (1)`);
  if (cfg.id !== undefined && !ID.test(cfg.id)) bad('id must be 32 hex digits');
  if (cfg.id === undefined && typeof cfg.name !== 'string') bad('needs an id or a name');
  if (!KEY.test(cfg.key || '')) bad('key must be 64 hex digits');
  if (!Array.isArray(cfg.topics || [])) bad('topics must be a list');
  for (const t of cfg.topics || []) {
    if (!t || !KEY.test(t.key || '')) bad('every topic needs a 64-hex-digit key');
    if (t.hash !== undefined && !ID.test(t.hash)) bad(`topic ${t.topic ?? '?'}: hash must be 32 hex digits`);
    if (t.hash === undefined && typeof t.topic !== 'string') bad('every topic needs a topic or a hash');
  }
  if (cfg.clock !== undefined) parseClock(cfg.clock);
  return cfg;
}

export function readDeviceConfig(file) {
  let cfg;
  try {
    cfg = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
  }
  return checkDeviceConfig(cfg, file);
}
