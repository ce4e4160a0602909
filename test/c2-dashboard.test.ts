/**
 * The fleet dashboard of `e4-c2 serve` in a real headless browser (the system's Chromium driven by
 * playwright-core): it loads with a token handed in the URL fragment, shows devices, topics and
 * rules, and shows a rotation as it happens, from the event stream, without a reload.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { DEFAULT_IMAGE } from '../host-sim/c2/e4.ts';
import { startBroker } from '../host-sim/services/broker.ts';
import { needChromium } from './support/browser.ts';
import { c2Dir, call, makeToken, serve, type C2Dir, type Served } from './support/c2-service.ts';

const browserBinary = needChromium();
const haveImage = fs.existsSync(DEFAULT_IMAGE);
const title = 'fleet dashboard in headless Chromium' + (browserBinary.skip ? ` [skipped: ${browserBinary.skip}]` : '');

describe.skipIf(!!browserBinary.skip || (!haveImage && !process.env.CI))(title, () => {
  let c2: C2Dir;
  let served: Served;
  let broker: Awaited<ReturnType<typeof startBroker>>;
  let browser: Browser;
  let page: Page;
  let token: string;
  const problems: string[] = [];

  beforeAll(async () => {
    if (!haveImage) throw new Error(`${DEFAULT_IMAGE} is missing: run npm run build`);
    broker = await startBroker(); // aedes
    c2 = c2Dir();
    ({ token } = makeToken(c2, 'dashboard'));
    served = await serve(c2, ['--broker', broker.url]);
    for (const [name, body] of [
      ['add-device', { name: 'monitor-1' }],
      ['add-device', { name: 'phone-1' }],
      ['add-topic', { topic: 'health/heart-rate' }],
      ['grant', { device: 'monitor-1', topic: 'health/heart-rate', role: 'pub' }],
      ['grant', { device: 'phone-1', topic: 'health/heart-rate', role: 'sub' }],
      ['rules/add', { kind: 'rotate-topic', target: 'health/heart-rate', every: '6h' }],
    ] as const) {
      const r = await call(served.url, token, 'POST', name, body);
      if (r.status !== 200) throw new Error(`${name}: ${JSON.stringify(r.body)}`);
    }
    browser = await chromium.launch({ executablePath: browserBinary.binary(), headless: true, args: ['--no-sandbox'] });
    page = await browser.newPage();
    page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
    page.on('pageerror', (e) => problems.push(e.message));
  }, 90000);

  afterAll(async () => {
    if (browser) await browser.close();
    if (served) await served.stop();
    if (broker) await broker.close();
    if (c2) c2.remove();
  });

  it('loads with the token from the fragment, which it takes out of the address bar', async () => {
    await page.goto(`${served.url}/#token=${token}`);
    await page.waitForSelector('#fleet:not([hidden])');
    expect(new URL(page.url()).hash).toBe('');
    await expect.poll(() => page.textContent('#status')).toBe('live');
    expect(await page.textContent('#topics tr[data-topic="health/heart-rate"] .gen')).toBe('0');
    expect((await page.textContent('#topics tr[data-topic="health/heart-rate"] .holders'))!.split(', ').sort()).toEqual([
      'monitor-1 (pub)',
      'phone-1 (sub)',
    ]);
    expect(await page.getAttribute('#devices tr[data-device="monitor-1"] .pending', 'data-count')).toBe('1');
    expect(await page.textContent('#devices tr[data-device="monitor-1"] .key-gen')).toBe('0 (0)');
    expect(await page.textContent('#rules tbody')).toContain('rotate topic health/heart-rate (every 6h)');
    expect(await page.$$eval('#feed li', (items) => items.map((li) => li.getAttribute('data-kind')))).toContain('granted');
  });

  it('shows a rotation as it happens', async () => {
    const rotated = await call(served.url, token, 'POST', 'rotate-topic', { topic: 'health/heart-rate' });
    expect(rotated.status).toBe(200);
    await page.waitForSelector('#feed li[data-kind="topic-rotated"]', { timeout: 10000 });
    await expect.poll(() => page.textContent('#topics tr[data-topic="health/heart-rate"] .gen'), { timeout: 10000 }).toBe('1');
    expect(await page.textContent('#feed li[data-kind="topic-rotated"]')).toContain('health/heart-rate · gen 1');
    await page.waitForSelector('#feed li[data-kind="command-acked"]');
    expect(await page.textContent('#devices tr[data-device="phone-1"]')).toContain('health/heart-rate (sub): 1 / 1 / -');
  });

  it('asks for a token again when the one it has is refused', async () => {
    await call(served.url, token, 'POST', 'tokens/revoke', { name: 'dashboard' });
    await page.reload();
    await page.waitForSelector('#login:not([hidden])');
    expect(await page.textContent('#login-error')).toContain('unknown or revoked API token');
    expect(problems.filter((p) => !/401/.test(p))).toEqual([]);
  });
});
