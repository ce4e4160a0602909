/**
 * Result codes and the typed error. Numbers and names are libe4's (see docs/protocol.md, "Result
 * codes"), so logs and tools line up with existing E4 deployments.
 */

export var OK = 0;
export var OK_CONTROL = -1;
export var INTERNAL = -100;
export var INVALID_TAG = -101;
export var TIMESTAMP_IN_FUTURE = -102;
export var TIMESTAMP_TOO_OLD = -103;
export var CIPHERTEXT_TOO_SHORT = -104;
export var TOPICKEY_MISSING = -105;
export var MESSAGE_REPLAYED = -106;
export var INVALID_COMMAND = -107;
export var PERSISTENCE_ERROR = -108;
export var PARAMETER_INVALID = -112;
export var PERSISTENCE_INCOMPATIBLE = -113;

/** The result codes and names, in pairs. Built on each call: as a module-level table it would
 * hold ~50 variables of an Espruino board's RAM for good, and names are only needed when
 * something fails. A list, not an object keyed by the code's text: JerryScript running a static
 * snapshot does not find a number turned into a string (String(-106)) among the snapshot's
 * literal strings ("-106"). */
function names(): (number | string)[] {
  var all: (number | string)[] = [0, 'E4_RESULT_OK', -1, 'E4_RESULT_OK_CONTROL'];
  // The error names from -100 down ("" for the codes libe4 does not use).
  var errs =
    'INTERNAL INVALID_TAG TIMESTAMP_IN_FUTURE TIMESTAMP_TOO_OLD CIPHERTEXT_TOO_SHORT TOPICKEY_MISSING MESSAGE_REPLAYED INVALID_COMMAND PERSISTENCE_ERROR    PARAMETER_INVALID PERSISTENCE_INCOMPATIBLE'.split(
      ' '
    );
  for (var i = 0; i < errs.length; i++) if (errs[i]) all.push(-100 - i, 'E4_ERROR_' + errs[i]);
  return all;
}

/** The libe4 constant name of a result code, e.g. -101 -> "E4_ERROR_INVALID_TAG". */
export function resultName(code: number): string {
  return new E4Error(code).result;
}

/** The code of a libe4 constant name, or undefined. */
export function resultCode(name: string): number | undefined {
  var all = names();
  for (var i = 0; i < all.length; i += 2) if (all[i + 1] === name) return all[i] as number;
  return undefined;
}

export interface E4Error extends Error {
  name: 'E4Error';
  /** libe4 result code, e.g. -101. */
  code: number;
  /** libe4 result name, e.g. "E4_ERROR_INVALID_TAG". */
  result: string;
}

interface E4ErrorConstructor {
  new (code: number, detail?: string): E4Error;
  prototype: E4Error;
}

/**
 * A failure with its E4 result code. Built without `class extends Error`: lowered to ES5 that
 * loses the prototype (instanceof fails), and Espruino's native subclassing drops `message`.
 * Messages never contain key material or plaintext.
 */
function ownProperty(o: object, name: string, value: unknown): void {
  Object.defineProperty(o, name, { value: value, writable: true, configurable: true });
}

export var E4Error = function E4Error(this: E4Error, code: number, detail?: string) {
  this.name = 'E4Error';
  this.code = code;
  // The name table read here rather than through resultName: one function fewer in an image
  // that does not export it (each costs RAM on Espruino).
  var all = names();
  this.result = 'E4_ERROR_INTERNAL';
  for (var i = 0; i < all.length; i += 2) if (all[i] === code) this.result = all[i + 1] as string;
  var message = this.result + ' (' + code + ')' + (detail ? ': ' + detail : '');
  // Defined, not assigned: strict engines (MicroQuickJS) make Error.prototype's message and
  // stack accessors without a setter, so an assignment through the prototype chain throws.
  ownProperty(this, 'message', message);
  var stack = new Error(message).stack;
  if (stack) ownProperty(this, 'stack', stack);
} as unknown as E4ErrorConstructor;

E4Error.prototype = Object.create(Error.prototype);
E4Error.prototype.constructor = E4Error;
E4Error.prototype.toString = function (this: E4Error) {
  return 'E4Error: ' + this.message;
};

/** True when `e` is an E4Error (also across two copies of the image, where instanceof fails). */
export function isE4Error(e: unknown): e is E4Error {
  return !!e && (e as E4Error).name === 'E4Error' && typeof (e as E4Error).code === 'number';
}

/**
 * Runs `fn`, reporting anything it throws that is not an E4Error (out of memory, a native call
 * failing, a bug) as INTERNAL: only an authentication failure may look like one (INVALID_TAG),
 * and vaults signal that by returning null, never by throwing.
 */
export function orInternal<R>(fn: () => R): R {
  try {
    return fn();
  } catch (e) {
    throw isE4Error(e) ? e : new E4Error(INTERNAL);
  }
}
