/**
 * The shell blocks of the README and docs/, so that tests run them as written. Every block is
 * preceded by one marker comment saying who runs it:
 *   <!-- run: NAME -->           a test runs it: `docBlock('NAME')` + `runDocBlock`
 *   <!-- walkthrough: NAME -->   the same, for the walkthroughs of docs/boards.md
 *   <!-- not run here: WHY -->   needs what no test machine has (a board, a Bluetooth adapter)
 * test/docs-commands.test.ts fails on a block without a marker, and on a NAME no test runs.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ROOT = join(__dirname, '..', '..');

export interface DocBlock {
  file: string;
  line: number;
  kind: 'run' | 'walkthrough' | 'not run here' | null;
  /** The name after `run:`/`walkthrough:`, or the reason after `not run here:`. */
  name: string;
  text: string;
}

function markdownFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    if (name === 'node_modules' || name === 'dist' || name.startsWith('.')) continue;
    const rel = dir === '.' ? name : join(dir, name);
    if (statSync(join(ROOT, rel)).isDirectory()) {
      if (dir === '.' && !['docs', 'boards', 'examples', 'host-sim'].includes(name)) continue;
      out.push(...markdownFiles(rel));
    } else if (name.endsWith('.md') && (dir !== '.' || name === 'README.md')) out.push(rel);
  }
  return out;
}

/** Every ```sh / ```bash block of README.md, docs/, boards/, examples/ and host-sim/. */
export function docBlocks(): DocBlock[] {
  const out: DocBlock[] = [];
  for (const file of markdownFiles('.').sort()) {
    const src = readFileSync(join(ROOT, file), 'utf8');
    for (const m of src.matchAll(/(?:<!--\s*(run|walkthrough|not run here):\s*([^\n]*?)\s*-->\n)?```(?:sh|bash|shell)\n([\s\S]*?)```/g)) {
      out.push({
        file,
        line: src.slice(0, m.index).split('\n').length,
        kind: (m[1] as DocBlock['kind']) ?? null,
        // A run/walkthrough name is one word; words after it are a note for the reader.
        name: m[1] === 'not run here' ? (m[2] ?? '') : (m[2] ?? '').split(/\s+/)[0],
        text: m[3],
      });
    }
  }
  return out;
}

/** The block marked `run: NAME` or `walkthrough: NAME` (exactly one). */
export function docBlock(name: string): DocBlock {
  const found = docBlocks().filter((b) => (b.kind === 'run' || b.kind === 'walkthrough') && b.name === name);
  if (found.length !== 1) throw new Error(`${found.length} doc blocks named "${name}" (expected one)`);
  return found[0];
}

/** Lines the suite has already run (`npm test` builds first): left out so dist/ is not rebuilt
 * under the other suites' feet. */
const ALREADY_DONE = ['npm run build', 'npm ci && npm run build', 'npm ci', 'npm install'];

/** The block's commands: one per line, continuation lines joined, comments and blank lines kept
 * out of the count but not changed. */
export function commandsOf(block: DocBlock): string[] {
  return block.text
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .filter((l) => l.trim() && !l.trim().startsWith('#'))
    .filter((l) => !ALREADY_DONE.includes(l.replace(/\s+#.*$/, '').trim()));
}

export interface DocRun {
  status: number | null;
  out: string;
  /** The folder the block ran in (a fresh clone's shape); removed by `cleanup()`. */
  dir: string;
  cleanup(): void;
}

/**
 * Runs a block as a user would from a fresh clone: in a new folder holding the package's files
 * (linked) and its own HOME, with `bash -e` so the first failing command fails the block. With
 * `broker`, in a private network namespace (only loopback) where mosquitto listens on port 1883,
 * the port the docs use, so nothing collides with other tests.
 */
export function runDocBlock(block: DocBlock, { broker = false, timeoutMs = 5 * 60 * 1000 } = {}): DocRun {
  const dir = mkdtempSync(join(tmpdir(), 'e4-doc-'));
  for (const f of readdirSync(ROOT)) {
    if (f === '.git' || f === 'keys' || f === '.c2') continue;
    symlinkSync(join(ROOT, f), join(dir, f));
  }
  mkdirSync(join(dir, 'home'));
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: join(dir, 'home') };
  delete env.INIT_CWD;
  delete env.npm_lifecycle_event;
  const commands = commandsOf(block).join('\n');
  const script = broker
    ? [
        'ip link set lo up',
        'mosquitto -p 1883 > /dev/null 2>&1 & broker=$!',
        'trap "kill $broker" EXIT',
        'for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/1883) 2> /dev/null && break; sleep 0.1; done',
        'set -e',
        commands,
      ].join('\n')
    : 'set -e\n' + commands;
  const root = process.getuid?.() === 0;
  const r = broker
    ? spawnSync('unshare', [...(root ? [] : ['-r']), '-n', 'bash', '-c', script], { cwd: dir, env, encoding: 'utf8', timeout: timeoutMs })
    : spawnSync('bash', ['-c', script], { cwd: dir, env, encoding: 'utf8', timeout: timeoutMs });
  return {
    status: r.status,
    out: `${block.file}:${block.line}\n${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`,
    dir,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
