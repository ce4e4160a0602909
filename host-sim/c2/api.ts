/**
 * The HTTP JSON API of `e4-c2 serve` (node:http: a dozen routes need no framework). Every CLI
 * command is `POST /api/<command>` with its arguments as a JSON object (`list` is a GET), plus
 * protect/unprotect for integrations, rules, tokens, a health check and a server-sent event
 * stream. Every route but the health check and the dashboard's static files needs
 * `Authorization: Bearer <token>`. Errors are `{ "error": { "code", "message" } }` with the status
 * of errors.ts; a refused call changes nothing. Bytes travel as base64. See docs/c2.md.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { ROLES, type Role } from './c2.ts';
import { HTTP_STATUS, ServiceError, asServiceError } from './errors.ts';
import type { C2Event } from './events.ts';
import type { RuleRequest } from './rules.ts';
import type { DeviceSpec, Service } from './service.ts';

/** Request bodies are small: a device file's options at most. */
export const MAX_BODY = 64 * 1024;
const DASHBOARD_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'dashboard');
const STATIC: Readonly<Record<string, { file: string; type: string }>> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard.js': { file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard.css': { file: 'dashboard.css', type: 'text/css; charset=utf-8' },
};
const CLOCKS = ['trusted', 'untrusted', 'monotonic', 'none'];

export interface ApiOptions {
  service: Service;
  version: string;
  /** The MQTT connection's state, for the health check. */
  broker: () => 'connected' | 'disconnected' | 'none';
}

/** A JSON object body with the fields a route allows; each read checks the type. */
export class Body {
  constructor(
    private readonly v: Record<string, unknown>,
    allowed: readonly string[],
  ) {
    for (const k of Object.keys(v)) {
      if (!allowed.includes(k))
        throw new ServiceError(
          'USAGE',
          `unknown field ${JSON.stringify(k)}${allowed.length ? ` (allowed: ${allowed.join(', ')})` : ' (this call takes none)'}`,
        );
    }
  }

  has(k: string): boolean {
    return this.v[k] !== undefined;
  }

  raw(k: string): unknown {
    return this.v[k];
  }

  str(k: string): string {
    const s = this.v[k];
    if (s === undefined) throw new ServiceError('USAGE', `field ${k} is required`);
    if (typeof s !== 'string' || s === '') throw new ServiceError('USAGE', `field ${k} must be a non-empty string`);
    return s;
  }

  optStr(k: string): string | undefined {
    return this.has(k) ? this.str(k) : undefined;
  }

  bool(k: string): boolean {
    const b = this.v[k];
    if (b === undefined) return false;
    if (typeof b !== 'boolean') throw new ServiceError('USAGE', `field ${k} must be true or false`);
    return b;
  }

  bytes(k: string): Uint8Array {
    const s = this.str(k);
    if (s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw new ServiceError('USAGE', `field ${k} must be base64`);
    return new Uint8Array(Buffer.from(s, 'base64'));
  }

  obj(k: string): Record<string, unknown> | undefined {
    const o = this.v[k];
    if (o === undefined) return undefined;
    if (!o || typeof o !== 'object' || Array.isArray(o)) throw new ServiceError('USAGE', `field ${k} must be an object`);
    return o as Record<string, unknown>;
  }
}

async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY) throw new ServiceError('TOO_LARGE', `request bodies are at most ${MAX_BODY} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += b.length;
    if (size > MAX_BODY) throw new ServiceError('TOO_LARGE', `request bodies are at most ${MAX_BODY} bytes`);
    chunks.push(b);
  }
  const textBody = Buffer.concat(chunks).toString('utf8');
  if (textBody.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(textBody);
  } catch (e) {
    throw new ServiceError('BAD_JSON', `the body is not JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ServiceError('BAD_JSON', 'the body must be a JSON object');
  return parsed as Record<string, unknown>;
}

function send(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v));
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(body + '\n');
}

export function sendError(res: ServerResponse, e: unknown): void {
  const err = asServiceError(e);
  const headers: Record<string, string> = {};
  if (err.code === 'UNAUTHORIZED') headers['www-authenticate'] = 'Bearer realm="e4-c2"';
  if (res.headersSent) {
    res.end();
    return;
  }
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  send(res, HTTP_STATUS[err.code], { error: { code: err.code, message: err.message } });
}

type Handler = (body: Body, s: Service) => Promise<unknown>;
interface Route {
  fields: readonly string[];
  run: Handler;
}

function deviceSpec(b: Body): DeviceSpec {
  if (b.has('name') === b.has('id')) throw new ServiceError('USAGE', 'add-device needs exactly one of name or id');
  if (b.has('id')) {
    const id = b.str('id');
    if (!/^[0-9a-fA-F]{32}$/.test(id)) throw new ServiceError('USAGE', 'id must be 32 hex digits');
    return { id };
  }
  return { name: b.str('name') };
}

function role(b: Body): Role {
  const r = b.optStr('role') ?? 'both';
  const found = ROLES.find((x) => x === r);
  if (!found) throw new ServiceError('USAGE', 'role must be pub, sub or both');
  return found;
}

/** POST /api/<name>: the CLI's commands, then the integration and management calls. */
const POST: Readonly<Record<string, Route>> = {
  'add-device': { fields: ['name', 'id'], run: (b, s) => s.addDevice(deviceSpec(b)) },
  'add-topic': { fields: ['topic'], run: (b, s) => s.addTopic(b.str('topic')) },
  grant: { fields: ['device', 'topic', 'role'], run: (b, s) => s.grant(b.str('device'), b.str('topic'), role(b)) },
  revoke: { fields: ['device', 'topic', 'rotate'], run: (b, s) => s.revoke(b.str('device'), b.str('topic'), b.bool('rotate')) },
  'rotate-topic': { fields: ['topic'], run: (b, s) => s.rotateTopic(b.str('topic')) },
  'rotate-device-key': { fields: ['device'], run: (b, s) => s.rotateDeviceKey(b.str('device')) },
  'reset-device': { fields: ['device'], run: (b, s) => s.resetDevice(b.str('device')) },
  flush: { fields: [], run: (_b, s) => s.flush() },
  device: { fields: ['device'], run: (b, s) => s.device(b.str('device')) },
  config: {
    fields: ['device', 'clock', 'transport'],
    run: (b, s) => {
      const clock = b.optStr('clock');
      if (clock !== undefined && !CLOCKS.includes(clock)) throw new ServiceError('USAGE', `clock must be one of ${CLOCKS.join(', ')}`);
      const transport = b.obj('transport');
      return s.config(b.str('device'), { ...(clock ? { clock } : {}), ...(transport ? { transport } : {}) });
    },
  },
  export: { fields: ['device'], run: async (b, s) => ({ device: b.str('device'), e41p: await s.exportE41P(b.str('device')) }) },
  protect: { fields: ['topic', 'payload'], run: (b, s) => s.protect(b.str('topic'), b.bytes('payload')) },
  unprotect: { fields: ['topic', 'message'], run: (b, s) => s.unprotect(b.str('topic'), b.bytes('message')) },
  'rules/add': {
    fields: ['kind', 'target', 'every', 'base', 'max'],
    run: (b, s) => {
      const req: RuleRequest = {};
      for (const k of ['kind', 'target', 'every', 'base', 'max'] as const) if (b.has(k)) req[k] = b.raw(k);
      return s.addRule(req);
    },
  },
  'rules/remove': { fields: ['id'], run: (b, s) => s.removeRule(b.str('id')) },
  'tokens/create': { fields: ['name'], run: (b, s) => s.createToken(b.str('name')) },
  'tokens/revoke': { fields: ['name'], run: (b, s) => s.revokeToken(b.str('name')) },
};

const GET: Readonly<Record<string, (s: Service) => Promise<unknown>>> = {
  list: (s) => s.list(),
  rules: async (s) => ({ rules: await s.listRules() }),
  'rules/next': async (s) => ({ now: Math.floor(s.nowS()), next: await s.planRules() }),
  tokens: async (s) => ({ tokens: await s.listTokens() }),
};

function sseFrame(e: C2Event): string {
  return `id: ${e.id}\nevent: ${e.kind}\ndata: ${JSON.stringify(e)}\n\n`;
}

/** The event stream: what was missed since Last-Event-ID (or the last `replay` events), then live.
 * It ends when the token it was opened with is revoked. */
async function streamEvents(req: IncomingMessage, res: ServerResponse, url: URL, s: Service, tokenName: string): Promise<void> {
  const last = req.headers['last-event-id'] ?? url.searchParams.get('since') ?? null;
  const lastId = typeof last === 'string' && /^[0-9a-f-]{1,40}$/.test(last) ? last : null;
  const replayText = url.searchParams.get('replay');
  const replay = replayText !== null && /^\d{1,4}$/.test(replayText) ? Number(replayText) : 0;
  // Listen first, so nothing that happens during the replay is lost; then skip what the replay sent.
  const live: C2Event[] = [];
  let sentUpTo = lastId ?? '';
  let replaying = true;
  let heartbeat: NodeJS.Timeout | null = null;
  let unsubscribe: () => void = () => undefined;
  const end = () => {
    if (heartbeat) clearInterval(heartbeat);
    unsubscribe();
  };
  unsubscribe = s.events.subscribe((e) => {
    if (replaying) live.push(e);
    else if (e.id > sentUpTo) {
      sentUpTo = e.id;
      res.write(sseFrame(e));
    }
    if (e.kind === 'token-revoked' && e.detail['name'] === tokenName) {
      end();
      res.end();
    }
  });
  heartbeat = setInterval(() => res.write(': still here\n\n'), 15000);
  req.on('close', end);
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.write('retry: 2000\n\n');
  try {
    const missed =
      lastId !== null ? await s.run(() => s.events.since(lastId)) : replay ? await s.run(() => s.events.since(null, replay)) : [];
    for (const e of [...missed, ...live]) {
      if (e.id <= sentUpTo) continue;
      sentUpTo = e.id;
      res.write(sseFrame(e));
    }
  } catch (e) {
    res.write(`event: error\ndata: ${JSON.stringify({ error: { code: asServiceError(e).code, message: asServiceError(e).message } })}\n\n`);
  }
  replaying = false;
}

function serveStatic(res: ServerResponse, entry: { file: string; type: string }): void {
  const body = fs.readFileSync(path.join(DASHBOARD_DIR, entry.file));
  res.writeHead(200, {
    'content-type': entry.type,
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'content-security-policy': "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
  });
  res.end(body);
}

/** The request handler for node:http's createServer. */
export function createApi(opts: ApiOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { service } = opts;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    const entry = STATIC[url.pathname];
    if (entry) {
      if (method !== 'GET' && method !== 'HEAD') throw new ServiceError('METHOD', `${url.pathname} answers GET`);
      return serveStatic(res, entry);
    }
    if (url.pathname === '/api/health') {
      const database = await service.databaseState();
      return send(res, database === 'ok' ? 200 : 503, {
        status: database === 'ok' ? 'ok' : 'degraded',
        version: opts.version,
        database,
        broker: opts.broker(),
      });
    }
    if (!url.pathname.startsWith('/api/')) throw new ServiceError('NO_ROUTE', `no such page: ${url.pathname}`);
    const name = url.pathname.slice('/api/'.length);
    const post = POST[name];
    const get = GET[name];
    if (!post && !get && name !== 'events')
      throw new ServiceError('NO_ROUTE', `no API call ${JSON.stringify(name)} (see docs/c2.md, "HTTP API")`);
    const wanted = post ? 'POST' : 'GET';
    if (method !== wanted) throw new ServiceError('METHOD', `/api/${name} answers ${wanted}`);
    const tokenName = await service.authenticate(typeof req.headers.authorization === 'string' ? req.headers.authorization : undefined);
    if (name === 'events') return streamEvents(req, res, url, service, tokenName);
    if (get) return send(res, 200, await get(service));
    const body = await readBody(req);
    return send(res, 200, await post!.run(new Body(body, post!.fields), service));
  };
  return (req, res) => {
    handle(req, res).catch((e: unknown) => sendError(res, e));
  };
}
