/**
 * build/unwrap.ts: the unwrapped form of an image behaves like the wrapped one, defines only
 * `E4` and names of the form `E4` + 1–2 characters, leaves a local that shadows a module-level
 * name alone, writes constants where they are used, and takes parameters from `arguments` only
 * where Espruino resolves `arguments` to the function's own.
 */
import { describe, expect, it } from 'vitest';
import vm from 'node:vm';
import { minifyUnwrapped, paramsFromArguments } from '../build/unwrap.ts';
import { TERSER_OPTIONS } from '../build/minify.ts';

const IMAGE = `var E4 = (function (exports) {
  "use strict";
  var LIMIT = 16, NAME = "e4.json", NEG = -100, counter = 0;
  function add(a, b) { return a + b; }
  function shadow(add) { return add * 2; }
  function bump() { counter++; return counter; }
  function factory(base) {
    var n = 0;
    return {
      next: function (step) { n += step; return add(base, n); },
      all: function () { return arguments.length; },
    };
  }
  function variadic() { return arguments.length; }
  exports.add = add; exports.shadow = shadow; exports.bump = bump; exports.factory = factory;
  exports.variadic = variadic; exports.consts = function () { return [LIMIT, NAME, NEG, (LIMIT).toString(16)]; };
  return exports;
})({});
if (typeof module === "object" && module && typeof module.exports === "object") module.exports = E4;`;

/** What IMAGE exports (its global E4). */
interface TestImage {
  add(a: number, b: number): number;
  shadow(n: number): number;
  bump(): number;
  factory(n: number): { next(n: number): number; all(...a: number[]): number };
  variadic(...a: number[]): number;
  consts(): unknown[];
}

/** A fresh realm with `code` run in it: its globals. */
function run(code: string): vm.Context {
  const ctx = vm.createContext({});
  vm.runInContext(code, ctx);
  return ctx;
}

describe('unwrapped images', () => {
  it('behave as the wrapped image and define only E4 and E4 + 1-2 characters', async () => {
    const code = await minifyUnwrapped(IMAGE, TERSER_OPTIONS);
    const ctx = run(code);
    const wrapped: TestImage = run(IMAGE).E4;
    const E4: TestImage = ctx.E4;
    expect(E4.add(2, 3)).toBe(wrapped.add(2, 3));
    expect(E4.shadow(21)).toBe(42);
    expect([E4.bump(), E4.bump()]).toEqual([1, 2]);
    const f = E4.factory(10);
    expect([f.next(1), f.next(2), f.all(1, 2, 3)]).toEqual([11, 13, 3]);
    expect(E4.variadic(1, 2, 3, 4)).toBe(4);
    expect(E4.consts()).toEqual([16, 'e4.json', -100, '10']);
    for (const name of Object.keys(ctx)) expect(name).toMatch(/^E4(.{1,2})?$/);
    expect(code).not.toContain('"use strict"');
  });

  it('writes never-reassigned constants where they are used and keeps a reassigned one', async () => {
    const code = await minifyUnwrapped(IMAGE, TERSER_OPTIONS);
    expect(code).toContain('(-100)');
    expect(code).toContain('"e4.json"');
    expect(code).toContain('(16).toString(16)');
    const globals = Object.keys(run(code));
    // counter is assigned (counter++): it stays a variable.
    expect(globals.length).toBeGreaterThan(1);
    expect(code).toMatch(/var E4[\w$]{1,2}=0/);
  });

  it('takes parameters from arguments only in functions that hold no function and see no other arguments', () => {
    const out = paramsFromArguments(
      'function a(x,y){return x+y}function f(p){return function(q){return p+q}}function g(){var h=function(r){return r};return arguments.length+h(1)}var o={m:function(s){return s}};',
    );
    expect(out).toContain('function a(){var x=arguments[0],y=arguments[1];return x+y}');
    // f holds a closure: it keeps p; the closure holds nothing and sees no arguments: rewritten.
    expect(out).toContain('function f(p){return function(){var q=arguments[0];return p+q}}');
    // g names arguments: neither g nor the function inside it is rewritten.
    expect(out).toContain('var h=function(r){return r}');
    expect(out).toContain('{m:function(){var s=arguments[0];return s}}');
  });
});
