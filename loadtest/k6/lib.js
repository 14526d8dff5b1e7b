// Shared helpers for the pushgate k6 scripts: configuration from environment variables, the
// browser side (one WebSocket that registers and then only listens) and the pusher side
// (one POST /push). Every script reads its knobs through env() so that the defaults are a
// short smoke run and an operator scales up with -e NAME=value.
//
// WebSocket client: k6/experimental/websockets, the browser-like API (new WebSocket(url),
// onopen/onmessage/onclose) that k6 1.1.0 ships. Later k6 releases publish the same module as
// 'k6/websockets'; change the import below when moving to one of them.

import { WebSocket } from 'k6/experimental/websockets';
import http from 'k6/http';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';

// ---------------------------------------------------------------------------------------------
// Configuration

export function env(name, fallback) {
  const v = __ENV[name];
  return v === undefined || v === '' ? fallback : v;
}

export function envInt(name, fallback) {
  const raw = env(name, undefined);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0 || Math.floor(n) !== n) {
    throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  }
  return n;
}

export function envNum(name, fallback) {
  const raw = env(name, undefined);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) {
    throw new Error(`${name} must be a non-negative number, got ${JSON.stringify(raw)}`);
  }
  return n;
}

// Seconds, as a number, from an env var holding a number of seconds ("10") or a k6-style
// duration ("10s", "1m30s", "500ms").
export function envSeconds(name, fallback) {
  const raw = env(name, undefined);
  if (raw === undefined) return fallback;
  if (/^\d+(\.\d+)?$/.test(raw)) return Number(raw);
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  const units = { h: 3600, m: 60, s: 1, ms: 0.001 };
  let total = 0;
  let consumed = 0;
  let m;
  while ((m = re.exec(raw)) !== null) {
    total += Number(m[1]) * units[m[2]];
    consumed += m[0].length;
  }
  if (consumed !== raw.length || consumed === 0) {
    throw new Error(`${name} must be seconds or a duration like 10s / 1m30s, got ${JSON.stringify(raw)}`);
  }
  return total;
}

// A duration string k6 accepts in options, from seconds.
export function dur(seconds) {
  return `${Math.max(1, Math.ceil(seconds * 1000))}ms`;
}

// BASE_URL is the listener browsers use (WebSocket, /readyz). PUSH_BASE_URL is the one that
// serves POST /push: by default the internal listener of a gateway on its default ports
// (pushgate serves pushes only there unless it runs with --public-push).
export const BASE_URL = env('BASE_URL', 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const PUSH_BASE_URL = env('PUSH_BASE_URL', 'http://127.0.0.1:8081').replace(/\/+$/, '');
export const WS_URL = env('WS_URL', BASE_URL.replace(/^http/, 'ws') + env('WS_PATH', '/ws'));
export const PUSH_URL = env('PUSH_URL', PUSH_BASE_URL + env('PUSH_PATH', '/push'));
export const EVENT = env('EVENT', 'alarm');
export const USER_PREFIX = env('USER_PREFIX', 'k6-user-');
// Sent as `Authorization: Bearer <key>` when the gateway runs with --push-keys.
export const PUSH_KEY = env('PUSH_KEY', '');

export function userName(index) {
  return `${USER_PREFIX}${index}`;
}

// Browsers that log what went wrong with them: the first LOG_BROWSERS (default 10).
export const LOG_BROWSERS = envInt('LOG_BROWSERS', 10);

export const REPLY_RE = /^message sent to (\d+) clients$/;

// ---------------------------------------------------------------------------------------------
// Custom metrics (shared so that every script reports them under the same names)

// Push frames a browser received.
export const framesReceived = new Counter('frames_received');
// Browsers whose connection the server ended before the browser meant to close it.
export const browserEarlyCloses = new Counter('browser_early_closes');
// WebSocket errors seen by browsers (failed handshake, reset, ...).
export const browserErrors = new Counter('browser_ws_errors');
// Browsers that ran to the end of their connection (its close event). A threshold on it
// catches a gateway that froze: no close event, so no check ever fails.
export const browsersFinished = new Counter('browsers_finished');
// Pushes that got an answer at all. A threshold on it catches pushes left hanging (a frozen
// gateway), which k6 interrupts at the end without a sample.
export const pushesAnswered = new Counter('pushes_answered');
// From just before POST /push was sent to the frame reaching the browser (same machine
// clock), for messages written by pushMessage().
export const pushToBrowser = new Trend('push_to_browser', true);

// ---------------------------------------------------------------------------------------------
// Browser side

// Opens one WebSocket, registers {token: user, event} and listens until `holdSeconds` have
// passed, or, when `expected` is given, until that many frames arrived and `lingerSeconds`
// more passed (to catch extra frames). Frames are counted, never answered. At the end it runs
// the checks that describe what this browser saw. `logProblems` false keeps it from logging
// (with thousands of browsers failing alike, a few lines tell the story).
export function runBrowser({ user, holdSeconds, expected, lingerSeconds = 0.5, logProblems = true }) {
  let received = 0;
  let foreign = 0; // frames whose payload names another user (see pushMessage)
  let opened = false;
  let closing = false; // true once this browser decided to close
  let errored = false;
  let deadline = null;
  let lingerTimer = null;

  const ws = new WebSocket(WS_URL);

  const finish = () => {
    if (closing) return;
    closing = true;
    if (deadline !== null) clearTimeout(deadline);
    if (lingerTimer !== null) clearTimeout(lingerTimer);
    ws.close();
  };

  ws.onopen = () => {
    opened = true;
    ws.send(JSON.stringify({ token: user, event: EVENT }));
    deadline = setTimeout(finish, Math.round(holdSeconds * 1000));
  };

  ws.onmessage = (e) => {
    const now = Date.now();
    received += 1;
    framesReceived.add(1);
    const data = typeof e.data === 'string' ? e.data : '';
    const parts = data.split('|');
    if (parts.length === 3 && parts[0] === 'k6') {
      // k6|<user>|<sent at, ms since epoch>
      if (parts[1] !== user) foreign += 1;
      const sentAt = Number(parts[2]);
      if (Number.isFinite(sentAt)) pushToBrowser.add(Math.max(0, now - sentAt));
    }
    if (expected !== undefined && received >= expected && lingerTimer === null && !closing) {
      lingerTimer = setTimeout(finish, Math.round(lingerSeconds * 1000));
    }
  };

  ws.onerror = (e) => {
    errored = true;
    browserErrors.add(1);
    if (logProblems) console.warn(`browser ${user}: websocket error: ${e.error}`);
  };

  ws.onclose = () => {
    browsersFinished.add(1);
    if (deadline !== null) clearTimeout(deadline);
    if (lingerTimer !== null) clearTimeout(lingerTimer);
    const early = opened && !closing;
    if (early) {
      browserEarlyCloses.add(1);
      if (logProblems) console.warn(`browser ${user}: the server closed the connection`);
    }
    const results = {
      'browser connected (WebSocket handshake 101)': opened,
      'browser kept its connection until it closed it': opened && !early && !errored,
      'browser got only its own user\'s messages': foreign === 0,
    };
    if (expected !== undefined) {
      results['browser received every message pushed to its user'] = received === expected;
      if (received !== expected && logProblems) {
        console.warn(`browser ${user}: received ${received} frames, expected ${expected}`);
      }
    }
    const checks = {};
    for (const [name, ok] of Object.entries(results)) checks[name] = () => ok;
    check(null, checks, { side: 'browser' });
    closing = true;
  };
}

// ---------------------------------------------------------------------------------------------
// Pusher side

const pushParams = {
  headers: Object.assign(
    { 'Content-Type': 'application/json' },
    PUSH_KEY ? { Authorization: `Bearer ${PUSH_KEY}` } : {},
  ),
  tags: { name: 'push' },
};

// POST /push of a message that browsers can attribute and time: "k6|<user>|<ms since epoch>".
export function pushMessage(user) {
  const body = JSON.stringify({ userId: user, event: EVENT, message: `k6|${user}|${Date.now()}` });
  return http.post(PUSH_URL, body, pushParams);
}

let warnedReplies = 0; // per VU: log the first few bad replies, not thousands

// The checks every push reply must pass; `clients`, when given, is the exact N expected.
export function checkPushReply(res, clients) {
  if (res.status !== 0) pushesAnswered.add(1);
  const checks = {
    'push status is 200': (r) => r.status === 200,
    'push body is "message sent to N clients"': (r) => typeof r.body === 'string' && REPLY_RE.test(r.body),
  };
  if (clients !== undefined) {
    checks[`push reached ${clients} connection(s)`] = (r) => {
      const m = typeof r.body === 'string' ? REPLY_RE.exec(r.body) : null;
      return m !== null && Number(m[1]) === clients;
    };
  }
  const ok = check(res, checks, { side: 'pusher' });
  if (!ok && warnedReplies < 5) {
    warnedReplies += 1;
    console.warn(`push: unexpected reply ${res.status} ${JSON.stringify(res.body)} (${res.error || 'no error'})`);
  }
  return ok;
}
