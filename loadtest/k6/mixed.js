// Browsers and pushers together, with an exact delivery check.
//
//   k6 run --no-usage-report -e BASE_URL=http://127.0.0.1:8080 loadtest/k6/mixed.js
//
// Timeline:
//   t = 0            BROWSERS browsers connect and register k6-user-1 .. k6-user-BROWSERS
//                    (one connection each, event EVENT).
//   t = PUSH_START   pushers start: BROWSERS × MSGS_PER_USER pushes at PUSH_RATE per second,
//                    round-robin over those users, so every user gets exactly MSGS_PER_USER.
//                    Every reply must be 200 "message sent to 1 clients".
//   afterwards       each browser closes once it has its MSGS_PER_USER frames (plus a short
//                    linger to catch extras), or at the latest DRAIN seconds after the last push.
//
// It passes only when every push was answered 200 with N = 1, every browser kept its
// connection and received exactly the frames pushed to its user (no more, no fewer, none of
// another user's), and the latency bounds hold. Defaults are a ~10 s smoke run.

import exec from 'k6/execution';
import http from 'k6/http';
import {
  BASE_URL, WS_URL, PUSH_URL, EVENT, LOG_BROWSERS,
  envInt, envNum, envSeconds, dur, userName,
  runBrowser, pushMessage, checkPushReply,
} from './lib.js';

const BROWSERS = envInt('BROWSERS', 10);
const MSGS_PER_USER = envInt('MSGS_PER_USER', 20);
const PUSH_RATE = envInt('PUSH_RATE', 50); // pushes per second, all users together
const PUSH_START = envSeconds('PUSH_START', 2); // browsers get this long to connect and register
const DRAIN = envSeconds('DRAIN', 5); // how long browsers wait for frames after the last push
const LINGER = envSeconds('LINGER', 0.5); // how long a complete browser stays to catch extras
// VUs the arrival-rate executor starts with, and may grow to. Starting VUs mid-run is slow,
// and an iteration with no free VU is dropped (and a browser then misses a frame), so the
// default pre-allocates one VU per 20 pushes/s.
const PUSH_VUS = envInt('PUSH_VUS', Math.max(5, Math.ceil(PUSH_RATE / 20)));
const PUSH_MAX_VUS = envInt('PUSH_MAX_VUS', Math.max(PUSH_VUS * 4, 50));
const PUSH_P95_MS = envNum('PUSH_P95_MS', 250); // bound on p(95) of POST /push
const E2E_P95_MS = envNum('E2E_P95_MS', 500); // bound on p(95) of push sent → frame received

if (BROWSERS < 1 || MSGS_PER_USER < 1 || PUSH_RATE < 1) {
  throw new Error('BROWSERS, MSGS_PER_USER and PUSH_RATE must be at least 1');
}

const TOTAL = BROWSERS * MSGS_PER_USER;
const PUSH_SECONDS = TOTAL / PUSH_RATE;
const HOLD = PUSH_START + PUSH_SECONDS + DRAIN;

export const options = {
  scenarios: {
    browsers: {
      executor: 'per-vu-iterations',
      exec: 'browser',
      vus: BROWSERS,
      iterations: 1,
      maxDuration: dur(HOLD + 10),
      gracefulStop: '5s',
    },
    pushers: {
      executor: 'constant-arrival-rate',
      exec: 'pusher',
      startTime: dur(PUSH_START),
      rate: PUSH_RATE,
      timeUnit: '1s',
      duration: dur(PUSH_SECONDS),
      preAllocatedVUs: PUSH_VUS,
      maxVUs: PUSH_MAX_VUS,
      gracefulStop: '10s',
    },
  },
  thresholds: {
    // Every check passes: push replies (200, "message sent to 1 clients") and browsers
    // (connected, kept the connection, got exactly their user's messages).
    checks: ['rate==1'],
    'checks{side:pusher}': ['rate==1'],
    'checks{side:browser}': ['rate==1'],
    http_req_failed: ['rate<0.01'],
    'http_req_duration{name:push}': [`p(95)<${PUSH_P95_MS}`],
    // All pushed frames reached the browsers, in total (per browser: the checks above).
    frames_received: ['count>0', `count==${TOTAL}`],
    push_to_browser: [`p(95)<${E2E_P95_MS}`],
    browser_ws_errors: ['count==0'],
    browser_early_closes: ['count==0'],
    // A push the generator could not start would leave a browser short of frames.
    dropped_iterations: ['count==0'],
  },
};

export function setup() {
  // /readyz: what a load balancer in front of the gateway exposes (deploy/nginx does).
  const res = http.get(`${BASE_URL}/readyz`, { tags: { name: 'readyz' } });
  if (res.status !== 200) {
    throw new Error(`gateway not ready at ${BASE_URL}/readyz: status ${res.status} ${res.error || ''}`);
  }
  console.log(
    `mixed: ${BROWSERS} browsers on ${WS_URL} (event ${EVENT}); ${TOTAL} pushes to ${PUSH_URL} ` +
      `at ${PUSH_RATE}/s from t=${PUSH_START}s; browsers hold at most ${HOLD.toFixed(1)}s`,
  );
}

export function browser() {
  // per-vu-iterations with one iteration per VU: iterationInTest is 0 .. BROWSERS-1.
  const index = exec.scenario.iterationInTest;
  runBrowser({
    user: userName(index + 1),
    holdSeconds: HOLD,
    expected: MSGS_PER_USER,
    lingerSeconds: LINGER,
    logProblems: index < LOG_BROWSERS,
  });
}

export function pusher() {
  const i = exec.scenario.iterationInTest;
  if (i >= TOTAL) return; // the arrival-rate clock may round up by one iteration
  const user = userName((i % BROWSERS) + 1);
  checkPushReply(pushMessage(user), 1);
}
