// Types of build/check.mjs (a plain-JavaScript build script) for the TypeScript that imports it.

/** A problem found in an image: what, and the line it is on. */
export interface Finding {
  message: string;
  line: number;
}

export interface CheckOptions {
  /** Forbidden globals (`require`), statics (`Object.keys`) or methods (`.fill`) this image may use. */
  allow?: string[];
}

export const FORBIDDEN_GLOBALS: string[];
export const FORBIDDEN_STATICS: Record<string, string[]>;
export const FORBIDDEN_METHODS: string[];
export const ERROR_ACCESSORS: string[];
export function checkImage(code: string, options?: CheckOptions): Finding[];
export function assertImage(code: string, file: string, options?: CheckOptions): void;
