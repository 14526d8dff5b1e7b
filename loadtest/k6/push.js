// Pushers only: POST /push at a constant arrival rate, round-robin over USERS users
// (k6-user-1 .. k6-user-USERS), checking every reply is 200 "message sent to N clients".
//
//   k6 run --no-usage-report -e PUSH_BASE_URL=http://127.0.0.1:8081 -e RATE=2000 -e DURATION=1m \
//     loadtest/k6/push.js
//
// Users with no connection are fine (N = 0); run browsers.js alongside to have them delivered.
// EXPECT_CLIENTS=<n> additionally requires every reply to say exactly n clients.

import exec from 'k6/execution';
import {
  PUSH_URL, EVENT, env, envInt, envNum, envSeconds, dur, userName, pushMessage, checkPushReply,
} from './lib.js';

const RATE = envInt('RATE', 20); // pushes per second
const DURATION = envSeconds('DURATION', 10);
const USERS = envInt('USERS', 10);
// Pre-allocated VUs (one per 20 pushes/s by default: starting VUs mid-run is slow) and the cap.
const PUSH_VUS = envInt('PUSH_VUS', Math.max(5, Math.ceil(RATE / 20)));
const PUSH_MAX_VUS = envInt('PUSH_MAX_VUS', Math.max(PUSH_VUS * 4, 100));
const PUSH_P95_MS = envNum('PUSH_P95_MS', 250);
const rawExpect = env('EXPECT_CLIENTS', '');
const EXPECT_CLIENTS = rawExpect === '' ? undefined : envInt('EXPECT_CLIENTS', 0);

if (RATE < 1 || USERS < 1) throw new Error('RATE and USERS must be at least 1');

export const options = {
  scenarios: {
    push: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: dur(DURATION),
      preAllocatedVUs: PUSH_VUS,
      maxVUs: PUSH_MAX_VUS,
      gracefulStop: '10s',
    },
  },
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate<0.01'],
    'http_req_duration{name:push}': [`p(95)<${PUSH_P95_MS}`],
    // A push the generator could not start, or one left hanging (k6 interrupts it at the
    // end without a sample, so no check fails), is a push the gateway did not take.
    dropped_iterations: ['count==0'],
    pushes_answered: [`count>=${Math.floor(RATE * DURATION)}`],
  },
};

export function setup() {
  console.log(`push: ${RATE}/s for ${DURATION}s to ${PUSH_URL}, users ${userName(1)}..${userName(USERS)}, event ${EVENT}`);
}

export default function () {
  const user = userName((exec.scenario.iterationInTest % USERS) + 1);
  checkPushReply(pushMessage(user), EXPECT_CLIENTS);
}
