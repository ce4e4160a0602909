/**
 * The command line's service commands: `serve`, `token create|list|revoke` and
 * `rules list|add|remove|next`. `token` and `rules` work on the database file, or on a running
 * service with --server URL. cli.ts hands these commands here.
 */
import { parseArgs } from 'node:util';
import { openC2 } from './c2.ts';
import { loadE4Image } from './e4.ts';
import { ServiceError, asServiceError, type ServiceErrorCode } from './errors.ts';
import { callApi, remoteTarget, type RemoteTarget } from './remote.ts';
import { formatDuration, roughly, type PlannedAction, type Rule } from './rules.ts';
import { DEFAULT_LISTEN, parseListen } from './listen.ts';
import { Service } from './service.ts';
import { stopOnSignal } from '../shared/cli.ts';

type OptionSpec = { type: 'string' | 'boolean'; short?: string };

/** What cli.ts lends: its common options and how it reads the passphrase and finds the database. */
export interface CliContext {
  /** cli.ts's common options (`type` is 'string' or 'boolean'). */
  globalOptions: Record<string, { type: string; short?: string }>;
  readPassphrase(values: Record<string, unknown>): string;
  dbPath(values: Record<string, unknown>): string;
  version: string;
}

export const SERVICE_COMMANDS: Readonly<
  Record<string, { usage: string; about: string; options: Record<string, OptionSpec & { help: string }> }>
> = {
  serve: {
    usage: 'serve [--listen HOST:PORT] [--broker URL]',
    about: 'Run the C2 as a service: HTTP API, event stream, dashboard, automation rules (passphrase read once).',
    options: { listen: { type: 'string', help: `address to listen on (default ${DEFAULT_LISTEN}: loopback only)` } },
  },
  token: {
    usage: 'token create NAME | token list | token revoke NAME',
    about: 'API tokens for serve: created tokens are shown once and stored as SHA-256.',
    options: {},
  },
  rules: {
    usage: 'rules list | rules next | rules add KIND [TARGET] [--every D] [--base D] [--max D] | rules remove ID',
    about:
      'Automation run by serve: rotate-topic TOPIC --every 24h, rotate-device-key [DEVICE] --every 30d, rotate-on-removal [DEVICE], retry [--base 30s --max 1h]; `next` is a dry run.',
    options: {
      every: { type: 'string', help: 'period of rotate-topic / rotate-device-key: 90s, 15m, 6h, 30d' },
      base: { type: 'string', help: 'retry: first wait (default 30s), doubled after each attempt that leaves commands unacknowledged' },
      max: { type: 'string', help: 'retry: longest wait (default 1h)' },
    },
  },
};

export function serviceCommandHelp(name: string): string {
  const c = SERVICE_COMMANDS[name]!;
  const lines = [`usage: e4-c2 ${c.usage} [options]`, '', c.about];
  const opts = Object.entries(c.options);
  if (opts.length) {
    lines.push('', 'options:');
    for (const [k, o] of opts) lines.push(`  --${(k + (o.type === 'string' ? ' VALUE' : '')).padEnd(22)} ${o.help}`);
  }
  lines.push(
    '',
    'common options: --db FILE, --passphrase-file FILE (or E4_C2_PASSPHRASE), --broker URL, --image FILE, --json,',
    '                --server URL and --token-file FILE (or E4_C2_SERVER, E4_C2_TOKEN) to use a running service',
  );
  return lines.join('\n');
}

const EXIT: Partial<Record<ServiceErrorCode, number>> = {
  USAGE: 2,
  NOT_FOUND: 2,
  EXISTS: 2,
  BAD_JSON: 2,
  NO_ROUTE: 2,
  METHOD: 2,
  UNAUTHORIZED: 2,
  WRONG_PASSPHRASE: 3,
  INTEGRITY: 4,
  DB_CHANGED: 4,
};

/** The command line's exit code for a service error (docs/c2.md, "Exit codes"). */
export function exitCodeFor(e: ServiceError): number {
  return EXIT[e.code] ?? 1;
}

function iso(s: number | null): string {
  return s === null ? '-' : new Date(s * 1000).toISOString().replace('.000Z', 'Z');
}

function ruleLine(r: Rule): string {
  const every =
    r.everyS !== null
      ? `every ${formatDuration(r.everyS)}`
      : r.retry
        ? `base ${formatDuration(r.retry.baseS)} max ${formatDuration(r.retry.maxS)}`
        : 'on revoke/reset';
  return `${r.id}  ${r.kind.padEnd(17)} ${(r.target ?? (r.kind === 'retry' ? '' : '(every device)')).padEnd(34)} ${every.padEnd(20)} next ${iso(r.nextRun)}  last ${iso(r.lastRun)}`;
}

function planLine(p: PlannedAction, now: number): string {
  const when = p.at === null ? 'on the event' : p.at <= now ? 'now (due)' : `${iso(p.at)} (in ${roughly(p.at - now)})`;
  return `${when.padEnd(36)} ${p.rule}  ${p.action}${p.targets.length ? ': ' + p.targets.join(', ') : ''}`;
}

function out(values: Record<string, unknown>, json: unknown, lines: string[]): number {
  process.stdout.write(values['json'] ? JSON.stringify(json, null, 2) + '\n' : lines.length ? lines.join('\n') + '\n' : '');
  return 0;
}

/** Opens the database for a local token/rules command (read-only for the commands that only read). */
async function local<T>(
  ctx: CliContext,
  values: Record<string, unknown>,
  readOnly: boolean,
  fn: (service: Service) => Promise<T>,
): Promise<T> {
  const image = typeof values['image'] === 'string' ? values['image'] : undefined;
  const e4 = loadE4Image(image);
  const opening = { dbPath: ctx.dbPath(values), passphrase: ctx.readPassphrase(values), e4, readOnly };
  const c2 = await openC2(opening);
  let service: Service | null = null;
  try {
    service = await Service.start({ c2, e4 });
    return await fn(service);
  } finally {
    if (service) await service.close();
    else await c2.close();
  }
}

function need(pos: string[], n: number, usage: string): void {
  if (pos.length !== n) throw new ServiceError('USAGE', `usage: e4-c2 ${usage}`);
}

async function tokenCommand(pos: string[], values: Record<string, unknown>, ctx: CliContext, remote: RemoteTarget | null): Promise<number> {
  const [action, ...rest] = pos;
  if (action === 'create') {
    need(rest, 1, 'token create NAME');
    const t = remote
      ? await callApi(remote, 'POST', 'tokens/create', { name: rest[0] })
      : await local(ctx, values, false, (s) => s.createToken(rest[0]!));
    return out(values, t, [`token ${String(t['name'])} (shown once; the C2 keeps only its SHA-256):`, String(t['token'])]);
  }
  if (action === 'list') {
    need(rest, 0, 'token list');
    const r = remote ? await callApi(remote, 'GET', 'tokens') : { tokens: await local(ctx, values, true, (s) => s.listTokens()) };
    const tokens = Array.isArray(r['tokens']) ? (r['tokens'] as { name: string; created: number; lastUsed: number | null }[]) : [];
    return out(
      values,
      r,
      tokens.length ? tokens.map((t) => `${t.name.padEnd(24)} created ${iso(t.created)}  last used ${iso(t.lastUsed)}`) : ['no API tokens'],
    );
  }
  if (action === 'revoke') {
    need(rest, 1, 'token revoke NAME');
    const r = remote
      ? await callApi(remote, 'POST', 'tokens/revoke', { name: rest[0] })
      : await local(ctx, values, false, (s) => s.revokeToken(rest[0]!));
    return out(values, r, [`revoked token ${String(r['name'])}`]);
  }
  throw new ServiceError('USAGE', `token takes create NAME, list or revoke NAME (got ${JSON.stringify(action ?? '')})`);
}

async function rulesCommand(pos: string[], values: Record<string, unknown>, ctx: CliContext, remote: RemoteTarget | null): Promise<number> {
  const [action, ...rest] = pos;
  if (action === 'list') {
    need(rest, 0, 'rules list');
    const rules = remote
      ? ((await callApi(remote, 'GET', 'rules'))['rules'] as Rule[])
      : await local(ctx, values, true, (s) => s.listRules());
    return out(values, { rules }, rules.length ? rules.map(ruleLine) : ['no rules']);
  }
  if (action === 'next') {
    need(rest, 0, 'rules next');
    const r = remote
      ? await callApi(remote, 'GET', 'rules/next')
      : await local(ctx, values, true, async (s) => ({ now: Math.floor(Date.now() / 1000), next: await s.planRules() }));
    const now = Number(r['now']);
    const next = r['next'] as PlannedAction[];
    return out(values, r, next.length ? next.map((p) => planLine(p, now)) : ['no rules: nothing happens on its own']);
  }
  if (action === 'add') {
    if (rest.length < 1 || rest.length > 2)
      throw new ServiceError('USAGE', 'usage: e4-c2 rules add KIND [TARGET] [--every D] [--base D] [--max D]');
    const req: Record<string, unknown> = { kind: rest[0] };
    if (rest[1] !== undefined) req['target'] = rest[1];
    for (const k of ['every', 'base', 'max']) if (values[k] !== undefined) req[k] = values[k];
    const rule = remote
      ? ((await callApi(remote, 'POST', 'rules/add', req)) as unknown as Rule)
      : await local(ctx, values, false, (s) => s.addRule(req));
    return out(values, rule, [`added rule ${ruleLine(rule)}`]);
  }
  if (action === 'remove') {
    need(rest, 1, 'rules remove ID');
    const rule = remote
      ? ((await callApi(remote, 'POST', 'rules/remove', { id: rest[0] })) as unknown as Rule)
      : await local(ctx, values, false, (s) => s.removeRule(rest[0]!));
    return out(values, rule, [`removed rule ${rule.id} (${rule.kind}${rule.target ? ' ' + rule.target : ''})`]);
  }
  throw new ServiceError('USAGE', `rules takes list, next, add KIND [TARGET] or remove ID (got ${JSON.stringify(action ?? '')})`);
}

async function serveCommand(values: Record<string, unknown>, ctx: CliContext): Promise<number> {
  if (remoteTarget(optionText(values, 'server'), undefined)) throw new ServiceError('USAGE', 'serve runs the service itself: no --server');
  const listen = parseListen(typeof values['listen'] === 'string' ? values['listen'] : process.env['E4_C2_LISTEN'] || DEFAULT_LISTEN);
  const broker = typeof values['broker'] === 'string' ? values['broker'] : process.env['E4_C2_BROKER'] || undefined;
  if (broker !== undefined && !/^(mqtts?|wss?|tcp|tls):\/\/[^\s]+$/.test(broker))
    throw new ServiceError('USAGE', '--broker must be a URL such as mqtt://127.0.0.1:1883');
  const dbPath = ctx.dbPath(values);
  const e4 = loadE4Image(typeof values['image'] === 'string' ? values['image'] : undefined);
  // Loaded here: the one-shot commands need neither HTTP nor MQTT, and start faster without them.
  const { startServe } = await import('./serve.ts');
  const opening = { dbPath, passphrase: ctx.readPassphrase(values), e4, readOnly: false };
  const c2 = await openC2(opening);
  const log = (line: string) => process.stderr.write(`e4-c2 serve: ${line}\n`);
  let running;
  try {
    running = await startServe({ c2, e4, listen, broker, version: ctx.version, log });
  } catch (e) {
    await c2.close();
    throw e;
  }
  const tokens = await running.service.listTokens();
  process.stdout.write(
    `e4-c2 serve: listening ${running.url} (API /api/, dashboard /)${broker ? `, broker ${broker}` : ', no broker: commands are queued'}\n`,
  );
  if (!tokens.length) log('no API token yet: stop the service and run `e4-c2 token create NAME`');
  await new Promise<void>((resolve) => {
    stopOnSignal(async () => {
      await running.close();
      resolve();
    });
  });
  return 0;
}

/** Runs `serve`, `token` or `rules`; argv holds everything but the command word. */
export async function runServiceCommand(name: string, argv: string[], ctx: CliContext): Promise<number> {
  const spec = SERVICE_COMMANDS[name];
  if (!spec) throw new ServiceError('USAGE', `unknown command ${name}`);
  const options: Record<string, OptionSpec> = {};
  for (const [k, o] of Object.entries(ctx.globalOptions))
    options[k] = { type: o.type === 'boolean' ? 'boolean' : 'string', ...(o.short ? { short: o.short } : {}) };
  for (const [k, o] of Object.entries(spec.options)) options[k] = { type: o.type };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new ServiceError('USAGE', `${asServiceError(e).message} (see e4-c2 ${name} --help)`);
  }
  const values = parsed.values as Record<string, unknown>;
  if (values['help']) {
    process.stdout.write(serviceCommandHelp(name) + '\n');
    return 0;
  }
  if (name === 'serve') {
    if (parsed.positionals.length) throw new ServiceError('USAGE', 'serve takes no arguments');
    return serveCommand(values, ctx);
  }
  const remote = remoteTarget(optionText(values, 'server'), optionText(values, 'token-file'));
  try {
    return await (name === 'token'
      ? tokenCommand(parsed.positionals, values, ctx, remote)
      : rulesCommand(parsed.positionals, values, ctx, remote));
  } catch (e) {
    // A wrong command line says where the help is, as the other commands do.
    if (e instanceof ServiceError && e.code === 'USAGE' && !remote)
      throw new ServiceError('USAGE', `${e.message} (see e4-c2 ${name} --help)`);
    throw e;
  }
}

function optionText(values: Record<string, unknown>, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}
