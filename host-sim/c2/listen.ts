/** Where `e4-c2 serve` listens: loopback unless told otherwise. */
import { ServiceError } from './errors.ts';

export const DEFAULT_LISTEN = '127.0.0.1:8440';

export interface Listen {
  host: string;
  port: number;
}

/** "HOST:PORT", "[v6]:PORT" or "PORT" (loopback). */
export function parseListen(value: string): Listen {
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):)?(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port > 65535) throw new ServiceError('USAGE', `--listen must be HOST:PORT or PORT (got ${JSON.stringify(value)})`);
  const host = m[1] ? m[1].replace(/^\[|\]$/g, '') : '127.0.0.1';
  return { host, port };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
