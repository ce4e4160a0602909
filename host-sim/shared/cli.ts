/**
 * What every host command shares: run `main` only when the file is the script node started, and,
 * for the long-running services (broker, gateway, proxy), stop cleanly on SIGINT/SIGTERM.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

/**
 * Host code is TypeScript run through the tsx loader (no compile step, so a clone runs as it is).
 * A child node process that runs one of these files gets the loader by its absolute URL: `--import
 * tsx` alone would be resolved from the child's working folder, which may be anywhere.
 */
export const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm')).href;

/** node's arguments to run a host `.ts` file: `spawn(process.execPath, [...TS_NODE, file, ...])`. */
export const TS_NODE = ['--import', TSX_LOADER];

/**
 * Whether `moduleUrl` (the caller's import.meta.url) is the script node was started with.
 * Through a symbolic link (an npm bin link, a linked folder) node names the link in argv[1] and
 * the target in import.meta.url: compare real paths, or a tool started that way does nothing and
 * exits 0.
 */
export function isMain(moduleUrl: string): boolean {
  let started = process.argv[1] || '';
  if (!started) return false;
  try {
    started = realpathSync(started);
  } catch {
    return false; // not a file: cannot be this module
  }
  return moduleUrl === pathToFileURL(started).href;
}

/**
 * Runs `main(argv)` when `moduleUrl` (the caller's import.meta.url) is the script node was started
 * with. A number it resolves to is the exit code; an error is reported as `name: message`, exit 1.
 */
export function runIfMain(moduleUrl: string, name: string, main: (argv: string[]) => Promise<number | void | undefined>): void {
  if (!isMain(moduleUrl)) return;
  main(process.argv.slice(2)).then(
    (code) => {
      if (typeof code === 'number') process.exit(code);
    },
    (e: unknown) => {
      process.stderr.write(`${name}: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}

/** A wrong command line: the tools print the message and usage, and exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A service that runs until SIGINT or SIGTERM, then `stop()`s and exits 0. */
export function stopOnSignal(stop: () => unknown): void {
  const end = () => Promise.resolve(stop()).then(() => process.exit(0));
  process.on('SIGINT', end);
  process.on('SIGTERM', end);
}

/**
 * `npm run <script>` starts a tool in the package's folder and says where the user was in
 * INIT_CWD: relative paths on the command line are the user's, so the tool works from there.
 * Only when npm ran this very script (npm_lifecycle_event): a tool started by another script
 * (e.g. a test under `npm test`) keeps the folder it was started in.
 */
export function useCallerFolder(script: string): void {
  const dir = process.env.INIT_CWD;
  if (dir && process.env.npm_lifecycle_event === script && dir !== process.cwd()) process.chdir(dir);
}

/** The package's version (package.json), for --version. */
export function packageVersion(): string {
  const url = new URL('../../package.json', import.meta.url);
  const pkg: { version: string } = JSON.parse(readFileSync(url, 'utf8'));
  return pkg.version;
}

/**
 * `--help`/`-h` prints `usage`, `--version` the package's version: both answer at once, before
 * anything is built, measured or written. Returns the exit code (0) when one was asked, else null.
 */
export function answerHelpOrVersion(argv: readonly string[], usage: string): 0 | null {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(usage);
    return 0;
  }
  if (argv.includes('--version')) {
    console.log(packageVersion());
    return 0;
  }
  return null;
}
