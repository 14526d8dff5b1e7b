// Unit tests of pushgate.js without a browser: backoff with full jitter, the close-code
// policy, ack handling and the reconnect state machine (fake WebSocket, fake timers).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PushgateClient,
  backoffDelay,
  closePolicy,
  closeReason,
  parseAck,
  DEFAULTS,
} from '../js/pushgate.js';

test('backoff: full jitter over min(cap, base * 2^attempt)', () => {
  // random() = 0 gives 0, random() just under 1 gives just under the ceiling.
  const top = () => 0.999999;
  assert.equal(backoffDelay(0, 100, 10000, () => 0), 0);
  assert.equal(backoffDelay(0, 100, 10000, top), 99);
  assert.equal(backoffDelay(1, 100, 10000, top), 199);
  assert.equal(backoffDelay(3, 100, 10000, top), 799);
  assert.equal(backoffDelay(7, 100, 10000, top), 9999); // 12800 capped at 10000
  assert.equal(backoffDelay(1000, 100, 10000, top), 9999); // no overflow to Infinity/NaN
  assert.equal(backoffDelay(2, 100, 10000, () => 0.5), 200);
});

test('backoff: delays spread uniformly across the whole window', () => {
  const samples = Array.from({ length: 2000 }, () => backoffDelay(4, 100, 30000));
  for (const d of samples) assert.ok(d >= 0 && d < 1600, `delay ${d} outside [0, 1600)`);
  const low = samples.filter((d) => d < 800).length;
  assert.ok(low > 800 && low < 1200, `expected about half below the midpoint, got ${low}`);
});

test('close-code policy', () => {
  const cases = [
    [1000, { action: 'reconnect', delay: 'backoff' }], // from the other side (e.g. a proxy)
    [1001, { action: 'reconnect', delay: 'spread' }],
    [1012, { action: 'reconnect', delay: 'spread' }],
    [1002, { action: 'reconnect', delay: 'backoff' }],
    [1006, { action: 'reconnect', delay: 'backoff' }],
    [1007, { action: 'reconnect', delay: 'backoff' }],
    [1009, { action: 'reconnect', delay: 'backoff' }],
    [1011, { action: 'reconnect', delay: 'backoff' }],
    [4001, { action: 'reconnect', delay: 'backoff' }],
    [4002, { action: 'reconnect', delay: 'backoff' }],
    [4003, { action: 'reconnect', delay: 'backoff' }],
    [4029, { action: 'reconnect', delay: 'long' }],
    [4000, { action: 'refuse' }],
    [4401, { action: 'refuse' }],
    [4403, { action: 'reconnect', delay: 'backoff' }],
    [4408, { action: 'refuse' }],
    [4999, { action: 'reconnect', delay: 'backoff' }],
  ];
  for (const [code, expected] of cases) {
    assert.deepEqual(closePolicy(code), expected, `code ${code}`);
  }
  assert.deepEqual(closePolicy(4408, { canRefreshToken: true }), {
    action: 'reconnect',
    delay: 'backoff',
  });
  assert.deepEqual(closePolicy(4401, { canRefreshToken: true }), { action: 'refuse' });
  assert.deepEqual(closePolicy(1001, { clientInitiated: true }), { action: 'stop' });
});

test('parseAck tells acks from pushed messages', () => {
  assert.deepEqual(parseAck('{"type":"registered","event":"alarm"}'), {
    type: 'registered',
    event: 'alarm',
  });
  assert.deepEqual(parseAck(' {"type":"error","reason":"token_rejected"}'), {
    type: 'error',
    reason: 'token_rejected',
  });
  for (const s of ['CPU > 95%', '{"cpu": 95}', '{"type":"alert"}', '[1]', '{bad', 'null', '']) {
    assert.equal(parseAck(s), null, s);
  }
});

// ---- a fake WebSocket and fake timers ------------------------------------------------------

class FakeWebSocket {
  static instances = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeWebSocket.instances.push(this);
  }
  send(data) {
    this.sent.push(data);
  }
  close(code = 1005, reason = '') {
    this.clientClose = { code, reason };
    // Echo like a gateway would (a socket still connecting fails with 1006).
    this.serverClose(this.readyState === 0 ? 1006 : code, reason);
  }
  // test side
  serverOpen() {
    this.readyState = 1;
    this.onopen?.({});
  }
  serverSend(data) {
    this.onmessage?.({ data });
  }
  serverClose(code, reason = '') {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean: code !== 1006 });
  }
}

class FakeClock {
  constructor() {
    this.now = 0;
    this.timers = new Map();
    this.nextId = 1;
  }
  setTimeout = (fn, ms) => {
    const id = this.nextId++;
    this.timers.set(id, { fn, at: this.now + ms });
    return id;
  };
  clearTimeout = (id) => {
    this.timers.delete(id);
  };
  pending() {
    return [...this.timers.values()].map((t) => t.at - this.now).sort((a, b) => a - b);
  }
  advance(ms) {
    const end = this.now + ms;
    for (;;) {
      const due = [...this.timers.entries()]
        .filter(([, t]) => t.at <= end)
        .sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
    }
    this.now = end;
  }
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

function setup(options = {}) {
  FakeWebSocket.instances = [];
  const clock = new FakeClock();
  const events = [];
  const client = new PushgateClient({
    url: 'ws://gateway.test/ws',
    token: 'alice',
    event: 'alarm',
    minDelay: 100,
    maxDelay: 1000,
    spreadDelay: 5000,
    longDelay: 10000,
    longMaxDelay: 60000,
    WebSocket: FakeWebSocket,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: () => clock.now,
    random: () => 0.5,
    ...options,
  });
  for (const type of ['statechange', 'open', 'registered', 'message', 'error', 'close', 'refused']) {
    client.addEventListener(type, (e) => events.push({ type, detail: e.detail }));
  }
  const last = () => FakeWebSocket.instances.at(-1);
  const ofType = (type) => events.filter((e) => e.type === type).map((e) => e.detail);
  return { client, clock, events, last, ofType };
}

/** Connects and opens the socket: the register frame is sent, no reply yet. */
async function connectAndOpen(t) {
  t.client.connect();
  await flush();
  const ws = t.last();
  ws.serverOpen();
  return ws;
}

async function connectAndRegister(t) {
  const ws = await connectAndOpen(t);
  assert.deepEqual(JSON.parse(ws.sent.at(-1)), { token: 'alice', event: 'alarm', ack: true });
  assert.equal(t.client.state, 'open');
  ws.serverSend('{"type":"registered","event":"alarm"}');
  assert.equal(t.client.state, 'registered');
  return ws;
}

test('registers with ack; the first frame is the ack, later frames are messages', async () => {
  const t = setup();
  await connectAndRegister(t);
  assert.deepEqual(t.ofType('registered'), [{ event: 'alarm', acked: true }]);
  // A pushed message that looks exactly like an ack is still a message after registration.
  t.last().serverSend('{"type":"registered","event":"alarm"}');
  t.last().serverSend('disk full');
  assert.deepEqual(t.ofType('message'), ['{"type":"registered","event":"alarm"}', 'disk full']);
  assert.deepEqual(
    t.ofType('statechange').map((d) => d.state),
    ['connecting', 'open', 'registered'],
  );
});

test('without ack the client is registered once the frame is sent', async () => {
  const t = setup({ ack: false });
  t.client.connect();
  await flush();
  t.last().serverOpen();
  assert.deepEqual(JSON.parse(t.last().sent[0]), { token: 'alice', event: 'alarm' });
  assert.equal(t.client.state, 'registered');
  t.last().serverSend('{"type":"error","reason":"x"}');
  assert.deepEqual(t.ofType('message'), ['{"type":"error","reason":"x"}']);
});

test('a gateway that ignores ack: the first push is delivered, not swallowed', async () => {
  const t = setup();
  t.client.connect();
  await flush();
  t.last().serverOpen();
  t.last().serverSend('CPU > 95%');
  assert.equal(t.client.state, 'registered');
  assert.deepEqual(t.ofType('registered'), [{ event: 'alarm', acked: false }]);
  assert.deepEqual(t.ofType('message'), ['CPU > 95%']);
});

test('a gateway that ignores ack and never pushes: registered after ackTimeout', async () => {
  const t = setup({ ackTimeout: 2000 });
  t.client.connect();
  await flush();
  t.last().serverOpen();
  t.clock.advance(1999);
  assert.equal(t.client.state, 'open');
  t.clock.advance(1);
  assert.equal(t.client.state, 'registered');
});

test('connection lost: backoff with full jitter, growing, reset after registration', async () => {
  const t = setup();
  await connectAndRegister(t);
  t.last().serverClose(1006);
  // attempt 0: random(0, 100) with random() = 0.5 → 50
  assert.equal(t.client.state, 'closed');
  assert.equal(t.client.reconnectScheduled, true);
  assert.deepEqual(t.ofType('close').at(-1), {
    code: 1006,
    reason: '',
    wasClean: false,
    willReconnect: true,
    delay: 50,
  });
  // Failing connects: 50 (attempt 0), 100, 200, 400, 500 (cap 1000 * 0.5), 500 ...
  const delays = [];
  for (let i = 0; i < 6; i++) {
    delays.push(t.client.nextReconnectAt - t.clock.now);
    t.clock.advance(delays.at(-1));
    await flush();
    t.last().serverClose(1006);
  }
  assert.deepEqual(delays, [50, 100, 200, 400, 500, 500]);
  // Success resets the backoff.
  t.clock.advance(t.client.nextReconnectAt - t.clock.now);
  await flush();
  t.last().serverOpen();
  t.last().serverSend('{"type":"registered","event":"alarm"}');
  assert.equal(t.client.attempt, 0);
  t.last().serverClose(4002, 'idle timeout');
  assert.equal(t.client.nextReconnectAt - t.clock.now, 50);
  // Every reconnect re-registers.
  t.clock.advance(50);
  await flush();
  t.last().serverOpen();
  assert.deepEqual(JSON.parse(t.last().sent[0]), { token: 'alice', event: 'alarm', ack: true });
});

test('1001 / 1012: reconnect after a uniform delay within spreadDelay', async () => {
  for (const [code, r, expected] of [
    [1001, 0.5, 2500],
    [1012, 0.1, 500],
  ]) {
    const t = setup({ random: () => r });
    await connectAndRegister(t);
    t.last().serverClose(code, 'going away');
    assert.equal(t.client.nextReconnectAt - t.clock.now, expected, `code ${code}`);
    assert.equal(t.ofType('close').at(-1).willReconnect, true);
  }
});

test('4029: reconnect with the long backoff', async () => {
  const t = setup();
  await connectAndRegister(t);
  t.last().serverClose(4029, 'too many connections for this user');
  assert.equal(t.client.nextReconnectAt - t.clock.now, 5000); // 0.5 * longDelay
});

for (const code of [4000, 4401]) {
  test(`${code}: refused, no reconnect`, async () => {
    const t = setup();
    t.client.connect();
    await flush();
    t.last().serverOpen();
    t.last().serverClose(code, 'refused');
    assert.equal(t.client.state, 'refused');
    assert.equal(t.client.reconnectScheduled, false);
    assert.deepEqual(t.ofType('refused'), [{ code, reason: 'refused' }]);
    assert.equal(t.ofType('close').at(-1).willReconnect, false);
    t.clock.advance(10 * 60 * 1000);
    assert.equal(FakeWebSocket.instances.length, 1);
    assert.deepEqual(t.clock.pending(), []);
  });
}

test('token_rejected ack then 4401: refused, error event, no reconnect', async () => {
  const t = setup();
  t.client.connect();
  await flush();
  t.last().serverOpen();
  t.last().serverSend('{"type":"error","reason":"token_rejected"}');
  assert.deepEqual(t.ofType('error'), [{ phase: 'register', reason: 'token_rejected' }]);
  t.last().serverClose(4401, 'unauthorized');
  assert.equal(t.client.state, 'refused');
  assert.deepEqual(t.ofType('refused'), [{ code: 4401, reason: 'token_rejected' }]);
  assert.equal(t.client.reconnectScheduled, false);
  // Even if the close were abnormal, a rejected token is never retried.
  const u = setup();
  u.client.connect();
  await flush();
  u.last().serverOpen();
  u.last().serverSend('{"type":"error","reason":"token_rejected"}');
  u.last().serverClose(1006);
  assert.equal(u.client.state, 'refused');
});

test('auth_unavailable ack: the client closes and retries with backoff', async () => {
  const t = setup();
  t.client.connect();
  await flush();
  t.last().serverOpen();
  t.last().serverSend('{"type":"error","reason":"auth_unavailable"}');
  assert.deepEqual(t.last().clientClose, { code: 1000, reason: 'auth_unavailable' });
  assert.equal(t.client.state, 'closed');
  assert.equal(t.client.reconnectScheduled, true);
});

test('empty_field / malformed / name_too_long / user_conflict ack: refused', async () => {
  for (const reason of ['empty_field', 'malformed', 'name_too_long', 'user_conflict']) {
    const t = setup();
    t.client.connect();
    await flush();
    t.last().serverOpen();
    t.last().serverSend(JSON.stringify({ type: 'error', reason }));
    assert.equal(t.client.state, 'refused', reason);
    assert.equal(t.client.reconnectScheduled, false, reason);
  }
});

test('4408 with a static token: refused; the app sets a fresh token and connects', async () => {
  const t = setup();
  await connectAndRegister(t);
  t.last().serverClose(4408, 'token expired');
  assert.equal(t.client.state, 'refused');
  assert.deepEqual(t.ofType('refused'), [{ code: 4408, reason: 'token expired' }]);
  t.client.token = 'alice-2';
  t.client.connect();
  await flush();
  t.last().serverOpen();
  assert.equal(JSON.parse(t.last().sent[0]).token, 'alice-2');
});

test('4408 with a token function: reconnects with a freshly fetched token', async () => {
  let n = 0;
  const t = setup({ token: async () => `tok-${++n}` });
  t.client.connect();
  await flush();
  t.last().serverOpen();
  assert.equal(JSON.parse(t.last().sent[0]).token, 'tok-1');
  t.last().serverSend('{"type":"registered","event":"alarm"}');
  t.last().serverClose(4408, 'token expired');
  assert.equal(t.client.state, 'closed');
  assert.equal(t.client.reconnectScheduled, true);
  t.clock.advance(t.client.nextReconnectAt - t.clock.now);
  await flush();
  t.last().serverOpen();
  assert.equal(JSON.parse(t.last().sent[0]).token, 'tok-2');
});

test('a token function that fails: error event and backoff', async () => {
  const t = setup({
    token: () => {
      throw new Error('token service down');
    },
  });
  t.client.connect();
  await flush();
  assert.equal(FakeWebSocket.instances.length, 0);
  assert.equal(t.ofType('error')[0].phase, 'token');
  assert.equal(t.client.reconnectScheduled, true);
});

test('close(): no reconnect, also while a reconnect is pending or a token is resolving', async () => {
  const t = setup();
  const ws = await connectAndRegister(t);
  t.client.close();
  assert.equal(ws.clientClose.code, 1000);
  assert.equal(t.client.state, 'closed');
  assert.equal(t.ofType('close').at(-1).willReconnect, false);
  assert.deepEqual(t.clock.pending(), []);

  const u = setup();
  await connectAndRegister(u);
  u.last().serverClose(1006);
  assert.equal(u.client.reconnectScheduled, true);
  u.client.close();
  assert.equal(u.client.reconnectScheduled, false);
  assert.equal(u.client.state, 'closed');

  let resolveToken;
  const v = setup({ token: () => new Promise((r) => (resolveToken = r)) });
  v.client.connect();
  v.client.close();
  resolveToken('late');
  await flush();
  assert.equal(FakeWebSocket.instances.length, 0);
  assert.equal(v.client.state, 'closed');
});

test('close() then connect() opens a new socket at once', async () => {
  const t = setup();
  const first = await connectAndRegister(t);
  // As in a browser, the closing handshake takes a while: the close event comes later.
  first.close = function (code, reason) {
    this.clientClose = { code, reason };
    this.readyState = 2;
  };
  t.client.close();
  assert.equal(t.client.state, 'closed');
  t.client.connect();
  await flush();
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(first.clientClose.code, 1000);
  assert.equal(t.client.state, 'connecting');
  // The first socket's close, arriving late, changes nothing.
  first.serverClose(1000);
  assert.equal(t.client.state, 'connecting');
  assert.equal(t.ofType('close').length, 1);
  assert.equal(t.client.reconnectScheduled, false);
});

test('a handshake that hangs is abandoned after connectTimeout', async () => {
  const t = setup({ connectTimeout: 3000 });
  t.client.connect();
  await flush();
  t.clock.advance(3000);
  assert.equal(t.client.state, 'closed');
  assert.equal(t.client.reconnectScheduled, true);
});

test('connect() while connected is a no-op; options default sensibly', async () => {
  const t = setup();
  await connectAndRegister(t);
  t.client.connect();
  await flush();
  assert.equal(FakeWebSocket.instances.length, 1);
  const c = new PushgateClient({ url: 'ws://x/ws', token: 't', event: 'e', minDelay: undefined });
  assert.equal(c.options.minDelay, DEFAULTS.minDelay);
  assert.equal(c.state, 'idle');
  assert.throws(() => new PushgateClient({ token: 't', event: 'e' }), TypeError);
});

test('the module also sets globalThis.Pushgate for classic scripts', () => {
  assert.equal(globalThis.Pushgate.PushgateClient, PushgateClient);
});

// ---- found by a review on 2026-11-26 --------------------------------------------------------

test('too_many_connections before the 4029 close waits the long backoff', async () => {
  const t = setup();
  const ws = await connectAndOpen(t);
  ws.serverSend('{"type":"error","reason":"too_many_connections"}');
  ws.serverClose(4029, 'too many connections for this user');
  // random() = 0.5 of min(longMaxDelay, longDelay * 2^0): 5000, not the short backoff's 50.
  assert.deepEqual(t.clock.pending(), [5000]);
  assert.equal(t.ofType('close').at(-1).delay, 5000);
});

test("an ack for another event is not this registration's ack", async () => {
  const t = setup();
  const ws = await connectAndOpen(t);
  ws.serverSend('{"type":"registered","event":"other"}');
  assert.deepEqual(t.ofType('registered'), [{ event: 'alarm', acked: false }]);
  assert.deepEqual(t.ofType('message'), ['{"type":"registered","event":"other"}']);
});

test('close reasons are cut to the 123 bytes a close frame holds', async () => {
  assert.equal(closeReason('short'), 'short');
  assert.equal(new TextEncoder().encode(closeReason('x'.repeat(200))).length, 123);
  assert.equal(new TextEncoder().encode(closeReason('é'.repeat(100))).length, 122);
  // A socket whose close() throws on a long reason, as browsers' does.
  class StrictWebSocket extends FakeWebSocket {
    close(code, reason = '') {
      if (new TextEncoder().encode(reason).length > 123) throw new SyntaxError('reason too long');
      super.close(code, reason);
    }
  }
  const t = setup({ WebSocket: StrictWebSocket });
  const ws = await connectAndOpen(t);
  ws.serverSend(JSON.stringify({ type: 'error', reason: 'r'.repeat(200) }));
  assert.equal(ws.readyState, 3, 'closed, not left open');
  assert.equal(t.client.state, 'closed');
});

test('connect() from a close listener leaves one socket, not two', async () => {
  const t = setup();
  const ws = await connectAndRegister(t);
  let once = true;
  t.client.addEventListener('statechange', (e) => {
    if (e.detail.state === 'closed' && once) {
      once = false;
      t.client.connect();
    }
  });
  ws.serverClose(1006);
  assert.equal(t.client.reconnectScheduled, false, 'connect() cancelled the reconnect');
  await flush();
  const second = t.last();
  second.serverOpen();
  second.serverSend('{"type":"registered","event":"alarm"}');
  // Before the fix the reconnect scheduled for the first close fired here and opened a third
  // socket over the second, which stayed open and registered, unseen.
  t.clock.advance(60000);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(t.client.state, 'registered');
});

test('close() from a close listener leaves no reconnect behind', async () => {
  const t = setup();
  const ws = await connectAndRegister(t);
  t.client.addEventListener('statechange', (e) => {
    if (e.detail.state === 'closed') t.client.close();
  });
  ws.serverClose(1006);
  assert.equal(t.client.reconnectScheduled, false);
  assert.equal(t.client.nextReconnectAt, null);
  t.clock.advance(60000);
  assert.equal(FakeWebSocket.instances.length, 1);
});

test('delays that are not numbers >= 0 are refused', () => {
  for (const bad of [NaN, -1, 'abc', Infinity]) {
    assert.throws(
      () => new PushgateClient({ url: 'ws://x/ws', token: 't', event: 'e', minDelay: bad }),
      TypeError,
      String(bad),
    );
  }
  const client = new PushgateClient({ url: 'ws://x/ws', token: 't', event: 'e', maxDelay: 1e12 });
  assert.equal(client.options.maxDelay, 2 ** 31 - 1);
});

