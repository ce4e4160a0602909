/**
 * Minification of the images: terser with mangling only. terser's `compress` produced silently
 * wrong AES-SIV output on Espruino (it moves `var` declarations after their first use, and
 * Espruino does not hoist `var`); renaming local variables changes no behaviour. The output is
 * ES5 and checked like the readable image.
 */
import { minify } from 'terser';

export const TERSER_OPTIONS = {
  ecma: 5,
  compress: false,
  mangle: { toplevel: false, safari10: false },
  format: { ecma: 5, comments: false, ascii_only: true, beautify: false },
  module: false,
  toplevel: false,
  keep_fnames: false,
};

export async function minifyImage(code) {
  const out = await minify(code, TERSER_OPTIONS);
  return out.code;
}
