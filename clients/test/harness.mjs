// What the browser tests share: real pushgate processes on free loopback ports, headless
// Chromium (Debian's, driven by playwright-core), HS256 JWTs, and a Prometheus scrape reader.
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const clientsDir = path.resolve(here, '..');
const repoDir = path.resolve(clientsDir, '..');

export const GATEWAY_BIN =
  process.env.PUSHGATE_BIN || path.join(repoDir, 'target', 'release', 'pushgate');
export const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

/** A loopback port nobody listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** One pushgate process. `start()` waits for /readyz; `stop()` sends SIGTERM and waits for exit. */
export class Gateway {
  constructor({ publicPort, internalPort, args = [] }) {
    this.publicPort = publicPort;
    this.internalPort = internalPort;
    this.args = args;
    this.proc = null;
    this.output = '';
  }

  static async start(options = {}) {
    const gateway = new Gateway({
      publicPort: options.publicPort ?? (await freePort()),
      internalPort: options.internalPort ?? (await freePort()),
      args: options.args ?? [],
    });
    await gateway.start();
    return gateway;
  }

  get publicUrl() {
    return `http://127.0.0.1:${this.publicPort}`;
  }

  get internalUrl() {
    return `http://127.0.0.1:${this.internalPort}`;
  }

  async start(timeoutMs = 15000) {
    const args = [
      '--listen', `127.0.0.1:${this.publicPort}`,
      '--internal-listen', `127.0.0.1:${this.internalPort}`,
      '--demo',
      '--drain-window', '300ms',
      '--shutdown-timeout', '5s',
      ...this.args,
    ];
    this.output += `$ ${GATEWAY_BIN} ${args.join(' ')}\n`;
    const proc = spawn(GATEWAY_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    proc.stdout.on('data', (d) => (this.output += d));
    proc.stderr.on('data', (d) => (this.output += d));
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        this.output += `[exit code=${code} signal=${signal}]\n`;
        resolve({ code, signal });
      });
      proc.on('error', (error) => {
        this.output += `[spawn error: ${error.message}]\n`;
        resolve({ code: null, signal: null, error });
      });
    });
    let exited = false;
    this.exited.then(() => (exited = true));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (exited) throw new Error(`pushgate exited during startup:\n${this.output}`);
      try {
        const res = await fetch(`${this.internalUrl}/readyz`);
        if (res.status === 200) return this;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) throw new Error(`pushgate not ready in ${timeoutMs} ms:\n${this.output}`);
      await sleep(50);
    }
  }

  /** SIGTERM (drain), then wait for the process to exit (SIGKILL past the deadline). */
  async stop(timeoutMs = 15000) {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) {
      return this.exited;
    }
    this.proc.kill('SIGTERM');
    let timer;
    const result = await Promise.race([
      this.exited,
      new Promise((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (result === null) {
      this.proc.kill('SIGKILL');
      await this.exited;
      throw new Error(`pushgate did not exit within ${timeoutMs} ms of SIGTERM`);
    }
    return result;
  }

  async push(userId, event, message) {
    const res = await fetch(`${this.internalUrl}/push`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ userId, event, message }),
    });
    return { status: res.status, body: await res.text() };
  }

  /** The value of one sample in the /metrics scrape (0 when absent). */
  async metric(name, labels = '') {
    const text = await (await fetch(`${this.internalUrl}/metrics`)).text();
    const wanted = labels ? `${name}{${labels}}` : name;
    for (const line of text.split('\n')) {
      if (line.startsWith('#')) continue;
      const space = line.lastIndexOf(' ');
      if (space > 0 && line.slice(0, space).trim() === wanted) return Number(line.slice(space + 1));
    }
    return 0;
  }
}

/** Headless Chromium with a fresh profile, no background networking (the machine is offline). */
export async function launchBrowser() {
  const userDataDir = await mkdtemp(path.join(tmpdir(), 'pushgate-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM_BIN,
    headless: true,
    timeout: 60000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return {
    context,
    async close() {
      await context.close();
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}

/** A new page that records uncaught page errors and console errors in `page.problems`. */
export async function openPage(context) {
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (error) => page.problems.push(`pageerror: ${error.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') page.problems.push(`console: ${msg.text()}`);
  });
  return page;
}

/** The text of `#status`. */
export function statusOf(page) {
  return page.locator('#status').textContent();
}

/** Waits until `#status` reads `state`. */
export function waitForStatus(page, state, timeout = 15000) {
  return page.waitForFunction(
    (s) => document.querySelector('#status')?.textContent === s,
    state,
    { timeout },
  );
}

/** Waits until an alert holding `text` is rendered in `#alerts`. */
export function waitForAlert(page, text, timeout = 15000) {
  return page.waitForFunction(
    (t) => [...document.querySelectorAll('#alerts li')].some((li) => li.textContent.includes(t)),
    text,
    { timeout },
  );
}

/** An HS256 secret in a file (raw bytes plus a trailing newline, as an operator writes it). */
export async function writeSecret(dir) {
  const secret = randomBytes(32).toString('hex');
  const file = path.join(dir, 'jwt-secret');
  await writeFile(file, `${secret}\n`, { mode: 0o600 });
  return { secret, file };
}

const b64url = (value) => Buffer.from(value).toString('base64url');

/** An HS256 JWT over `claims`. */
export function signJwt(claims, secret, header = { alg: 'HS256', typ: 'JWT' }) {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const signature = createHmac('sha256', secret).update(input).digest('base64url');
  return `${input}.${signature}`;
}

/** Appends the gateway's output to an error thrown by `fn`, for a readable failure. */
export async function withLogs(gateways, fn) {
  try {
    return await fn();
  } catch (error) {
    const logs = gateways
      .filter(Boolean)
      .map((g) => g.output)
      .join('\n');
    error.message += `\n--- pushgate output ---\n${logs}`;
    throw error;
  }
}
