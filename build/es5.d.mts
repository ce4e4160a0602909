// Types of es5.mjs (a build script in plain JavaScript) for the TypeScript code that imports it.
import type { Plugin } from 'rollup';

export declare const root: string;
/** Dependency module -> the build/image/ module an ES5 image gets instead. */
export declare const IMAGE_SUBSTITUTES: Record<string, string>;
export declare function resolveSources(options?: { substitutes?: Record<string, string> }): Plugin;
export declare function lowerToES5(): Plugin;
