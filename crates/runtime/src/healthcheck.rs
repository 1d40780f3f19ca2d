//! `paceline healthcheck`: asks a running service's `/healthz` whether it is alive (or
//! `/readyz` whether it is ready), for a container's `HEALTHCHECK` and for scripts that
//! wait for the service (the image carries no curl). Plain HTTP/1.0 over a socket
//! with one deadline: a health check that hangs is worse than one that fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Why the service is not healthy, as the check prints it.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The configured address does not resolve.
    #[error("{addr}: not an address to reach ({reason})")]
    Address {
        /// As configured.
        addr: String,
        /// The resolver's answer.
        reason: String,
    },
    /// Nothing accepts connections there.
    #[error("cannot reach {addr}")]
    Connect {
        /// Where it was asked.
        addr: SocketAddr,
        /// The connection's error.
        #[source]
        source: std::io::Error,
    },
    /// Connected, but no complete answer within the deadline.
    #[error("no answer from {addr} within {timeout:?}")]
    Read {
        /// Where it was asked.
        addr: SocketAddr,
        /// The deadline.
        timeout: Duration,
        /// The socket's error.
        #[source]
        source: std::io::Error,
    },
    /// An answer other than 200: the service says why.
    #[error("{addr} answered {status}: {body}")]
    Unhealthy {
        /// Where it was asked.
        addr: SocketAddr,
        /// The status line.
        status: String,
        /// The reason the service gives.
        body: String,
    },
}

/// The address to ask for a service listening on `listen`: a wildcard address (a
/// container binds `0.0.0.0`) is reached on loopback.
pub fn target_of(listen: &str) -> Result<SocketAddr, HealthError> {
    let bad = |reason: String| HealthError::Address {
        addr: listen.to_string(),
        reason,
    };
    let mut addr = listen
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("resolves to nothing".into()))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(addr)
}

/// Which endpoint to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `/healthz`: alive.
    Alive,
    /// `/readyz`: ready (connected, sources assigned, sink healthy).
    Ready,
}

/// Asks the probe's endpoint at `addr`; `Ok` with the body on 200.
pub fn check(addr: SocketAddr, probe: Probe, timeout: Duration) -> Result<String, HealthError> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| HealthError::Connect { addr, source })?;
    let read_error = |source| HealthError::Read {
        addr,
        timeout,
        source,
    };
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left)).map_err(read_error)?;
    stream.set_write_timeout(Some(left)).map_err(read_error)?;
    let path = match probe {
        Probe::Alive => "/healthz",
        Probe::Ready => "/readyz",
    };
    stream
        .write_all(
            format!("GET {path} HTTP/1.0\r\nHost: paceline\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(read_error)?;
    let mut answer = Vec::new();
    // `/healthz` answers a line; the bound keeps a wrong service from filling memory.
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .map_err(read_error)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").trim().to_string();
    let body = body.trim().to_string();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(body)
    } else {
        Err(HealthError::Unhealthy { addr, status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server answering `reply` to the first request.
    fn answering(reply: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(reply.as_bytes());
            }
        });
        addr
    }

    #[test]
    fn a_wildcard_listen_address_is_asked_on_loopback() {
        assert_eq!(
            target_of("0.0.0.0:9898").expect("address").to_string(),
            "127.0.0.1:9898"
        );
        assert_eq!(
            target_of("[::]:9898").expect("address").to_string(),
            "[::1]:9898"
        );
        assert_eq!(
            target_of("10.1.2.3:80").expect("address").to_string(),
            "10.1.2.3:80"
        );
        assert!(matches!(
            target_of("no port"),
            Err(HealthError::Address { .. })
        ));
    }

    #[test]
    fn healthy_on_200_and_unhealthy_with_the_reason_otherwise() {
        let ok = answering("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n");
        assert_eq!(
            check(ok, Probe::Alive, Duration::from_secs(5)).expect("healthy"),
            "ok"
        );
        let wedged = answering("HTTP/1.1 503 Service Unavailable\r\n\r\ndataflow wedged\n");
        let e = check(wedged, Probe::Ready, Duration::from_secs(5)).expect_err("unhealthy");
        let text = e.to_string();
        assert!(
            text.contains("503") && text.contains("dataflow wedged"),
            "{text}"
        );
    }

    #[test]
    fn a_silent_service_fails_within_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let started = Instant::now();
        let e = check(addr, Probe::Alive, Duration::from_millis(300)).expect_err("no answer");
        assert!(matches!(e, HealthError::Read { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }

    #[test]
    fn nothing_listening_is_named() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let e = check(addr, Probe::Alive, Duration::from_secs(2)).expect_err("refused");
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
    }
}
