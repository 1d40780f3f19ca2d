//! The HTTP server loop: ours, not `axum::serve`, for the limits a probe endpoint needs
//! when clients misbehave. A cap on open connections; a deadline for each request's header
//! (also how long an idle keep-alive connection may wait for its next request, and how
//! long an answer may wait for a client that does not read it); at the cap, the oldest
//! connection not serving a request makes room for the new one, so slow or idle clients
//! cannot lock the probes out however many they open; a shutdown that drops connections
//! still open after a short grace.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// What no client may exceed.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connections open at once (one more while the oldest idle one is being closed).
    pub max_connections: usize,
    /// The longest a request's header may take to arrive, from the connection's first
    /// byte or the previous response, and the longest a response may wait for the client
    /// to read: slow, idle or never-reading clients are dropped after it.
    pub header_timeout: Duration,
}

impl HttpLimits {
    /// From `service.http_max_connections` and `service.http_header_timeout_s`.
    pub fn from_config(service: &crate::settings::ServiceConfig) -> Self {
        HttpLimits {
            max_connections: service.http_max_connections,
            header_timeout: Duration::from_secs(service.http_header_timeout_s),
        }
    }
}

/// At shutdown, requests in flight get this long to finish before their connections are
/// dropped (a scrape takes milliseconds; a client stalling mid-header gets no more).
const CLOSE_WITHIN: Duration = Duration::from_secs(2);

/// The accept loop's view of one open connection.
struct Open {
    /// Requests being handled on it now (0: it waits for a header or for its client).
    busy: Arc<AtomicUsize>,
    /// Closes it.
    evict: oneshot::Sender<()>,
}

/// The open connections by accept order (the first is the oldest).
#[derive(Default)]
struct Connections {
    tasks: JoinSet<u64>,
    open: BTreeMap<u64, Open>,
    next_id: u64,
}

impl Connections {
    /// Forgets the connections that have closed.
    fn reap(&mut self) {
        while let Some(done) = self.tasks.try_join_next() {
            if let Ok(id) = done {
                self.open.remove(&id);
            }
        }
    }

    /// Closes the oldest connection that is not serving a request, if any; true when one
    /// was told to close (its permit returns as its task ends).
    fn evict_oldest_idle(&mut self) -> bool {
        self.reap();
        let victim = self
            .open
            .iter()
            .find(|(_, o)| o.busy.load(Ordering::SeqCst) == 0)
            .map(|(id, _)| *id);
        match victim.and_then(|id| self.open.remove(&id)) {
            Some(o) => {
                let _ = o.evict.send(());
                true
            }
            None => false,
        }
    }

    fn spawn(
        &mut self,
        stream: tokio::net::TcpStream,
        app: Router,
        limits: HttpLimits,
        permit: OwnedSemaphorePermit,
        closing: tokio::sync::watch::Receiver<bool>,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        let busy = Arc::new(AtomicUsize::new(0));
        let (evict, evicted) = oneshot::channel();
        let conn = Conn {
            app,
            limits,
            busy: busy.clone(),
            evicted,
            closing,
            _permit: permit,
        };
        self.open.insert(id, Open { busy, evict });
        self.tasks.spawn(async move {
            conn.serve(stream).await;
            id
        });
    }
}

/// Serves `app` on `listener` within `limits` until `stop` resolves, then closes every
/// connection within [`CLOSE_WITHIN`].
pub async fn run_server(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    stop: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let mut connections = Connections::default();
    let mut stop = std::pin::pin!(stop);
    loop {
        connections.reap();
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // At the cap: an idle or slow client gives way; when every connection is
                // serving a request, the new one waits for the first to finish.
                if connections.evict_oldest_idle() {
                    tracing::debug!("HTTP connections at the cap: the oldest idle one closed");
                }
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = &mut stop => break,
                }
            }
        };
        connections.spawn(stream, app.clone(), limits, permit, closing_rx.clone());
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let mut tasks = connections.tasks;
    let closed = tokio::time::timeout(CLOSE_WITHIN, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if closed.is_err() {
        tracing::info!(
            open = tasks.len(),
            "dropping HTTP connections still open at shutdown"
        );
        tasks.abort_all();
    }
}

/// One connection's task: its service, limits and ways to end.
struct Conn {
    app: Router,
    limits: HttpLimits,
    busy: Arc<AtomicUsize>,
    evicted: oneshot::Receiver<()>,
    closing: tokio::sync::watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

/// Counts a request in its handler; dropped with the handler's future, finished or not.
struct InRequest(Arc<AtomicUsize>);

impl InRequest {
    fn enter(busy: &Arc<AtomicUsize>) -> Self {
        busy.fetch_add(1, Ordering::SeqCst);
        InRequest(busy.clone())
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Conn {
    /// Serves the connection; at shutdown it finishes its request in flight and closes;
    /// evicted, it closes at once.
    async fn serve(self, stream: tokio::net::TcpStream) {
        let Conn {
            app,
            limits,
            busy,
            evicted,
            mut closing,
            _permit,
        } = self;
        let inner = hyper_util::service::TowerToHyperService::new(app);
        let service = hyper::service::service_fn(move |req| {
            let entered = InRequest::enter(&busy);
            let answer = hyper::service::Service::call(&inner, req);
            async move {
                let answer = answer.await;
                drop(entered);
                answer
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(
                hyper_util::rt::TokioIo::new(super::write_deadline::WriteDeadline::new(
                    stream,
                    limits.header_timeout,
                )),
                service,
            );
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            // Only a sent eviction: the senders are dropped with the loop at shutdown.
            Ok(()) = evicted => {}
            () = until_closing(&mut closing) => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}

async fn until_closing(closing: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: dropped here, not held across awaits.
    let _ = closing.wait_for(|c| *c).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A server of `app` within `limits` on a loopback port; the sender stops it.
    async fn start(
        app: Router,
        limits: HttpLimits,
    ) -> (
        std::net::SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(run_server(listener, app, limits, async {
            let _ = stop_rx.await;
        }));
        (addr, stop_tx, server)
    }

    /// A connection that sent half a request header.
    async fn stalled(addr: std::net::SocketAddr) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        s
    }

    /// The whole answer to one `GET path` on a new connection.
    async fn ask(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        answer
    }

    /// Whether the server closed `s` (end of stream or reset) within `within`.
    async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(within, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        });
        read.await.is_ok()
    }

    /// A client that asks and never reads is dropped after the limit, its answers unread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_never_reads_is_dropped() {
        // Answers far larger than the socket buffers.
        let big = "x".repeat(4 << 20);
        let app = Router::new().route("/", get(move || async move { big.clone() }));
        let limits = HttpLimits {
            max_connections: 4,
            header_timeout: Duration::from_secs(1),
        };
        let (addr, stop, server) = start(app, limits).await;
        let mut hog = TcpStream::connect(addr).await.unwrap();
        for _ in 0..8 {
            hog.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
        }
        // Unread for twice the limit: the server gives up writing and closes.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), hog.read_to_end(&mut got))
            .await
            .expect("the server closed the connection of a client that does not read")
            .ok();
        assert!(
            got.len() < 8 * (4 << 20),
            "the hog was not served every answer: {} bytes",
            got.len()
        );
        assert!(ask(addr, "/").await.starts_with("HTTP/1.0 200"));
        let _ = stop.send(());
        server.await.unwrap();
    }

    /// At the cap, the oldest connection not serving a request closes for a new one:
    /// clients stalled mid-header cannot lock out a probe; a third connection is served at
    /// once and the first stalled one is closed, the second left alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_the_cap_the_oldest_idle_connection_gives_way() {
        let app = Router::new().route("/", get(|| async { "ok" }));
        let limits = HttpLimits {
            max_connections: 2,
            header_timeout: Duration::from_secs(60),
        };
        let (addr, stop, server) = start(app, limits).await;
        let mut first = stalled(addr).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut second = stalled(addr).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answer = tokio::time::timeout(Duration::from_secs(10), ask(addr, "/"))
            .await
            .expect("served beside two stalled clients at the cap of 2");
        assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
        assert!(
            closed_within(&mut first, Duration::from_secs(5)).await,
            "the oldest stalled client was closed"
        );
        assert!(
            !closed_within(&mut second, Duration::from_millis(500)).await,
            "the newer stalled client stays (the cap was not passed)"
        );
        let _ = stop.send(());
        tokio::time::timeout(CLOSE_WITHIN + Duration::from_secs(3), server)
            .await
            .expect("the stalled client does not hold the shutdown")
            .unwrap();
    }

    /// Connections serving requests never give way: beyond the cap a new one waits until
    /// a request finishes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_serving_requests_are_not_closed_for_new_ones() {
        let gate = Arc::new(Semaphore::new(0));
        let held = gate.clone();
        let app = Router::new().route("/", get(|| async { "ok" })).route(
            "/slow",
            get(move || {
                let held = held.clone();
                async move {
                    held.acquire().await.unwrap().forget();
                    "slow"
                }
            }),
        );
        let limits = HttpLimits {
            max_connections: 2,
            header_timeout: Duration::from_secs(60),
        };
        let (addr, stop, server) = start(app, limits).await;
        let slow: Vec<_> = (0..2).map(|_| tokio::spawn(ask(addr, "/slow"))).collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let third = tokio::spawn(ask(addr, "/"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !third.is_finished(),
            "a connection beyond the cap is served while both serve requests"
        );
        gate.add_permits(1);
        let answer = tokio::time::timeout(Duration::from_secs(10), third)
            .await
            .expect("served once a request finished")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
        gate.add_permits(1);
        for s in slow {
            let answer = tokio::time::timeout(Duration::from_secs(10), s)
                .await
                .expect("the slow requests finish")
                .unwrap();
            assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
        }
        let _ = stop.send(());
        server.await.unwrap();
    }
}
