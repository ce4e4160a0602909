/**
 * The README's worked example runs as written against the built portable image, in a sandbox
 * like the device's, and prints what its comments say.
 */
import { expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

it('README worked example runs against dist/e4.js and prints what it says', () => {
  const at = readme.indexOf('<!-- example:api');
  expect(at).toBeGreaterThan(0);
  const block = readme.slice(at).match(/```js\n([\s\S]*?)```/)![1];
  const expected = block
    .split('\n')
    .filter((l) => /^\s*print\(/.test(l) && l.includes('//'))
    .map((l) =>
      l
        .slice(l.indexOf('//') + 2)
        .split(':')[0]
        .trim(),
    );
  expect(expected.length).toBeGreaterThan(4);
  const printed: string[] = [];
  const sandbox = vm.createContext({ print: (...a: unknown[]) => printed.push(a.map(String).join(' ')) });
  vm.runInContext(readFileSync(new URL('../dist/e4.js', import.meta.url), 'utf8'), sandbox);
  vm.runInContext(block, sandbox);
  expect(printed).toEqual(expected);
});
