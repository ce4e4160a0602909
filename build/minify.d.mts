// Types of minify.mjs (a build script in plain JavaScript) for the TypeScript code that imports it.
import type { MinifyOptions } from 'terser';

export declare const TERSER_OPTIONS: MinifyOptions & { format: NonNullable<MinifyOptions['format']> };
/** The minified image (terser with TERSER_OPTIONS). */
export declare function minifyImage(code: string): Promise<string>;
