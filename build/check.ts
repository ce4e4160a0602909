/**
 * Static checks of an image: it parses as ECMAScript 5, references nothing the target
 * engines lack (docs/targets.md), and holds nothing a strict engine refuses (MicroQuickJS is
 * always strict). Used by the build (which fails on any finding) and by test/image.test.ts.
 */
import * as acorn from 'acorn';
import type { AnyNode, Identifier, MemberExpression, Pattern, Program } from 'acorn';
import { childNodes } from './estree.ts';
import type { FunctionNode } from './estree.ts';

/** A problem found in an image: what, and the line it is on. */
export interface Finding {
  message: string;
  line: number;
}

export interface CheckOptions {
  /** Forbidden globals (`require`), statics (`Object.keys`) or methods (`.fill`) this image may use. */
  allow?: string[];
}

/** Globals that Espruino, Duktape or JerryScript lack, plus sources of randomness and console
 * (firmware logs through the HAL). */
export const FORBIDDEN_GLOBALS = [
  'BigInt',
  'BigInt64Array',
  'BigUint64Array',
  'TextEncoder',
  'TextDecoder',
  'Map',
  'Set',
  'WeakMap',
  'WeakSet',
  'WeakRef',
  'FinalizationRegistry',
  'Symbol',
  'Proxy',
  'Reflect',
  'Promise',
  'globalThis',
  'queueMicrotask',
  'setImmediate',
  'Intl',
  'SharedArrayBuffer',
  'Atomics',
  'crypto',
  'console',
  'require',
  'process',
  'Buffer',
];

/** Static methods and constants the targets lack (ES2015+), and Math.random (no RNG in firmware). */
export const FORBIDDEN_STATICS: Record<string, string[]> = {
  Array: ['from', 'of'],
  Object: ['assign', 'freeze', 'seal', 'hasOwn', 'entries', 'values', 'fromEntries', 'is', 'setPrototypeOf', 'getOwnPropertySymbols'],
  Number: ['isSafeInteger', 'isInteger', 'isFinite', 'isNaN', 'EPSILON', 'MAX_SAFE_INTEGER', 'MIN_SAFE_INTEGER', 'parseFloat', 'parseInt'],
  Math: ['imul', 'clz32', 'trunc', 'sign', 'log2', 'log10', 'fround', 'cbrt', 'hypot', 'expm1', 'log1p', 'random', 'pow'],
  ArrayBuffer: ['isView'],
  String: ['fromCodePoint', 'raw'],
};
const TYPED = [
  'Uint8Array',
  'Int8Array',
  'Uint8ClampedArray',
  'Uint16Array',
  'Int16Array',
  'Uint32Array',
  'Int32Array',
  'Float32Array',
  'Float64Array',
];
for (const t of TYPED) FORBIDDEN_STATICS[t] = ['from', 'of'];

/** Methods (on any object) that are ES2015+ or differ on the targets (typed-array fill is missing
 * on Duktape). Typed-array `slice` cannot be told from Array/String `slice` statically. */
export const FORBIDDEN_METHODS = [
  'fill',
  'padStart',
  'padEnd',
  'includes',
  'startsWith',
  'endsWith',
  'repeat',
  'findIndex',
  'findLast',
  'findLastIndex',
  'copyWithin',
  'flat',
  'flatMap',
  'codePointAt',
  'at',
  'toHex',
  'fromHex',
];

/** Constructors whose prototype methods Espruino does not expose when read off the prototype
 * (`Array.prototype.slice` is undefined there), as TypeScript's spread/rest helpers do. */
const PROTOTYPE_READS = ['Array', 'Function', ...TYPED];

function walk(node: AnyNode, visit: (node: AnyNode, parent: AnyNode | undefined) => void, parent?: AnyNode): void {
  visit(node, parent);
  for (const child of childNodes(node)) walk(child, visit, node);
}

function propName(m: MemberExpression): string | null {
  if (!m.computed && m.property.type === 'Identifier') return m.property.name;
  if (m.computed && m.property.type === 'Literal' && typeof m.property.value === 'string') return m.property.value;
  return null;
}

/** True when an Identifier node is a variable reference (not a property name or a label). */
function isReference(node: Identifier, parent: AnyNode | undefined): boolean {
  if (!parent) return true;
  if (parent.type === 'MemberExpression' && parent.property === node && !parent.computed) return false;
  if (parent.type === 'Property' && parent.key === node && !parent.computed) return false;
  if (
    (parent.type === 'LabeledStatement' || parent.type === 'BreakStatement' || parent.type === 'ContinueStatement') &&
    parent.label === node
  )
    return false;
  return true;
}

/** Names declared anywhere in the script (var, function, parameter, catch): a local `Map` is no
 * reference to the global. */
function declaredNames(ast: Program): Set<string> {
  const names = new Set<string>();
  const addPattern = (p: Pattern | null | undefined): void => {
    if (p && p.type === 'Identifier') names.add(p.name);
  };
  walk(ast, (n) => {
    if (n.type === 'VariableDeclarator') addPattern(n.id);
    else if (n.type === 'FunctionDeclaration' || n.type === 'FunctionExpression') {
      if (n.id) addPattern(n.id);
      n.params.forEach(addPattern);
    } else if (n.type === 'CatchClause') addPattern(n.param);
  });
  return names;
}

/** The names a function's own scope declares: its parameters, and its `var` and function
 * declarations (not those of nested functions). */
function ownScopeNames(fn: FunctionNode): Set<string> {
  const names = new Set(fn.params.filter((p) => p.type === 'Identifier').map((p) => p.name));
  walkOwnScope(fn.body, (node) => {
    if (node.type === 'VariableDeclarator' && node.id.type === 'Identifier') names.add(node.id.name);
    if (node.type === 'FunctionDeclaration' && node.id) names.add(node.id.name);
  });
  return names;
}

/** Visits the nodes of one function's own scope: nested functions are visited (a declaration
 * names something in this scope) but not entered. */
function walkOwnScope(node: AnyNode, visit: (node: AnyNode) => void): void {
  visit(node);
  if (node.type === 'FunctionDeclaration' || node.type === 'FunctionExpression') return;
  for (const child of childNodes(node)) walkOwnScope(child, visit);
}

/** Properties that Error.prototype defines as accessors without a setter on strict engines
 * (MicroQuickJS): assigning them on an object derived from Error.prototype throws a TypeError.
 * Define them with Object.defineProperty instead. */
export const ERROR_ACCESSORS = ['message', 'stack'];

/**
 * Checks `code`. Returns a list of findings ({ message, line }) — empty when the image is clean.
 * `allow` lists forbidden globals a particular image may reference (e.g. `require` on Espruino).
 */
export function checkImage(code: string, { allow = [] }: CheckOptions = {}): Finding[] {
  let ast: Program;
  try {
    ast = acorn.parse(code, { ecmaVersion: 5, sourceType: 'script', locations: true, allowReserved: true });
  } catch (e) {
    return [{ message: 'not ECMAScript 5: ' + (e instanceof Error ? e.message : String(e)), line: syntaxErrorLine(e) }];
  }
  const findings: Finding[] = [];
  const declared = declaredNames(ast);
  const forbidden = new Set(FORBIDDEN_GLOBALS.filter((g) => !allow.includes(g)));
  const methods = new Set(FORBIDDEN_METHODS);
  // Parsed with `locations: true`: every node has its `loc`.
  const add = (message: string, node: AnyNode) => findings.push({ message, line: node.loc ? node.loc.start.line : 0 });
  // A catch parameter named like a parameter or local of the enclosing function: MicroQuickJS
  // refuses the whole script ("catch variable already exists"); minifiers that reuse names make it.
  const functions: FunctionNode[] = [];
  walk(ast, (n) => {
    if (n.type === 'FunctionDeclaration' || n.type === 'FunctionExpression') functions.push(n);
  });
  for (const fn of functions) {
    const names = ownScopeNames(fn);
    walkOwnScope(fn.body, (n) => {
      if (n.type === 'CatchClause' && n.param && n.param.type === 'Identifier' && names.has(n.param.name)) {
        add(`catch parameter ${n.param.name} repeats a name of its function (a SyntaxError on strict engines)`, n.param);
      }
    });
  }
  walk(ast, (node, parent) => {
    const assigned = node.type === 'AssignmentExpression' && node.left.type === 'MemberExpression' ? propName(node.left) : null;
    if (assigned !== null && ERROR_ACCESSORS.includes(assigned)) {
      add(`assigns .${assigned} (an accessor of Error.prototype: a TypeError on strict engines; use Object.defineProperty)`, node);
    }
    if (node.type === 'Identifier' && forbidden.has(node.name) && !declared.has(node.name) && isReference(node, parent)) {
      add('references ' + node.name, node);
    } else if (node.type === 'MemberExpression') {
      const name = propName(node);
      if (name === null) return;
      const obj = node.object;
      if (
        obj.type === 'Identifier' &&
        !declared.has(obj.name) &&
        FORBIDDEN_STATICS[obj.name] &&
        FORBIDDEN_STATICS[obj.name].includes(name) &&
        !allow.includes(obj.name + '.' + name)
      ) {
        add('uses ' + obj.name + '.' + name, node);
      } else if (
        obj.type === 'MemberExpression' &&
        propName(obj) === 'prototype' &&
        obj.object.type === 'Identifier' &&
        PROTOTYPE_READS.includes(obj.object.name)
      ) {
        if (!(parent && parent.type === 'AssignmentExpression' && parent.left === node))
          add('reads ' + obj.object.name + '.prototype.' + name + ' (undefined on Espruino)', node);
      } else if (methods.has(name) && parent && parent.type === 'CallExpression' && parent.callee === node && !allow.includes('.' + name)) {
        add('calls .' + name + '()', node);
      }
    }
  });
  return findings;
}

/** Throws one error listing every finding (for the build). */
export function assertImage(code: string, file: string, opts?: CheckOptions): void {
  const findings = checkImage(code, opts);
  if (findings.length) {
    throw new Error(`${file} is not a valid ES5 image:\n` + findings.map((f) => `  line ${f.line}: ${f.message}`).join('\n'));
  }
}

/** The line acorn reports a syntax error at (its SyntaxError carries `loc`), 0 when unknown. */
function syntaxErrorLine(e: unknown): number {
  if (typeof e !== 'object' || e === null || !('loc' in e)) return 0;
  const loc = e.loc;
  return typeof loc === 'object' && loc !== null && 'line' in loc && typeof loc.line === 'number' ? loc.line : 0;
}
