// Types of build/deps.mjs (a plain-JavaScript build script) for the TypeScript that imports it.

/** One pinned rewrite of a dependency file: `find` occurs exactly once and is replaced. */
export interface PatchEdit {
  find: string;
  replace: string | ((found: string) => string | Promise<string>);
}

export interface Patch {
  version: string;
  sha256: string;
  edits: PatchEdit[];
}

export const PATCHES: Record<string, Patch>;
export function sha256(text: string): string;
export function depName(id: string): string | null;
export function applyPatch(name: string, text: string): Promise<string>;
/** Rollup plugin: loads the pinned dependency files through their rewrite. */
export function pinnedRewrites(): { name: string; load(id: string): Promise<string | null> };
