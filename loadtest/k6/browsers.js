// Browsers only: VUS WebSocket connections that register and then hold, counting the frames
// pushed to them and answering nothing.
//
//   k6 run --no-usage-report -e BASE_URL=http://127.0.0.1:8080 -e VUS=1000 -e HOLD=5m \
//     loadtest/k6/browsers.js
//
// Browser number i (1 .. VUS) registers {"token": "k6-user-<u>", "event": EVENT} with
// u = ((i - 1) mod USERS) + 1, so USERS < VUS gives users several connections (tabs).
// Pair it with push.js (same USERS) to push to them; this script alone passes when every
// browser connected and kept its connection for HOLD.

import exec from 'k6/execution';
import {
  WS_URL, EVENT, LOG_BROWSERS, envInt, envSeconds, dur, userName, runBrowser,
} from './lib.js';

const VUS = envInt('VUS', 10);
const USERS = envInt('USERS', VUS);
const HOLD = envSeconds('HOLD', 10);
const MIN_FRAMES = envInt('MIN_FRAMES', 0); // fail unless at least this many frames arrived in total
const CONNECT_P95_MS = envInt('CONNECT_P95_MS', 1000);

if (VUS < 1 || USERS < 1) throw new Error('VUS and USERS must be at least 1');

const thresholds = {
  // Every browser connected and kept its connection until HOLD ended.
  checks: ['rate==1'],
  browser_ws_errors: ['count==0'],
  browser_early_closes: ['count==0'],
  ws_connecting: [`p(95)<${CONNECT_P95_MS}`],
  // Checks run when a connection closes: a gateway that froze closes nothing, so every
  // browser must also have reached its close.
  browsers_finished: [`count>=${VUS}`],
};
if (MIN_FRAMES > 0) thresholds.frames_received = [`count>=${MIN_FRAMES}`];

export const options = {
  scenarios: {
    browsers: {
      executor: 'per-vu-iterations',
      vus: VUS,
      iterations: 1,
      maxDuration: dur(HOLD + 30),
      gracefulStop: '10s',
    },
  },
  thresholds,
};

export function setup() {
  console.log(`browsers: ${VUS} connections for ${USERS} users on ${WS_URL} (event ${EVENT}), held ${HOLD}s`);
}

export default function () {
  // One iteration per VU: iterationInTest is 0 .. VUS-1.
  const index = exec.scenario.iterationInTest;
  runBrowser({
    user: userName((index % USERS) + 1),
    holdSeconds: HOLD,
    logProblems: index < LOG_BROWSERS,
  });
}
