//! Close codes pushgate sends, in one table (also in the README).

/// A WebSocket close status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// The client closed; the server echoes its code.
    pub const NORMAL: Self = Self(1000);
    /// The gateway is shutting down (drain); reconnect elsewhere.
    pub const GOING_AWAY: Self = Self(1001);
    /// The client broke RFC 6455 (unmasked frame, reserved bits, bad opcode, ...).
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// A text message or close reason that is not UTF-8.
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// A client message above `--max-message-size`.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// The gateway failed internally.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// The connection's outbound queue overflowed: the client reads slower than alerts arrive.
    pub const SLOW_CONSUMER: Self = Self(4001);
    /// The client sent nothing (no pong, no frame) within the idle timeout.
    pub const IDLE_TIMEOUT: Self = Self(4002);
    /// The client did not register within the register timeout.
    pub const REGISTER_TIMEOUT: Self = Self(4003);
    /// The user already holds `--max-connections-per-user` connections.
    pub const TOO_MANY_CONNECTIONS: Self = Self(4029);
    /// Closed on request of the push side (`POST /api/v2/disconnect`).
    pub const DISCONNECTED: Self = Self(4000);
    /// The token was refused (sent only to clients that asked for an ack): do not retry
    /// with the same token.
    pub const UNAUTHORIZED: Self = Self(4401);
    /// The token expired while connected: reconnect with a fresh one.
    pub const TOKEN_EXPIRED: Self = Self(4408);

    /// Whether a peer may put this code in a close frame: RFC 6455 §7.4 and the codes IANA
    /// registered since (1012 service restart, 1013 try again later), as gorilla, the old
    /// server's library, accepts them; 1014 and 1015 stay refused, as there.
    pub fn may_be_sent_by_peer(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1013 | 3000..=4999)
    }
}

#[cfg(test)]
mod tests {
    use super::CloseCode;

    #[test]
    fn reserved_codes_may_not_be_sent() {
        for code in [0, 999, 1004, 1005, 1006, 1014, 1015, 1016, 2999, 5000] {
            assert!(!CloseCode(code).may_be_sent_by_peer(), "{code}");
        }
        for code in [1000, 1001, 1002, 1003, 1007, 1011, 1012, 1013, 3000, 4999] {
            assert!(CloseCode(code).may_be_sent_by_peer(), "{code}");
        }
    }
}
