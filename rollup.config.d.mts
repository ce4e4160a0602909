// Types of rollup.config.mjs (plain JavaScript, run by rollup) for the TypeScript tools that import it.
import type { OutputOptions, Plugin, RollupOptions } from 'rollup';

/** One build per image: its entry, its plugins (in order) and its output. */
declare const configs: (RollupOptions & { input: string; plugins: Plugin[]; output: OutputOptions })[];
export default configs;
