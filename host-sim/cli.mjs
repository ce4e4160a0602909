/**
 * What every host command shares: run `main` only when the file is the script node started, and,
 * for the long-running services (broker, gateway, proxy), stop cleanly on SIGINT/SIGTERM.
 */
import { pathToFileURL } from 'node:url';

/**
 * Runs `main(argv)` when `moduleUrl` (the caller's import.meta.url) is the script node was started
 * with. A number it resolves to is the exit code; an error is reported as `name: message`, exit 1.
 */
export function runIfMain(moduleUrl, name, main) {
  if (moduleUrl !== pathToFileURL(process.argv[1] || '').href) return;
  main(process.argv.slice(2)).then(
    (code) => {
      if (typeof code === 'number') process.exit(code);
    },
    (e) => {
      process.stderr.write(`${name}: ${e.message}\n`);
      process.exit(1);
    },
  );
}

/** A service that runs until SIGINT or SIGTERM, then `stop()`s and exits 0. */
export function stopOnSignal(stop) {
  const end = () => Promise.resolve(stop()).then(() => process.exit(0));
  process.on('SIGINT', end);
  process.on('SIGTERM', end);
}
