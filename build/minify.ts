/**
 * Minification of the images: terser with mangling and one compress step, `join_vars`.
 *
 * terser's full `compress` produced silently wrong AES-SIV output on Espruino (docs/targets.md: it
 * moved `var` declarations after their first use, and Espruino does not hoist `var`). Mangling
 * renames local variables and moves nothing. `join_vars` only merges `var` statements into an
 * earlier `var` statement of the same block (or into the init of the `for` that follows it) and
 * folds `o.k = v` assignments into the object literal just before them: a declaration can move
 * earlier, never later, so code that runs without hoisting still does. Every other compress
 * option is off but `booleans`, which only rewrites expressions in place (`true` as `!0`, `!!x` in a
 * test as `x`): nothing moves. Proven by the conformance suite on Espruino 2v29 (Linux), Duktape 2.7 and Node
 * (docs/image.md); it saves ~3 % over mangling alone. Output is ES5, checked like the readable
 * image.
 */
import { minify } from 'terser';
import type { FormatOptions, MinifyOptions } from 'terser';

/** terser options with the output format spelt out (build/unwrap.ts prints with the same format). */
export interface TerserOptions extends MinifyOptions {
  format: FormatOptions;
}

export const TERSER_OPTIONS: TerserOptions = {
  ecma: 5,
  compress: { defaults: false, join_vars: true, booleans: true },
  mangle: { toplevel: false },
  // Keeps every catch parameter's name distinct from its function's names: MicroQuickJS (strict)
  // refuses a catch parameter that repeats one (build/check.ts checks the result).
  ie8: true,
  format: { ecma: 5, comments: false, ascii_only: true },
  module: false,
  toplevel: false,
};

export async function minifyImage(code: string): Promise<string> {
  const out = await minify(code, TERSER_OPTIONS);
  if (out.code === undefined) throw new Error('terser returned no code');
  return out.code;
}
