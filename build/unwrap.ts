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
import { minify } from 'terser';

const CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$';

/** Every symbol name the image uses (declared, referenced, global), as printed. */
function namesIn(ast) {
  const names = new Set();
  ast.walk({
    _visit(node, descend) {
      if (node.TYPE && node.TYPE.startsWith('Symbol')) {
        const def = node.thedef;
        names.add(node.name);
        if (def) names.add(def.mangled_name || def.name);
      }
      if (node.TYPE === 'Dot' && typeof node.property === 'string') names.add(node.property);
      if (node.TYPE === 'ObjectKeyVal' && typeof node.key === 'string') names.add(node.key);
      if (descend) descend.call(node);
    },
  });
  return names;
}

/** `E4` + one or two characters, skipping every name in `taken`. */
function* globalNames(taken) {
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
export async function minifyUnwrapped(code, options) {
  const out = await minify(code, { ...options, format: { ...options.format, ast: true, code: false } });
  const ast = out.ast;
  const [decl, ...footer] = ast.body;
  const def = decl && decl.TYPE === 'Var' && decl.definitions.length === 1 ? decl.definitions[0] : null;
  const call = def && def.value && def.value.TYPE === 'Call' ? def.value : null;
  const fn = call && call.expression.TYPE === 'Function' ? call.expression : null;
  if (!fn || fn.argnames.length !== 1 || call.args.length !== 1 || call.args[0].TYPE !== 'Object' || call.args[0].properties.length) {
    throw new Error('unwrap: the image is not `var G = function (exports) { … }({})`');
  }
  const globalName = def.name.name;
  const exportsDef = fn.argnames[0].thedef;
  const body = fn.body.slice();
  const last = body.pop();
  if (!last || last.TYPE !== 'Return' || !last.value || last.value.TYPE !== 'SymbolRef' || last.value.thedef !== exportsDef) {
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
  def.value = call.args[0];
  ast.body = [decl].concat(body.filter((stmt) => stmt.TYPE !== 'Directive' && !(stmt.TYPE === 'Var' && !stmt.definitions.length)), footer);
  return paramsFromArguments(replaceNames(ast.print_to_string(options.format), constants));
}

const isFunction = (n) => n && (n.type === 'FunctionDeclaration' || n.type === 'FunctionExpression');

/** What a function's own body (not the functions inside it) holds: a use of `arguments`, a function. */
function bodyHolds(fn) {
  const found = { args: false, fn: false };
  (function walk(n, top) {
    if (!n || typeof n.type !== 'string') return;
    if (!top && isFunction(n)) {
      found.fn = true;
      return;
    }
    if (n.type === 'Identifier' && n.name === 'arguments') found.args = true;
    for (const k in n) {
      const v = n[k];
      if (Array.isArray(v)) v.forEach((c) => walk(c, false));
      else if (v && typeof v.type === 'string') walk(v, false);
    }
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
export function paramsFromArguments(code) {
  const ast = parse(code, { ecmaVersion: 5 });
  const fns = [];
  (function walk(n, outerArgs) {
    if (!n || typeof n.type !== 'string') return;
    if (isFunction(n)) {
      const holds = bodyHolds(n);
      if (!holds.fn && !holds.args && !outerArgs && n.params.length) fns.push(n);
      outerArgs = outerArgs || holds.args;
    }
    for (const k in n) {
      const v = n[k];
      if (Array.isArray(v)) v.forEach((c) => walk(c, outerArgs));
      else if (v && typeof v.type === 'string') walk(v, outerArgs);
    }
  })(ast, false);
  const edits = [];
  for (const fn of fns) {
    edits.push({ start: fn.params[0].start, end: fn.params[fn.params.length - 1].end, text: '' });
    edits.push({ start: fn.body.start + 1, end: fn.body.start + 1, text: 'var ' + fn.params.map((p, i) => `${p.name}=arguments[${i}]`).join(',') + ';' });
  }
  edits.sort((a, b) => b.start - a.start);
  let out = code;
  for (const e of edits) out = out.slice(0, e.start) + e.text + out.slice(e.end);
  return out;
}

/** A literal that can stand for the name: number (also negative), string, boolean. */
function literalOf(node) {
  if (!node) return null;
  if (node.TYPE === 'Number' || node.TYPE === 'String' || node.TYPE === 'True' || node.TYPE === 'False') return node.print_to_string();
  if (node.TYPE === 'UnaryPrefix' && node.operator === '-' && node.expression.TYPE === 'Number') return '(' + node.print_to_string() + ')';
  return null;
}

/**
 * Module-level constants (`var X = <literal>` never assigned again) are written where they are
 * used and their declarations dropped: on Espruino each such global is a variable for good
 * (1–3 each), the literal in the code stays in flash. Returns { newName: literal }.
 */
function inlineConstants(ast, fn, body) {
  const assigned = new Set();
  ast.walk({
    _visit(node, descend) {
      if (node.TYPE === 'Assign' && node.left.TYPE === 'SymbolRef') assigned.add(node.left.thedef);
      if ((node.TYPE === 'UnaryPrefix' || node.TYPE === 'UnaryPostfix') && (node.operator === '++' || node.operator === '--') && node.expression.TYPE === 'SymbolRef') assigned.add(node.expression.thedef);
      if (descend) descend.call(node);
    },
  });
  const constants = {};
  for (const stmt of body) {
    if (stmt.TYPE !== 'Var') continue;
    stmt.definitions = stmt.definitions.filter((vd) => {
      const d = vd.name.thedef;
      const lit = literalOf(vd.value);
      if (!lit || !d || d.scope !== fn || d.orig.length !== 1 || assigned.has(d)) return true;
      constants[d.mangled_name] = lit;
      return false;
    });
  }
  return constants;
}

/** Every identifier token named in `map` (never a property: no property has such a name) is
 * replaced by its literal; a number before a `.` gets parentheses. */
function replaceNames(code, map) {
  const tokens = [...tokenizer(code, { ecmaVersion: 5 })];
  let out = '';
  let at = 0;
  tokens.forEach((t, i) => {
    if (t.type.label !== 'name' || !Object.prototype.hasOwnProperty.call(map, t.value)) return;
    if (i > 0 && tokens[i - 1].type.label === '.') throw new Error(`unwrap: ${t.value} used as a property`);
    let lit = map[t.value];
    const next = tokens[i + 1];
    if (/^[0-9]/.test(lit) && next && next.type.label === '.') lit = '(' + lit + ')';
    out += code.slice(at, t.start) + lit;
    at = t.end;
  });
  return out + code.slice(at);
}
