// pushgate.js: a dependency-free browser client for the pushgate WebSocket push gateway.
//
// An ES module: `import { PushgateClient } from './pushgate.js'`. Loading it with
// `<script type="module" src="pushgate.js">` also sets `globalThis.Pushgate` (= `window.Pushgate`)
// for classic scripts that run after it. See clients/README.md for options, events and the
// close-code policy.

/** Option defaults (milliseconds for every delay). */
export const DEFAULTS = Object.freeze({
  ack: true, // ask the gateway to acknowledge the register frame
  minDelay: 500, // backoff base: attempt n waits random(0, min(maxDelay, minDelay * 2^n))
  maxDelay: 30000, // backoff cap
  spreadDelay: 5000, // 1001 / 1012 (gateway draining or restarting): wait random(0, spreadDelay)
  longDelay: 15000, // 4029 (too many connections for this user): backoff base ...
  longMaxDelay: 300000, // ... and cap
  connectTimeout: 15000, // a handshake not done by then is abandoned (then backoff)
  ackTimeout: 10000, // no ack by then: the gateway predates acks; treat as registered, unacked
});

/** Close codes with a meaning for the client (see the README's table). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  ABNORMAL: 1006,
  INVALID_PAYLOAD: 1007,
  MESSAGE_TOO_BIG: 1009,
  SERVICE_RESTART: 1012,
  DISCONNECTED: 4000,
  SLOW_CONSUMER: 4001,
  IDLE_TIMEOUT: 4002,
  REGISTER_TIMEOUT: 4003,
  TOO_MANY_CONNECTIONS: 4029,
  UNAUTHORIZED: 4401,
  TOKEN_EXPIRED: 4408,
});

/**
 * Exponential backoff with full jitter: a uniform delay in [0, min(cap, base * 2^attempt)).
 * `attempt` counts the reconnects since the last successful registration (0 first).
 */
export function backoffDelay(attempt, base, cap, random = Math.random) {
  const n = Math.max(0, Math.min(Math.floor(attempt) || 0, 52));
  const ceiling = Math.min(cap, base * 2 ** n);
  return Math.floor(random() * Math.max(0, ceiling));
}

/**
 * What to do after the connection closed with `code`.
 * Returns `{ action: 'stop' }` (no reconnect: the application closed),
 * `{ action: 'refuse' }` (no reconnect: the application must act, e.g. get a new token), or
 * `{ action: 'reconnect', delay: 'backoff' | 'spread' | 'long' }`.
 * `canRefreshToken`: the token option is a function, so a reconnect fetches a fresh token.
 */
export function closePolicy(code, { clientInitiated = false, canRefreshToken = false } = {}) {
  if (clientInitiated) return { action: 'stop' };
  switch (code) {
    case CloseCode.GOING_AWAY:
    case CloseCode.SERVICE_RESTART:
      return { action: 'reconnect', delay: 'spread' };
    case CloseCode.TOO_MANY_CONNECTIONS:
      return { action: 'reconnect', delay: 'long' };
    case CloseCode.UNAUTHORIZED:
    // The operator disconnected this user (POST /api/v2/disconnect: a logout, a revoked
    // session): coming straight back would undo it. The page decides (connect() again).
    case CloseCode.DISCONNECTED:
      return { action: 'refuse' };
    case CloseCode.TOKEN_EXPIRED:
      return canRefreshToken ? { action: 'reconnect', delay: 'backoff' } : { action: 'refuse' };
    default:
      // 1000 from the other side (a proxy), 1002/1007/1009, 1006 (connection lost or never
      // made), 1011, 4001/4002/4003, and anything unknown.
      return { action: 'reconnect', delay: 'backoff' };
  }
}

/**
 * The acknowledgement in a frame, or null when the frame is not one: a JSON object whose
 * "type" is "registered" or "error".
 */
export function parseAck(data) {
  if (typeof data !== 'string' || !/^\s*\{/.test(data)) return null;
  let value;
  try {
    value = JSON.parse(data);
  } catch {
    return null;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  if (value.type === 'registered') return { type: 'registered', event: value.event };
  if (value.type === 'error') return { type: 'error', reason: String(value.reason ?? '') };
  return null;
}

/**
 * `text` cut to the 123 bytes of UTF-8 a close frame's reason may hold: a longer one makes
 * the browser's `WebSocket.close()` throw, which would leave the socket open.
 */
export function closeReason(text) {
  let reason = String(text ?? '');
  const encoder = new TextEncoder();
  while (encoder.encode(reason).length > 123) reason = reason.slice(0, -1);
  return reason;
}

// Register-error reasons (from an ack) after which retrying the same thing cannot succeed.
const FATAL_REASONS = new Set([
  'token_rejected',
  'malformed',
  'empty_field',
  'name_too_long',
  'user_conflict',
]);

const EventCtor =
  typeof CustomEvent === 'function'
    ? CustomEvent
    : class extends Event {
        constructor(type, init = {}) {
          super(type);
          this.detail = init.detail;
        }
      };

/**
 * A connection to a pushgate gateway for one (token, event) that stays up: it registers,
 * reconnects with backoff, re-registers, and stops where the gateway says retrying is useless.
 *
 * state: 'idle' | 'connecting' | 'open' | 'registered' | 'closed' | 'refused'
 * Events (CustomEvent, data in `detail`): statechange, open, registered, message, error,
 * close, refused.
 */
export class PushgateClient extends EventTarget {
  constructor(options = {}) {
    super();
    if (!options.url) throw new TypeError('PushgateClient: `url` is required');
    if (!options.event) throw new TypeError('PushgateClient: `event` is required');
    if (options.token === undefined || options.token === null) {
      throw new TypeError('PushgateClient: `token` is required (a string or a function)');
    }
    this.options = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS)) {
      if (options[key] === undefined) continue;
      if (typeof DEFAULTS[key] === 'number') {
        // A delay that is not a finite non-negative number (NaN from a bad query string)
        // would reconnect with no delay at all; past 2^31 - 1 ms timers fire at once.
        const value = Number(options[key]);
        if (!Number.isFinite(value) || value < 0) {
          throw new TypeError(`PushgateClient: \`${key}\` must be a number of milliseconds >= 0`);
        }
        this.options[key] = Math.min(value, 2 ** 31 - 1);
      } else {
        this.options[key] = options[key];
      }
    }
    this.url = options.url;
    this.token = options.token; // string, or () => string | Promise<string>
    this.event = options.event;
    this.state = 'idle';
    this.attempt = 0; // reconnects since the last successful registration
    this.lastClose = null; // { code, reason, wasClean } of the last close
    this.nextReconnectAt = null; // ms timestamp of the scheduled reconnect, or null

    // Seams for tests (and unusual environments).
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._random = options.random ?? Math.random;
    this._setTimeout = options.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout ?? ((id) => clearTimeout(id));
    this._now = options.now ?? (() => Date.now());

    this._ws = null;
    this._gen = 0; // bumps on every connect attempt and on close(): stale callbacks compare it
    this._stopped = true;
    this._reconnectTimer = null;
    this._connectTimer = null;
    this._ackTimer = null;
    this._awaitingAck = false;
    this._after = null; // decided before the close arrives: { action, reason }
  }

  /** True while a reconnect is scheduled. */
  get reconnectScheduled() {
    return this._reconnectTimer !== null;
  }

  /** Connects now (cancelling a scheduled reconnect). No-op while connecting or connected. */
  connect() {
    this._stopped = false;
    if (this._ws || this.state === 'connecting') return this;
    this._cancelReconnect();
    this._open();
    return this;
  }

  /**
   * Closes for good: no reconnect until connect() is called again. The socket is let go at
   * once (its own close event is ignored), so that connect() right after opens a new one.
   */
  close(reason = '') {
    this._stopped = true;
    this._gen++;
    this._cancelReconnect();
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    if (ws && ws.readyState !== 2 && ws.readyState !== 3) {
      try {
        ws.close(CloseCode.NORMAL, closeReason(reason));
      } catch {
        /* already closing */
      }
    }
    if (ws) {
      this._decide({ action: 'stop' }, { code: CloseCode.NORMAL, reason, wasClean: true });
    } else if (this.state !== 'closed') {
      this._setState('closed');
    }
    return this;
  }

  // ---- internals -------------------------------------------------------------------------

  _emit(type, detail) {
    this.dispatchEvent(new EventCtor(type, { detail }));
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit('statechange', { state });
  }

  async _resolveToken() {
    const token = typeof this.token === 'function' ? await this.token() : this.token;
    return token;
  }

  async _open() {
    const gen = ++this._gen;
    this._after = null;
    this._awaitingAck = false;
    this._setState('connecting');
    let token;
    try {
      token = await this._resolveToken();
    } catch (error) {
      if (gen !== this._gen) return;
      this._emit('error', { phase: 'token', error });
      this._decide({ action: 'reconnect', delay: 'backoff' }, { code: 0, reason: 'token unavailable' });
      return;
    }
    if (gen !== this._gen) return;
    if (typeof token !== 'string' || token === '') {
      this._emit('error', { phase: 'token', error: new TypeError('token is empty') });
      this._decide({ action: 'refuse' }, { code: 0, reason: 'empty_token' });
      return;
    }
    let ws;
    try {
      ws = new this._WebSocket(this.url);
    } catch (error) {
      // A malformed URL: retrying cannot help.
      this._emit('error', { phase: 'connect', error });
      this._decide({ action: 'stop' }, { code: 0, reason: 'bad url' });
      return;
    }
    this._ws = ws;
    this._connectTimer = this._setTimeout(() => {
      this._connectTimer = null;
      if (this._ws === ws && ws.readyState === 0) {
        this._after = { action: 'reconnect', delay: 'backoff' };
        ws.close();
      }
    }, this.options.connectTimeout);

    ws.onopen = () => {
      if (this._ws !== ws) return;
      this._clearTimer('_connectTimer');
      this._setState('open');
      this._emit('open', {});
      const frame = { token, event: this.event };
      if (this.options.ack) frame.ack = true;
      ws.send(JSON.stringify(frame));
      if (this.options.ack) {
        this._awaitingAck = true;
        this._ackTimer = this._setTimeout(() => {
          this._ackTimer = null;
          if (this._ws === ws && this._awaitingAck) {
            this._awaitingAck = false;
            this._registered(false);
          }
        }, this.options.ackTimeout);
      } else {
        this._registered(false);
      }
    };
    ws.onmessage = (e) => {
      if (this._ws === ws) this._onMessage(ws, e.data);
    };
    ws.onerror = () => {
      if (this._ws === ws) this._emit('error', { phase: 'socket' });
    };
    ws.onclose = (e) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._clearTimers();
      const info = { code: e.code, reason: e.reason, wasClean: e.wasClean };
      let decision;
      if (this._stopped) decision = { action: 'stop' };
      else if (this._after) decision = this._after;
      else decision = closePolicy(e.code, { canRefreshToken: typeof this.token === 'function' });
      this._decide(decision, info);
    };
  }

  _onMessage(ws, data) {
    if (this._awaitingAck) {
      // The first frame after a register frame with ack:true is the ack: pushes for this
      // connection can only follow a successful registration.
      this._awaitingAck = false;
      this._clearTimer('_ackTimer');
      const ack = parseAck(data);
      if (ack && ack.type === 'registered' && ack.event === this.event) {
        this._registered(true);
        return;
      }
      if (ack && ack.type === 'error') {
        this._emit('error', { phase: 'register', reason: ack.reason });
        if (ack.reason === 'token_rejected') {
          // The gateway closes with 4401 next; whatever the close says, do not retry.
          this._after = { action: 'refuse', reason: ack.reason };
        } else if (ack.reason === 'too_many_connections') {
          // The gateway closes with 4029 next: the user's other tabs hold every place.
          this._after = { action: 'reconnect', delay: 'long', reason: ack.reason };
        } else if (FATAL_REASONS.has(ack.reason)) {
          this._after = { action: 'refuse', reason: ack.reason };
          ws.close(CloseCode.NORMAL, closeReason(ack.reason));
        } else {
          // auth_unavailable (or a reason this client does not know): try again later.
          this._after = { action: 'reconnect', delay: 'backoff', reason: ack.reason };
          ws.close(CloseCode.NORMAL, closeReason(ack.reason));
        }
        return;
      }
      // Not an ack: the gateway ignores "ack" (it predates acks). Registered, unacknowledged.
      this._registered(false);
    }
    this._emit('message', data);
  }

  _registered(acked) {
    this.attempt = 0;
    this._setState('registered');
    this._emit('registered', { event: this.event, acked });
  }

  _decide(decision, info) {
    this.lastClose = info;
    const reason = decision.reason ?? info.reason;
    if (decision.action === 'reconnect' && !this._stopped) {
      const delay = this._delayFor(decision.delay);
      this.attempt++;
      // Scheduled before anyone hears of the close: a listener that calls connect() or
      // close() then cancels it, instead of a second socket opening when it fires.
      this._scheduleReconnect(delay);
      this._setState('closed');
      const willReconnect = this._reconnectTimer !== null;
      this._emit('close', { ...info, willReconnect, ...(willReconnect ? { delay } : {}) });
      return;
    }
    if (decision.action === 'refuse' && !this._stopped) {
      this._setState('refused');
      this._emit('close', { ...info, willReconnect: false });
      this._emit('refused', { code: info.code, reason });
      return;
    }
    this._setState('closed');
    this._emit('close', { ...info, willReconnect: false });
  }

  _delayFor(kind) {
    const o = this.options;
    if (kind === 'spread') return Math.floor(this._random() * o.spreadDelay);
    if (kind === 'long') return backoffDelay(this.attempt, o.longDelay, o.longMaxDelay, this._random);
    return backoffDelay(this.attempt, o.minDelay, o.maxDelay, this._random);
  }

  _scheduleReconnect(delay) {
    this._cancelReconnect();
    this.nextReconnectAt = this._now() + delay;
    this._reconnectTimer = this._setTimeout(() => {
      this._reconnectTimer = null;
      this.nextReconnectAt = null;
      if (!this._stopped && !this._ws && this.state !== 'connecting') this._open();
    }, delay);
  }

  _cancelReconnect() {
    if (this._reconnectTimer !== null) this._clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this.nextReconnectAt = null;
  }

  _clearTimer(name) {
    if (this[name] !== null) this._clearTimeout(this[name]);
    this[name] = null;
  }

  _clearTimers() {
    this._clearTimer('_connectTimer');
    this._clearTimer('_ackTimer');
    this._awaitingAck = false;
  }
}

// For classic <script> code on a page that also loads this file as a module.
globalThis.Pushgate = Object.freeze({
  PushgateClient,
  DEFAULTS,
  CloseCode,
  backoffDelay,
  closePolicy,
  parseAck,
});
