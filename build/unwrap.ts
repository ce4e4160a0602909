/**
 * Unwrapped images (board.json `"globalScope": true`, docs/image.md): the minified image without
 * its wrapping function, its module-level names turned into short globals.
 *
 * Why: on Espruino every function object keeps a reference to the scopes it was defined in. Inside
 * the wrapping `var E4 = function (e) { … }({})` each module-level function costs one variable
 * more, and each closure made by a factory (`create()`, `flashStore()`, …) gets a fresh list of two
 * scopes (3–5 variables) instead of a single reference. At global scope neither exists (measured
 * on the 2,630-variable Espruino: 272 variables less for the Puck.js runtime after boot).
 *
 * Names: the module-level names become `E4` followed by one or two characters (`E4a`, `E4Qe`):
 * Espruino stores a name of up to 4 characters inside its variable, so they cost nothing more
 * than the mangled local names did. The wrapping function's parameter (the exports object) is the
 * global `E4` itself. A new name is never one that occurs anywhere in the image, so no inner scope
 * can shadow it; the application must not define globals of the form `E4…` (README).
 *
 * The renaming uses terser's own scope analysis (the AST of the minification just done, whose
 * symbol definitions know their scope), so a local that shadows a module-level name is untouched.
 * The `"use strict"` directive of the wrapper is dropped: at global scope it would make a direct
 * `eval` of the image (how Espruino boots it) keep its `var`s local in a conforming engine.
 *
 * Two more rewrites follow, for the same reason (variables an Espruino function object or global
 * keeps for good): constants written where they are used (inlineConstants) and parameters taken
 * from `arguments` (paramsFromArguments). Puck.js runtime after boot: 1,718 -> 1,442 (unwrapped)
 * -> 1,385 (constants) -> 1,155 variables (parameters).
 */
import { parse, tokenizer } from 'acorn';
import type { AnyNode } from 'acorn';
import { minify } from 'terser';
import type { FormatOptions } from 'terser';
import { childNodes, isFunction } from './estree.ts';
import type { FunctionNode } from './estree.ts';
import type { TerserOptions } from './minify.ts';
import { isAst, isSymbol, isToplevel } from './terser-ast.ts';
import type { AstFunction, AstNode, AstToplevel, SymbolDef } from './terser-ast.ts';

const CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$';

/** Every symbol name the image uses (declared, referenced, global), as printed. */
function namesIn(ast: AstNode): Set<string> {
  const names = new Set<string>();
  ast.walk({
    _visit(node, descend) {
      if (isSymbol(node)) {
        const def = node.thedef;
        names.add(node.name);
        if (def) names.add(def.mangled_name || def.name);
      }
      if (isAst(node, 'Dot') && typeof node.property === 'string') names.add(node.property);
      if (isAst(node, 'ObjectKeyVal') && typeof node.key === 'string') names.add(node.key);
      if (descend) descend.call(node);
    },
  });
  return names;
}

/** `E4` + one or two characters, skipping every name in `taken`. */
function* globalNames(taken: Set<string>): Generator<string> {
  for (const a of CHARS) {
    const n = 'E4' + a;
    if (!taken.has(n)) yield n;
  }
  for (const a of CHARS) {
    for (const b of CHARS) {
      const n = 'E4' + a + b;
      if (!taken.has(n)) yield n;
    }
  }
}

/**
 * `code`: the readable image (`var G = function (exports) { … return exports; }({});` plus the
 * CommonJS footer). Returns the minified, unwrapped image.
 */
export async function minifyUnwrapped(code: string, options: TerserOptions): Promise<string> {
  // `ast: true, code: false`: terser's format options for the tree instead of the text (kept by
  // terser, absent from its .d.ts, as is the `ast` of the result).
  const format: FormatOptions & { ast: boolean; code: boolean } = { ...options.format, ast: true, code: false };
  const out = await minify(code, { ...options, format });
  if (!('ast' in out) || !isToplevel(out.ast)) throw new Error('unwrap: terser returned no syntax tree');
  const ast = out.ast;
  const [decl, ...footer] = ast.body;
  const def = isAst(decl, 'Var') && decl.definitions.length === 1 ? decl.definitions[0] : null;
  const call = def && isAst(def.value, 'Call') ? def.value : null;
  const fn = call && isAst(call.expression, 'Function') ? call.expression : null;
  const arg = call && call.args.length === 1 ? call.args[0] : null;
  if (!def || !fn || fn.argnames.length !== 1 || !isAst(arg, 'Object') || arg.properties.length) {
    throw new Error('unwrap: the image is not `var G = function (exports) { … }({})`');
  }
  const globalName = def.name.name;
  const exportsDef = fn.argnames[0].thedef;
  const body = fn.body.slice();
  const last = body.pop();
  if (!exportsDef || !isAst(last, 'Return') || !isAst(last.value, 'SymbolRef') || last.value.thedef !== exportsDef) {
    throw new Error('unwrap: the wrapping function does not end with `return exports`');
  }
  const taken = namesIn(ast);
  taken.add(globalName);
  const fresh = globalNames(taken);
  exportsDef.mangled_name = globalName;
  for (const [name, d] of fn.variables) {
    if (name === 'arguments' || d === exportsDef) continue;
    const n = fresh.next();
    if (n.done) throw new Error('unwrap: out of global names');
    d.mangled_name = n.value;
  }
  const constants = inlineConstants(ast, fn, body);
  // The declaration itself becomes `var G = {}`, followed by the function's statements.
  def.value = arg;
  ast.body = [decl].concat(
    body.filter((stmt) => stmt.TYPE !== 'Directive' && !(isAst(stmt, 'Var') && !stmt.definitions.length)),
    footer,
  );
  return paramsFromArguments(replaceNames(ast.print_to_string(options.format), constants));
}

/** What a function's own body (not the functions inside it) holds: a use of `arguments`, a function. */
function bodyHolds(fn: FunctionNode): { args: boolean; fn: boolean } {
  const found = { args: false, fn: false };
  (function walk(n: AnyNode, top: boolean): void {
    if (!top && isFunction(n)) {
      found.fn = true;
      return;
    }
    if (n.type === 'Identifier' && n.name === 'arguments') found.args = true;
    for (const c of childNodes(n)) walk(c, false);
  })(fn.body, true);
  return found;
}

/**
 * Functions take their parameters from `arguments`: `function f(a,b){…}` becomes
 * `function f(){var a=arguments[0],b=arguments[1];…}`. On Espruino every parameter name is a
 * variable of the function object for good (one per parameter), while the locals exist only
 * during a call. Espruino looks `arguments` up through the scope chain (a closure finds its
 * enclosing function's when that one has it), so only functions that hold no function, that don't
 * name `arguments` themselves and whose enclosing functions don't either are rewritten. A
 * function that holds a closure keeps its parameters: the closure would keep its scope alive,
 * `arguments` included (measured: that costs more than the parameters saved).
 * Puck.js on espruino32-2630: 1,385 -> 1,155 variables after boot, for 3.8 KB more flash; protect /
 * unprotect of 64 bytes as fast as before within the noise of the shared host.
 */
export function paramsFromArguments(code: string): string {
  const ast = parse(code, { ecmaVersion: 5 });
  const fns: FunctionNode[] = [];
  (function walk(n: AnyNode, outerArgs: boolean): void {
    if (isFunction(n)) {
      const holds = bodyHolds(n);
      if (!holds.fn && !holds.args && !outerArgs && n.params.length) fns.push(n);
      outerArgs = outerArgs || holds.args;
    }
    for (const c of childNodes(n)) walk(c, outerArgs);
  })(ast, false);
  const edits: { start: number; end: number; text: string }[] = [];
  for (const fn of fns) {
    const names = fn.params.map((p) => {
      // ES5 parameters are plain names (no patterns, defaults or rest).
      if (p.type !== 'Identifier') throw new Error('unwrap: a function parameter that is not a name');
      return p.name;
    });
    edits.push({ start: fn.params[0].start, end: fn.params[fn.params.length - 1].end, text: '' });
    edits.push({
      start: fn.body.start + 1,
      end: fn.body.start + 1,
      text: 'var ' + names.map((name, i) => `${name}=arguments[${i}]`).join(',') + ';',
    });
  }
  edits.sort((a, b) => b.start - a.start);
  let out = code;
  for (const e of edits) out = out.slice(0, e.start) + e.text + out.slice(e.end);
  return out;
}

/** A literal that can stand for the name: number (also negative), string, boolean. */
function literalOf(node: AstNode | null): string | null {
  if (!node) return null;
  if (node.TYPE === 'Number' || node.TYPE === 'String' || node.TYPE === 'True' || node.TYPE === 'False') return node.print_to_string();
  if (isAst(node, 'UnaryPrefix') && node.operator === '-' && node.expression.TYPE === 'Number') return '(' + node.print_to_string() + ')';
  return null;
}

/**
 * Module-level constants (`var X = <literal>` never assigned again) are written where they are
 * used and their declarations dropped: on Espruino each such global is a variable for good
 * (1–3 each), the literal in the code stays in flash. Returns { newName: literal }.
 */
function inlineConstants(ast: AstToplevel, fn: AstFunction, body: AstNode[]): Record<string, string> {
  const assigned = new Set<SymbolDef | undefined>();
  ast.walk({
    _visit(node, descend) {
      if (isAst(node, 'Assign') && isAst(node.left, 'SymbolRef')) assigned.add(node.left.thedef);
      if (
        (isAst(node, 'UnaryPrefix') || isAst(node, 'UnaryPostfix')) &&
        (node.operator === '++' || node.operator === '--') &&
        isAst(node.expression, 'SymbolRef')
      )
        assigned.add(node.expression.thedef);
      if (descend) descend.call(node);
    },
  });
  const constants: Record<string, string> = {};
  for (const stmt of body) {
    if (!isAst(stmt, 'Var')) continue;
    stmt.definitions = stmt.definitions.filter((vd) => {
      const d = vd.name.thedef;
      const lit = literalOf(vd.value);
      // Every name of the wrapping function has its new global name (mangled_name) by now.
      if (!lit || !d || d.mangled_name === null || d.scope !== fn || d.orig.length !== 1 || assigned.has(d)) return true;
      constants[d.mangled_name] = lit;
      return false;
    });
  }
  return constants;
}

/** Every identifier token named in `map` (never a property: no property has such a name) is
 * replaced by its literal; a number before a `.` gets parentheses. */
function replaceNames(code: string, map: Record<string, string>): string {
  const tokens = [...tokenizer(code, { ecmaVersion: 5 })];
  let out = '';
  let at = 0;
  tokens.forEach((t, i) => {
    // A token is `{ start, end, type, value }` (acorn's README; its .d.ts leaves `value` out).
    const name = 'value' in t ? t.value : undefined;
    if (t.type.label !== 'name' || typeof name !== 'string' || !Object.prototype.hasOwnProperty.call(map, name)) return;
    if (i > 0 && tokens[i - 1].type.label === '.') throw new Error(`unwrap: ${name} used as a property`);
    let lit = map[name];
    const next = tokens[i + 1];
    if (/^[0-9]/.test(lit) && next && next.type.label === '.') lit = '(' + lit + ')';
    out += code.slice(at, t.start) + lit;
    at = t.end;
  });
  return out + code.slice(at);
}
