// End-to-end tests: the demo page in headless Chromium against real pushgate processes.
// Each test starts its own gateway(s) on free loopback ports with --demo.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  Gateway,
  clientsDir,
  launchBrowser,
  openPage,
  signJwt,
  waitForAlert,
  waitForStatus,
  withLogs,
  writeSecret,
} from './harness.mjs';

const TEST_TIMEOUT = 90000;
let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

const demoPath = (query) => `/demo?${new URLSearchParams(query)}`;

test('the page registers, a push is answered "sent to 1 clients" and rendered', { timeout: TEST_TIMEOUT }, async () => {
  const gateway = await Gateway.start();
  try {
    await withLogs([gateway], async () => {
      // The gateway serves exactly the files in clients/ (embedded when it was built).
      for (const [url, file] of [
        ['/demo', 'demo/index.html'],
        ['/demo/pushgate.js', 'js/pushgate.js'],
      ]) {
        const res = await fetch(gateway.publicUrl + url);
        assert.equal(res.status, 200, url);
        assert.equal(await res.text(), await readFile(path.join(clientsDir, file), 'utf8'),
          `${url} differs from clients/${file}: rebuild the gateway`);
      }

      // Without a token the page asks for one and does not connect.
      const empty = await openPage(browser.context);
      await empty.goto(gateway.publicUrl + '/demo');
      assert.equal(await empty.locator('#setup').isVisible(), true);
      assert.equal(await empty.locator('#status').textContent(), 'no token');
      await empty.close();

      const page = await openPage(browser.context);
      await page.goto(gateway.publicUrl + demoPath({ token: 'alice', event: 'alarm' }));
      await waitForStatus(page, 'registered');
      assert.equal(await page.locator('#setup').isVisible(), false);

      const message = 'CPU > 95% on db-3 <b>not html</b>';
      assert.deepEqual(await gateway.push('alice', 'alarm', message), {
        status: 200,
        body: 'message sent to 1 clients',
      });
      await waitForAlert(page, message);
      // Rendered as text, not markup.
      assert.equal(await page.locator('#alerts li b').count(), 0);

      // A push that is itself JSON (even ack-shaped) is shown as an alert, not taken as an ack.
      const json = '{"type":"registered","event":"alarm"}';
      assert.equal((await gateway.push('alice', 'alarm', json)).body, 'message sent to 1 clients');
      await waitForAlert(page, json);
      assert.equal(await page.locator('#alerts li').count(), 2);
      assert.equal(await page.locator('#status').textContent(), 'registered');

      // Another user's or another event's push does not reach the page.
      assert.equal((await gateway.push('bob', 'alarm', 'x')).body, 'message sent to 0 clients');
      assert.equal((await gateway.push('alice', 'other', 'x')).body, 'message sent to 0 clients');

      assert.deepEqual(page.problems, []);
      await page.close();
    });
  } finally {
    await gateway.stop();
  }
});

test("an operator's disconnect (4000) stops the page instead of being undone by a reconnect", { timeout: TEST_TIMEOUT }, async () => {
  const gateway = await Gateway.start();
  try {
    await withLogs([gateway], async () => {
      const page = await openPage(browser.context);
      await page.goto(gateway.publicUrl + demoPath({ token: 'carol', event: 'alarm', minDelay: 100, maxDelay: 300 }));
      await waitForStatus(page, 'registered');
      const res = await fetch(`${gateway.internalUrl}/api/v2/disconnect`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ userId: 'carol' }),
      });
      assert.deepEqual(await res.json(), { closed: 1 });
      await waitForStatus(page, 'refused');
      const after = await page.evaluate(() => ({
        closes: window.pushgateDemo.closes,
        reconnectScheduled: window.pushgateDemo.client.reconnectScheduled,
      }));
      assert.deepEqual(after, { closes: [4000], reconnectScheduled: false });
      assert.equal((await gateway.push('carol', 'alarm', 'x')).body, 'message sent to 0 clients');
      assert.deepEqual(page.problems, []);
      await page.close();
    });
  } finally {
    await gateway.stop();
  }
});

test('after a gateway restart on the same ports the page re-registers and gets pushes', { timeout: TEST_TIMEOUT }, async () => {
  const gateways = [await Gateway.start()];
  try {
    await withLogs(gateways, async () => {
      const first = gateways[0];
      const page = await openPage(browser.context);
      await page.goto(
        first.publicUrl +
          demoPath({ token: 'alice', event: 'alarm', minDelay: 100, maxDelay: 1000, spreadDelay: 300 }),
      );
      await waitForStatus(page, 'registered');
      assert.equal(await page.evaluate(() => window.pushgateDemo.registrations), 1);
      assert.equal((await first.push('alice', 'alarm', 'before restart')).body, 'message sent to 1 clients');
      await waitForAlert(page, 'before restart');

      // Drain: the gateway closes the WebSocket with 1001, then exits.
      await first.stop();
      await page.waitForFunction(() => window.pushgateDemo.closes.length >= 1, null, { timeout: 15000 });
      assert.equal(await page.evaluate(() => window.pushgateDemo.closes[0]), 1001);

      const second = new Gateway({ publicPort: first.publicPort, internalPort: first.internalPort });
      gateways.push(second);
      await second.start();

      await page.waitForFunction(
        () =>
          window.pushgateDemo.registrations >= 2 &&
          document.querySelector('#status').textContent === 'registered',
        null,
        { timeout: 20000 },
      );
      assert.deepEqual(await second.push('alice', 'alarm', 'after restart'), {
        status: 200,
        body: 'message sent to 1 clients',
      });
      await waitForAlert(page, 'after restart');
      assert.deepEqual(page.problems.filter((p) => !p.includes('WebSocket')), []);
      await page.close();
    });
  } finally {
    for (const g of gateways) await g.stop();
  }
});

test('JWT mode: a valid token registers; a bad one is refused once and not retried', { timeout: TEST_TIMEOUT }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pushgate-jwt-'));
  const { secret, file } = await writeSecret(dir);
  const gateway = await Gateway.start({ args: ['--auth', 'jwt', '--jwt-key', `default=HS256:${file}`] });
  try {
    await withLogs([gateway], async () => {
      const exp = Math.floor(Date.now() / 1000) + 600;

      // A valid token: sub is the userID.
      const good = await openPage(browser.context);
      await good.goto(gateway.publicUrl + demoPath({ token: signJwt({ sub: 'carol', exp }, secret), event: 'alarm' }));
      await waitForStatus(good, 'registered');
      assert.equal((await gateway.push('carol', 'alarm', 'for carol')).body, 'message sent to 1 clients');
      await waitForAlert(good, 'for carol');
      await good.close();

      // A token signed with another key.
      const minDelay = 250;
      const maxDelay = 500;
      const bad = signJwt({ sub: 'mallory', exp }, 'not-the-secret');
      const page = await openPage(browser.context);
      await page.goto(gateway.publicUrl + demoPath({ token: bad, event: 'alarm', minDelay, maxDelay }));
      await waitForStatus(page, 'refused');
      const metric = () => gateway.metric('pushgate_registrations_total', 'result="token_rejected"');
      assert.equal(await metric(), 1);
      assert.deepEqual(
        await page.evaluate(() => ({
          state: window.pushgateDemo.client.state,
          reconnectScheduled: window.pushgateDemo.client.reconnectScheduled,
          closes: window.pushgateDemo.closes,
        })),
        { state: 'refused', reconnectScheduled: false, closes: [4401] },
      );

      // "Does not reconnect" is the absence of an event: watch a short window longer than
      // any first or second backoff delay would be (full jitter: < minDelay, < 2 * minDelay).
      const windowMs = 2 * maxDelay;
      await page.evaluate((ms) => new Promise((resolve) => setTimeout(resolve, ms)), windowMs);
      assert.equal(await metric(), 1);
      assert.deepEqual(
        await page.evaluate(() => ({
          state: window.pushgateDemo.client.state,
          registrations: window.pushgateDemo.registrations,
          closes: window.pushgateDemo.closes,
        })),
        { state: 'refused', registrations: 0, closes: [4401] },
      );
      assert.equal(await page.locator('#status').textContent(), 'refused');
      await page.close();
    });
  } finally {
    await gateway.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

test('JWT expiry (4408): a static token is refused; a token function reconnects with a fresh one', { timeout: TEST_TIMEOUT }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pushgate-jwt-'));
  const { secret, file } = await writeSecret(dir);
  const gateway = await Gateway.start({
    args: ['--auth', 'jwt', '--jwt-key', `default=HS256:${file}`, '--jwt-leeway', '0s'],
  });
  try {
    await withLogs([gateway], async () => {
      const soon = () => Math.floor(Date.now() / 1000) + 2;

      // The demo page holds a static token: when it expires the page is refused.
      const page = await openPage(browser.context);
      await page.goto(
        gateway.publicUrl + demoPath({ token: signJwt({ sub: 'dave', exp: soon() }, secret), event: 'alarm', minDelay: 100 }),
      );
      await waitForStatus(page, 'registered');
      await waitForStatus(page, 'refused', 10000);
      assert.deepEqual(await page.evaluate(() => window.pushgateDemo.closes), [4408]);
      assert.equal(await page.evaluate(() => window.pushgateDemo.client.reconnectScheduled), false);

      // A client whose token is a function fetches a fresh token and registers again.
      const tokens = [signJwt({ sub: 'erin', exp: soon() }, secret)];
      tokens.push(signJwt({ sub: 'erin', exp: soon() + 600 }, secret));
      await page.evaluate(async ({ url, tokens }) => {
        const { PushgateClient } = await import('/demo/pushgate.js');
        const seen = { registrations: 0, closes: [], messages: [], tokensIssued: 0 };
        window.refreshing = seen;
        const client = new PushgateClient({
          url,
          event: 'alarm',
          minDelay: 100,
          token: async () => tokens[Math.min(seen.tokensIssued++, tokens.length - 1)],
        });
        client.addEventListener('registered', () => seen.registrations++);
        client.addEventListener('close', (e) => seen.closes.push(e.detail.code));
        client.addEventListener('message', (e) => seen.messages.push(e.detail));
        client.connect();
      }, { url: `ws://127.0.0.1:${gateway.publicPort}/ws`, tokens });
      await page.waitForFunction(() => window.refreshing.registrations >= 2, null, { timeout: 10000 });
      assert.deepEqual(await page.evaluate(() => window.refreshing.closes), [4408]);
      assert.equal((await gateway.push('erin', 'alarm', 'still here')).body, 'message sent to 1 clients');
      await page.waitForFunction(() => window.refreshing.messages.includes('still here'), null, { timeout: 10000 });
      await page.close();
    });
  } finally {
    await gateway.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
