/**
 * API bearer tokens: `e4c2_` followed by 32 random bytes (base64url). The database keeps only
 * their SHA-256, so a copy of it does not let anyone call the API; a token is shown once, when it
 * is created. A lookup is by hash: comparing hashes of a 256-bit secret leaks nothing usable.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { C2 } from './c2.ts';
import { ServiceError } from './errors.ts';
import { asRow, int, intOrNull, rowsOf, text } from './tables.ts';

export const TOKEN_PREFIX = 'e4c2_';
const TOKEN_SHAPE = /^e4c2_[A-Za-z0-9_-]{43}$/;
const NAME_SHAPE = /^[A-Za-z0-9._-]{1,64}$/;
/** last_used is written at most this often per token (each write is a database write). */
const LAST_USED_EVERY_S = 60;

export interface TokenInfo {
  name: string;
  created: number;
  lastUsed: number | null;
}

export interface NewToken {
  name: string;
  /** The bearer token itself: shown once, never stored. */
  token: string;
}

export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function checkTokenName(name: unknown): string {
  if (typeof name !== 'string' || !NAME_SHAPE.test(name)) {
    throw new ServiceError('USAGE', 'a token name is 1 to 64 letters, digits, dots, dashes or underscores');
  }
  return name;
}

export async function createToken(c2: C2, name: string, nowS: number): Promise<NewToken> {
  checkTokenName(name);
  const rows = rowsOf(c2);
  if (await rows.get('SELECT name FROM api_tokens WHERE name = ?', [name]))
    throw new ServiceError('EXISTS', `a token named ${name} already exists`);
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  await rows.run('INSERT INTO api_tokens (name, sha256, created, last_used) VALUES (?, ?, ?, NULL)', [
    name,
    tokenHash(token),
    Math.floor(nowS),
  ]);
  return { name, token };
}

export async function listTokens(c2: C2): Promise<TokenInfo[]> {
  const rows = await rowsOf(c2).all('SELECT name, created, last_used FROM api_tokens ORDER BY name');
  return rows.map((r) => {
    const row = asRow(r);
    return { name: text(row, 'name'), created: int(row, 'created'), lastUsed: intOrNull(row, 'last_used') };
  });
}

export async function revokeToken(c2: C2, name: string): Promise<{ name: string }> {
  checkTokenName(name);
  const rows = rowsOf(c2);
  if (!(await rows.get('SELECT name FROM api_tokens WHERE name = ?', [name])))
    throw new ServiceError('NOT_FOUND', `no token named ${name}`);
  await rows.run('DELETE FROM api_tokens WHERE name = ?', [name]);
  return { name };
}

/** The name of the token an `Authorization` header carries; UNAUTHORIZED otherwise. */
export async function authenticate(c2: C2, header: string | undefined, nowS: number): Promise<string> {
  if (!header)
    throw new ServiceError(
      'UNAUTHORIZED',
      'this API needs a bearer token: Authorization: Bearer <token> (created by `e4-c2 token create NAME`)',
    );
  const m = /^Bearer\s+(\S+)$/i.exec(header);
  if (!m) throw new ServiceError('UNAUTHORIZED', 'the Authorization header must be "Bearer <token>"');
  const token = m[1]!;
  const found = TOKEN_SHAPE.test(token)
    ? await rowsOf(c2).get('SELECT name, last_used FROM api_tokens WHERE sha256 = ?', [tokenHash(token)])
    : undefined;
  if (!found) throw new ServiceError('UNAUTHORIZED', 'unknown or revoked API token');
  const row = asRow(found);
  const name = text(row, 'name');
  const lastUsed = intOrNull(row, 'last_used');
  const now = Math.floor(nowS);
  if (lastUsed === null || now - lastUsed >= LAST_USED_EVERY_S) {
    await rowsOf(c2).run('UPDATE api_tokens SET last_used = ? WHERE name = ?', [now, name]);
  }
  return name;
}
