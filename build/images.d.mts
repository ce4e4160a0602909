// Types of build/images.mjs (a plain-JavaScript build script) for the TypeScript that imports it.

/** One ES5 image the build makes. */
export interface ImageSpec {
  name: string;
  input: string;
  extraExports: Record<string, string>;
  file: string;
  globalName: string;
  minify: boolean;
  allow: string[];
  snapshot?: boolean;
  globalScope?: boolean;
}

export function listImages(): ImageSpec[];
export function minFile(file: string): string;
