// Types of unwrap.mjs (a build script in plain JavaScript) for the TypeScript code that imports it.
import type { MinifyOptions } from 'terser';

/** The readable image minified and unwrapped (its exports as globals). */
export declare function minifyUnwrapped(code: string, options: MinifyOptions & { format: NonNullable<MinifyOptions['format']> }): Promise<string>;
/** `code` with the parameters of closure-free functions read from `arguments` instead. */
export declare function paramsFromArguments(code: string): string;
