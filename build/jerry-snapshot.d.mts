// Types of jerry-snapshot.mjs (a build script in plain JavaScript) for the TypeScript code that imports it.
import type { Plugin } from 'rollup';

/** The snapshot files of an image (snapshotFiles, makeSnapshots). */
export interface SnapshotFiles {
  snapshot: string;
  literals: string;
  literalsC: string;
  staticSnapshot: string;
}

export declare function staticSnapshotLiterals(code: string): string;
/** Full path of a tool given by name ($E4_ENGINES, then $PATH) or path, or null when absent. */
export declare function findTool(name: string): string | null;
export declare function snapshotGenerator(): string | null;
export declare function snapshotFiles(image: string, outDir: string): SnapshotFiles;
export declare function makeSnapshots(image: string, outDir: string, generator: string): SnapshotFiles;
export declare function jerrySnapshots(): Plugin;
