/**
 * The command line against a running service (`e4-c2 <command> --server URL`): the same commands
 * and output, carried out by `e4-c2 serve` over its HTTP API instead of on the database file
 * (which the service holds). The token comes from `--token-file FILE` or E4_C2_TOKEN, never the
 * command line (shell history, `ps`).
 */
import fs from 'node:fs';
import { HTTP_STATUS, ServiceError, type ServiceErrorCode } from './errors.ts';
import type { C2, DeviceConfigOptions, DeviceRef, Send } from './c2.ts';

export interface RemoteTarget {
  url: string;
  token: string;
}

/** --server / E4_C2_SERVER and --token-file / E4_C2_TOKEN, or null when no server is named. */
export function remoteTarget(server: string | undefined, tokenFile: string | undefined): RemoteTarget | null {
  const url = server ?? (process.env['E4_C2_SERVER'] || undefined);
  if (url === undefined) {
    if (tokenFile !== undefined) throw new ServiceError('USAGE', '--token-file is for --server URL');
    return null;
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ServiceError('USAGE', `--server must be a URL such as http://127.0.0.1:8440 (got ${JSON.stringify(url)})`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ServiceError('USAGE', '--server must be an http:// or https:// URL');
  let token: string | undefined;
  if (tokenFile !== undefined) {
    try {
      token = fs.readFileSync(tokenFile, 'utf8').split(/\r?\n/)[0];
    } catch (e) {
      throw new ServiceError('USAGE', `cannot read --token-file: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  } else token = process.env['E4_C2_TOKEN'] || undefined;
  if (!token)
    throw new ServiceError(
      'USAGE',
      '--server needs an API token: --token-file FILE or the E4_C2_TOKEN environment variable (`e4-c2 token create NAME`)',
    );
  return { url: u.origin, token };
}

function isCode(c: unknown): c is ServiceErrorCode {
  return typeof c === 'string' && Object.hasOwn(HTTP_STATUS, c);
}

/** One API call; the service's error comes back as a ServiceError with its code. */
export async function callApi(
  target: RemoteTarget,
  method: 'GET' | 'POST',
  name: string,
  body?: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  let res: Response;
  try {
    res = await fetch(`${target.url}/api/${name}`, {
      method,
      headers: { authorization: `Bearer ${target.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
  } catch (e) {
    const cause = e instanceof Error && e.cause instanceof Error ? e.cause.message : String(e);
    throw new ServiceError('IO', `cannot reach the C2 service at ${target.url}: ${cause}`);
  }
  const textBody = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(textBody);
  } catch {
    throw new ServiceError('IO', `the C2 service at ${target.url} answered ${res.status} with something that is not JSON`);
  }
  if (!parsed || typeof parsed !== 'object') throw new ServiceError('IO', `the C2 service answered ${res.status} with no object`);
  const obj = parsed as Record<string, unknown>;
  if (!res.ok) {
    const err = obj['error'];
    const e = err && typeof err === 'object' ? (err as Record<string, unknown>) : {};
    throw new ServiceError(
      isCode(e['code']) ? e['code'] : 'INTERNAL',
      typeof e['message'] === 'string' ? e['message'] : `HTTP ${res.status}`,
    );
  }
  return obj;
}

/**
 * What the command line calls on a C2, with the C2's own signatures: the C2 on the database, or
 * RemoteC2 for --server.
 */
export type C2Commands = Pick<
  C2,
  | 'addDevice'
  | 'addTopic'
  | 'grant'
  | 'revoke'
  | 'rotateTopic'
  | 'rotateDeviceKey'
  | 'resetDevice'
  | 'flush'
  | 'list'
  | 'device'
  | 'deviceConfig'
  | 'exportE41P'
  | 'observe'
  | 'setSend'
  | 'close'
  | 'dbPath'
>;

/** What the C2's method resolves to. */
type Reply<K extends keyof C2Commands> = C2Commands[K] extends (...args: never[]) => Promise<infer R> ? R : never;

const isList = (v: unknown): boolean => Array.isArray(v);

/**
 * The one boundary where a service reply becomes the C2's type. The API answers each command with
 * the C2 method's result as JSON (api.ts -> service.ts hand it on unchanged; none of these results
 * holds bytes), so the reply is that type once its shape is checked: an object, and where the
 * command sends commands, a delivery report with its three lists.
 */
function reply<K extends keyof C2Commands>(r: Record<string, unknown>, delivery: 'delivery' | 'is-delivery' | null): Reply<K> {
  const d = delivery === 'is-delivery' ? r : delivery ? r[delivery] : null;
  if (
    d !== null &&
    !(
      d &&
      typeof d === 'object' &&
      'acked' in d &&
      isList(d.acked) &&
      'failed' in d &&
      isList(d.failed) &&
      'queued' in d &&
      isList(d.queued)
    )
  )
    throw new ServiceError('IO', 'the C2 service sent a reply without its delivery report');
  return r as Reply<K>;
}

function refOf(ref: DeviceRef): string {
  if (typeof ref === 'string') return ref;
  if (ref.id instanceof Uint8Array) return Buffer.from(ref.id).toString('hex');
  const r = ref.id ?? ref.name;
  if (typeof r !== 'string') throw new ServiceError('USAGE', 'a device is named by its name or id');
  return r;
}

/**
 * The C2 library's operations the command line uses, carried out by the service. The service has
 * its own broker connection, so setSend does nothing here; `watch` is what the service does all
 * the time (see its event stream).
 */
export class RemoteC2 implements C2Commands {
  readonly remote = true;
  constructor(private readonly target: RemoteTarget) {}

  /** Where the commands go, for messages (the database is the service's). */
  get dbPath(): string {
    return this.target.url;
  }

  private post(name: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    return callApi(this.target, 'POST', name, body);
  }

  setSend(_send: Send | null | undefined): void {}
  async close(): Promise<void> {}
  async observe(): Promise<never> {
    throw new ServiceError(
      'USAGE',
      'watch runs inside `e4-c2 serve` all the time: see its event stream (GET /api/events) or the dashboard',
    );
  }

  /** `{ name }` or `{ id }` (the service checks it). */
  async addDevice(spec: { name: string } | { id: string | Uint8Array }): Promise<Reply<'addDevice'>> {
    const body = 'name' in spec ? { name: spec.name } : { id: refOf({ id: spec.id }) };
    return reply<'addDevice'>(await this.post('add-device', body), null);
  }
  async addTopic(topic: string): Promise<Reply<'addTopic'>> {
    return reply<'addTopic'>(await this.post('add-topic', { topic }), null);
  }
  async grant(device: DeviceRef, topic: string, { role = 'both' }: { role?: string } = {}): Promise<Reply<'grant'>> {
    return reply<'grant'>(await this.post('grant', { device: refOf(device), topic, role }), 'delivery');
  }
  async revoke(device: DeviceRef, topic: string, { rotate = false }: { rotate?: boolean } = {}): Promise<Reply<'revoke'>> {
    return reply<'revoke'>(await this.post('revoke', { device: refOf(device), topic, rotate }), 'delivery');
  }
  async rotateTopic(topic: string): Promise<Reply<'rotateTopic'>> {
    return reply<'rotateTopic'>(await this.post('rotate-topic', { topic }), 'delivery');
  }
  async rotateDeviceKey(device: DeviceRef): Promise<Reply<'rotateDeviceKey'>> {
    return reply<'rotateDeviceKey'>(await this.post('rotate-device-key', { device: refOf(device) }), 'delivery');
  }
  async resetDevice(device: DeviceRef): Promise<Reply<'resetDevice'>> {
    return reply<'resetDevice'>(await this.post('reset-device', { device: refOf(device) }), 'delivery');
  }
  async flush(): Promise<Reply<'flush'>> {
    return reply<'flush'>(await this.post('flush', {}), 'is-delivery');
  }
  async list(): Promise<Reply<'list'>> {
    const r = await callApi(this.target, 'GET', 'list');
    if (!isList(r['devices']) || !isList(r['topics']))
      throw new ServiceError('IO', 'the C2 service sent a listing without devices and topics');
    return reply<'list'>(r, null);
  }
  async device(ref: DeviceRef): Promise<Reply<'device'>> {
    return reply<'device'>(await this.post('device', { device: refOf(ref) }), null);
  }
  async deviceConfig(ref: DeviceRef, { clock, transport }: DeviceConfigOptions = {}): Promise<Reply<'deviceConfig'>> {
    return reply<'deviceConfig'>(
      await this.post('config', { device: refOf(ref), ...(clock ? { clock } : {}), ...(transport ? { transport } : {}) }),
      null,
    );
  }
  async exportE41P(ref: DeviceRef): Promise<Uint8Array> {
    const r = await this.post('export', { device: refOf(ref) });
    if (typeof r['e41p'] !== 'string') throw new ServiceError('IO', 'the service sent no E41P image');
    return new Uint8Array(Buffer.from(r['e41p'], 'base64'));
  }
}
