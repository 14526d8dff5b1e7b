//! URL parsing, address resolution and socket setup shared by the WebSocket
//! clients and the HTTP pushers.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use anyhow::{anyhow, bail, Context, Result};
use tokio::net::{TcpSocket, TcpStream};

/// A parsed `scheme://host[:port][/path]` URL.
#[derive(Debug, Clone)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(url: &str, scheme: &str, default_port: u16) -> Result<Url> {
        let prefix = format!("{scheme}://");
        let rest = url.strip_prefix(&prefix).ok_or_else(|| {
            anyhow!("URL {url:?} must start with {prefix} (no other scheme: no TLS)")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| anyhow!("bad IPv6 authority in {url:?}"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().with_context(|| format!("bad port in {url:?}"))?,
                None => default_port,
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().with_context(|| format!("bad port in {url:?}"))?,
                ),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            bail!("no host in {url:?}");
        }
        Ok(Url {
            host,
            port,
            path: path.to_string(),
        })
    }

    /// Value for the `Host:` header.
    pub fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub async fn resolve(&self) -> Result<SocketAddr> {
        let mut addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("resolving {}", self.host))?;
        addrs
            .next()
            .ok_or_else(|| anyhow!("{} resolved to no address", self.host))
    }
}

/// True for "out of file descriptors" errors (per process or system wide).
pub fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Open a TCP connection with TCP_NODELAY, optionally bound to a source
/// address first. With a source address the port is chosen at connect time
/// (IP_BIND_ADDRESS_NO_PORT), so every source IP gets its own full
/// ephemeral port range per destination.
pub async fn tcp_connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        if ip.is_ipv4() {
            let one: libc::c_int = 1;
            // SAFETY: setsockopt on a valid fd with a correctly sized int;
            // failure is harmless (we then fall back to a bind-time port).
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = sock.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parse leading ASCII digits; returns the value and the rest.
#[inline]
pub fn parse_u64(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v: u64 = 0;
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        v = v.checked_mul(10)?.checked_add((b[i] - b'0') as u64)?;
        i += 1;
    }
    if i == 0 {
        None
    } else {
        Some((v, &b[i..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("ws://127.0.0.1:8080/ws", "ws", 80).unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/ws")
        );
        let u = Url::parse("http://localhost", "http", 80).unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("localhost", 80, "/")
        );
        let u = Url::parse("http://[::1]:9/x/", "http", 80).unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 9, "/x/")
        );
        assert_eq!(u.host_header(), "[::1]:9");
        assert!(Url::parse("wss://a/ws", "ws", 80).is_err());
    }

    #[test]
    fn parses_numbers() {
        assert_eq!(parse_u64(b"123,x"), Some((123, &b",x"[..])));
        assert_eq!(parse_u64(b"x"), None);
    }
}
