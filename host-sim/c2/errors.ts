/**
 * Errors of the C2 service (serve, its HTTP API, tokens, rules): a code a program can test and a
 * message a person can read. The HTTP API answers every error as `{ error: { code, message } }`
 * with the status below; C2Error codes from the library map the same way.
 */
export type ServiceErrorCode =
  | 'USAGE'
  | 'NOT_FOUND'
  | 'EXISTS'
  | 'WRONG_PASSPHRASE'
  | 'INTEGRITY'
  | 'LOCKED'
  | 'IO'
  | 'BAD_JSON'
  | 'TOO_LARGE'
  | 'UNAUTHORIZED'
  | 'NO_ROUTE'
  | 'METHOD'
  | 'DB_CHANGED'
  | 'INVALID_TAG'
  | 'INTERNAL';

/** HTTP status of each code. */
export const HTTP_STATUS: Readonly<Record<ServiceErrorCode, number>> = {
  USAGE: 400,
  BAD_JSON: 400,
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  NO_ROUTE: 404,
  METHOD: 405,
  EXISTS: 409,
  DB_CHANGED: 409,
  TOO_LARGE: 413,
  INVALID_TAG: 422,
  WRONG_PASSPHRASE: 500,
  INTEGRITY: 500,
  IO: 500,
  INTERNAL: 500,
  LOCKED: 503,
};

export class ServiceError extends Error {
  readonly code: ServiceErrorCode;
  constructor(code: ServiceErrorCode, message: string) {
    super(message);
    this.name = 'ServiceError';
    this.code = code;
  }
}

function isCode(code: unknown): code is ServiceErrorCode {
  return typeof code === 'string' && Object.hasOwn(HTTP_STATUS, code);
}

/** Any thrown value as a ServiceError: C2Error keeps its code, anything else is INTERNAL (its
 * message is kept: the C2's messages never include keys or the passphrase). */
export function asServiceError(e: unknown): ServiceError {
  if (e instanceof ServiceError) return e;
  if (e instanceof Error) {
    const code: unknown = (e as Error & { code?: unknown }).code;
    return new ServiceError(isCode(code) ? code : 'INTERNAL', e.message);
  }
  return new ServiceError('INTERNAL', String(e));
}
