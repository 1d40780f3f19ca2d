//! One timely cluster across processes: where each worker is, connecting the processes
//! within a deadline, and the handshake in which they prove they belong to the cluster,
//! check that they run the same build, layout and configuration, and agree on the
//! checkpoint to resume from.
//!
//! The connections are made here, not by timely (which retries for ever and reports a
//! missing peer only on standard output), and handed to timely once every process has
//! answered. Process `i` connects to every process before it and accepts every process
//! after it, as timely does. Each connection first proves knowledge of the cluster secret
//! both ways, before anything else crosses it: the connecting side sends a fresh nonce,
//! the accepting side answers with its own nonce and an HMAC-SHA256 of both under the
//! secret, the connecting side checks it and answers with its own HMAC (the roles in the
//! MAC, so that neither proof can be reflected; fresh nonces, so that none can be
//! replayed). Only then one [`Hello`] goes each way. Each accepted connection is
//! handshaken on a thread of its own within [`HANDSHAKE_TIMEOUT`]: a connection that says
//! nothing cannot hold up the cluster's start.
//!
//! Once formed, every connection gets TCP keepalive and a user timeout from
//! `peer_timeout`: a peer that vanishes without closing (a machine lost, a cut link) breaks
//! the connection within it, and the process stops, naming the peer.
//!
//! With [`ClusterTls`], every connection is mutual TLS from its first byte ([`tls`]).

mod tls;
use tls::Link;
pub use tls::{ClusterTls, TlsError};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Where the workers are: this process's index, how many processes, workers per process.
/// Worker `w` of process `p` is worker `p * workers + w` of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// This process's index.
    pub process: usize,
    /// Processes in the cluster.
    pub processes: usize,
    /// Workers per process.
    pub workers: usize,
}

impl Placement {
    /// One process of `workers` workers.
    pub fn single(workers: usize) -> Placement {
        Placement {
            process: 0,
            processes: 1,
            workers: workers.max(1),
        }
    }

    /// Workers of the whole cluster.
    pub fn total(&self) -> usize {
        self.processes.max(1) * self.workers.max(1)
    }

    /// The cluster index of this process's first worker.
    pub fn first(&self) -> usize {
        self.process * self.workers.max(1)
    }

    /// This process's index of cluster worker `global`, if it runs here.
    pub fn local(&self, global: usize) -> Option<usize> {
        let first = self.first();
        (global >= first && global < first + self.workers.max(1)).then(|| global - first)
    }

    /// The process that runs cluster worker `global`.
    pub fn process_of(&self, global: usize) -> usize {
        global / self.workers.max(1)
    }
}

/// How to reach the other processes.
#[derive(Clone)]
pub struct ClusterSpec {
    /// The layout.
    pub placement: Placement,
    /// Every process's address (`host:port`), by index.
    pub addresses: Vec<String>,
    /// How long to wait for every peer.
    pub connect_timeout: Duration,
    /// A digest of the settings every process must share (a process configured
    /// differently is refused).
    pub fingerprint: u64,
    /// The shared secret every connection proves knowledge of.
    pub secret: Vec<u8>,
    /// This build (version and revision): processes of different builds are refused.
    pub build: String,
    /// How long a silent peer may go unnoticed once the cluster runs.
    pub peer_timeout: Duration,
    /// TLS for every connection between processes (None: plain TCP).
    pub tls: Option<ClusterTls>,
}

impl std::fmt::Debug for ClusterSpec {
    // The secret is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSpec")
            .field("placement", &self.placement)
            .field("addresses", &self.addresses)
            .field("connect_timeout", &self.connect_timeout)
            .field("fingerprint", &self.fingerprint)
            .field("build", &self.build)
            .field("peer_timeout", &self.peer_timeout)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// What each process tells each peer once both proved the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hello {
    magic: [u8; 8],
    process: u32,
    processes: u32,
    workers: u32,
    fingerprint: u64,
    /// The build, `version (revision)`.
    build: String,
    /// The checkpoints this process holds, by sequence.
    checkpoints: Vec<u64>,
}

const MAGIC: [u8; 8] = *b"PCLNHELO";

/// The handshake's and the hello's version: a process speaking another is refused, named.
pub const PROTOCOL: u32 = 2;
const OPEN_MAGIC: [u8; 8] = *b"PCLNOPEN";
const NONCE: usize = 32;
const PROOF: usize = 32;
/// `Open`: magic, protocol, the connecting side's nonce.
const OPEN_LEN: usize = 8 + 4 + NONCE;
/// `Challenge`: magic, protocol, the accepting side's nonce, its proof.
const CHALLENGE_LEN: usize = 8 + 4 + NONCE + PROOF;
/// How long one connection may take to prove itself and say hello; a connection silent
/// for longer is dropped (its own thread: the others go on).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A hello is a few numbers and at most a handful of checkpoint sequences.
const MAX_HELLO: u32 = 64 * 1024;

/// Each peer's connection and hello, by process index, as they come in.
type Found = Mutex<Vec<Option<(Link, Hello)>>>;

/// The processes are connected: the sockets for timely, and where to resume.
#[derive(Debug)]
pub struct Connected {
    pub(crate) sockets: Vec<Option<TcpStream>>,
    /// The layout.
    pub placement: Placement,
    /// The newest checkpoint every process holds, if any.
    pub resume_from: Option<u64>,
    /// The checkpoints each process holds, by index.
    pub held: Vec<Vec<u64>>,
}

/// The cluster could not be formed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// This process's address cannot be listened on.
    #[error(
        "cluster: cannot listen on {address} (cluster.processes[{index}], this process): {source}"
    )]
    Listen {
        /// This process's index.
        index: usize,
        /// Its address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Peers did not answer in time.
    #[error("cluster: {} did not connect within {timeout_s} s (cluster.connect_timeout_s)", missing.join(", "))]
    Timeout {
        /// Each missing peer, as `process <i> (<address>)`.
        missing: Vec<String>,
        /// The timeout.
        timeout_s: u64,
    },
    /// A formed connection could not be handed to the dataflow.
    #[error("cluster: the connection to process {index} ({address}) cannot be set up: {source}")]
    Tunnel {
        /// The peer.
        index: usize,
        /// Its address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A peer runs another layout or configuration.
    #[error("cluster: process {index} ({address}) {what}")]
    Mismatch {
        /// The peer.
        index: usize,
        /// Its address.
        address: String,
        /// What differs.
        what: String,
    },
}

/// The addresses of the cluster, for naming a peer in a lost connection's message.
static PEERS: OnceLock<Vec<String>> = OnceLock::new();

/// The peer a timely communication thread talks to (`timely:recv-<i>`, `timely:send-<i>`),
/// as `process <i> (<address>)`: a panic on one of them means the connection was lost.
pub fn peer_of_thread(name: &str) -> Option<String> {
    let index: usize = name
        .strip_prefix("timely:recv-")
        .or_else(|| name.strip_prefix("timely:send-"))?
        .parse()
        .ok()?;
    let address = PEERS.get().and_then(|p| p.get(index)).cloned();
    Some(match address {
        Some(a) => format!("process {index} ({a})"),
        None => format!("process {index}"),
    })
}

fn describe(spec: &ClusterSpec, index: usize) -> String {
    format!("process {index} ({})", spec.addresses[index])
}

/// Connects to every peer within `spec.connect_timeout`, exchanges hellos and agrees on the
/// newest checkpoint all hold (`checkpoints`: the sequences this process holds).
pub fn connect(spec: &ClusterSpec, checkpoints: &[u64]) -> Result<Connected, ClusterError> {
    let me = spec.placement.process;
    let deadline = Instant::now() + spec.connect_timeout;
    let hello = Hello {
        magic: MAGIC,
        process: me as u32,
        processes: spec.placement.processes as u32,
        workers: spec.placement.workers as u32,
        fingerprint: spec.fingerprint,
        build: spec.build.clone(),
        checkpoints: checkpoints.to_vec(),
    };
    let listener = listen(spec)?;
    let found: Arc<Found> = Arc::new(Mutex::new(
        (0..spec.addresses.len()).map(|_| None).collect(),
    ));
    // Accepting runs beside connecting: two processes that each wait for the other to
    // accept first would otherwise both time out.
    let give_up = Arc::new(AtomicBool::new(false));
    let accepting = {
        let (spec, hello, found) = (spec.clone(), hello.clone(), found.clone());
        let until = Until {
            deadline,
            give_up: give_up.clone(),
        };
        std::thread::Builder::new()
            .name("cluster-accept".into())
            .spawn(move || accept_later(&spec, listener, &hello, found, &until))
    };
    let connected = connect_earlier(spec, &hello, &found, deadline);
    // A peer refused while connecting is the answer: the later ones need not be awaited.
    give_up.store(connected.is_err(), Ordering::Relaxed);
    let accepted = match accepting {
        Ok(h) => h.join().unwrap_or(Ok(())),
        Err(source) => Err(ClusterError::Listen {
            index: me,
            address: spec.addresses[me].clone(),
            source,
        }),
    };
    connected?;
    accepted?;
    let found = std::mem::take(&mut *found.lock().unwrap_or_else(|p| p.into_inner()));
    let missing: Vec<String> = (0..spec.addresses.len())
        .filter(|i| *i != me && found[*i].is_none())
        .map(|i| describe(spec, i))
        .collect();
    if !missing.is_empty() {
        return Err(ClusterError::Timeout {
            missing,
            timeout_s: spec.connect_timeout.as_secs(),
        });
    }
    let mut resume: Vec<u64> = checkpoints.to_vec();
    let mut sockets = Vec::new();
    let mut held = Vec::new();
    for (index, entry) in found.into_iter().enumerate() {
        match entry {
            Some((link, peer)) => {
                resume.retain(|c| peer.checkpoints.contains(c));
                held.push(peer.checkpoints);
                notice_silence(link.tcp(), spec.peer_timeout);
                let stream = link.into_timely().map_err(|source| ClusterError::Tunnel {
                    index,
                    address: spec.addresses[index].clone(),
                    source,
                })?;
                sockets.push(Some(stream));
            }
            None => {
                held.push(checkpoints.to_vec());
                sockets.push(None);
            }
        }
    }
    let _ = PEERS.set(spec.addresses.clone());
    Ok(Connected {
        sockets,
        placement: spec.placement,
        resume_from: resume.into_iter().max(),
        held,
    })
}

/// Listens on this process's address: on the address itself when it is an IP address,
/// else (a host name, such as a StatefulSet pod's) on every interface at its port, so
/// that the name need not resolve before the peers can reach it.
fn listen(spec: &ClusterSpec) -> Result<TcpListener, ClusterError> {
    let me = spec.placement.process;
    let address = &spec.addresses[me];
    let error = |source| ClusterError::Listen {
        index: me,
        address: address.clone(),
        source,
    };
    let bind: SocketAddr = match address.parse() {
        Ok(a) => a,
        Err(_) => {
            let port = address
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .ok_or_else(|| {
                    error(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "not host:port",
                    ))
                })?;
            SocketAddr::from(([0, 0, 0, 0], port))
        }
    };
    let listener = TcpListener::bind(bind).map_err(error)?;
    listener.set_nonblocking(true).map_err(error)?;
    Ok(listener)
}

/// How long to wait between attempts to reach a peer that is not up yet.
const RETRY: Duration = Duration::from_millis(200);

/// Keepalive probes and a user timeout, so that a peer gone without closing (a machine
/// lost, a link cut) fails the connection within `timeout`: idle a third of it, then
/// three probes a sixth apart; unacknowledged data for the whole of it.
fn notice_silence(stream: &TcpStream, timeout: Duration) {
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time((timeout / 3).max(Duration::from_secs(1)))
        .with_interval((timeout / 6).max(Duration::from_secs(1)))
        .with_retries(3);
    let set = socket
        .set_tcp_keepalive(&keepalive)
        .and_then(|()| socket.set_tcp_user_timeout(Some(timeout)));
    if let Err(e) = set {
        tracing::warn!(error = %e, "cannot set keepalive on a cluster connection: a vanished peer is noticed only when TCP gives up");
    }
}

/// How a handshake failed: worth another attempt (the peer restarting, a network hiccup),
/// or for good (the peer does not know the secret, or speaks another protocol).
enum Handshake {
    Retry,
    Refused(String),
}

fn hmac_key(spec: &ClusterSpec) -> ring::hmac::Key {
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &spec.secret)
}

/// The proof of one side: the HMAC of its role and both nonces, the peer's first.
fn proof(key: &ring::hmac::Key, role: &[u8], first: &[u8], second: &[u8]) -> ring::hmac::Tag {
    let mut ctx = ring::hmac::Context::with_key(key);
    ctx.update(role);
    ctx.update(first);
    ctx.update(second);
    ctx.sign()
}

fn verify(key: &ring::hmac::Key, role: &[u8], first: &[u8], second: &[u8], tag: &[u8]) -> bool {
    let mut message = Vec::with_capacity(role.len() + first.len() + second.len());
    message.extend_from_slice(role);
    message.extend_from_slice(first);
    message.extend_from_slice(second);
    ring::hmac::verify(key, &message, tag).is_ok()
}

fn nonce() -> Result<[u8; NONCE], Handshake> {
    use ring::rand::SecureRandom;
    let mut n = [0u8; NONCE];
    ring::rand::SystemRandom::new()
        .fill(&mut n)
        .map_err(|_| Handshake::Refused("no random numbers for a nonce".into()))?;
    Ok(n)
}

/// The connecting side's part of the proof, before any hello.
fn prove_as_connector(
    stream: &mut Link,
    spec: &ClusterSpec,
    deadline: Instant,
) -> Result<(), Handshake> {
    let key = hmac_key(spec);
    let mine = nonce()?;
    let mut open = Vec::with_capacity(OPEN_LEN);
    open.extend_from_slice(&OPEN_MAGIC);
    open.extend_from_slice(&PROTOCOL.to_le_bytes());
    open.extend_from_slice(&mine);
    stream.write_all(&open).map_err(|_| Handshake::Retry)?;
    let challenge =
        read_exactly::<CHALLENGE_LEN>(stream, deadline).map_err(|_| Handshake::Retry)?;
    if challenge[..8] != OPEN_MAGIC {
        return Err(Handshake::Refused(
            "is not a paceline cluster process".into(),
        ));
    }
    let protocol = u32::from_le_bytes([challenge[8], challenge[9], challenge[10], challenge[11]]);
    if protocol != PROTOCOL {
        return Err(Handshake::Refused(format!(
            "speaks cluster protocol {protocol}, this process {PROTOCOL}: every process must run the same paceline build"
        )));
    }
    let theirs = &challenge[12..12 + NONCE];
    let their_proof = &challenge[12 + NONCE..];
    if !verify(&key, b"accept", &mine, theirs, their_proof) {
        return Err(Handshake::Refused(
            "proves another cluster secret: every process needs the same PACELINE_CLUSTER_SECRET"
                .into(),
        ));
    }
    stream
        .write_all(proof(&key, b"connect", theirs, &mine).as_ref())
        .map_err(|_| Handshake::Retry)?;
    stream.flush().map_err(|_| Handshake::Retry)
}

/// The accepting side's part of the proof; `Err` says why the connection was refused.
fn prove_as_acceptor(
    stream: &mut Link,
    spec: &ClusterSpec,
    deadline: Instant,
) -> Result<(), String> {
    let open = read_exactly::<OPEN_LEN>(stream, deadline)
        .map_err(|e| format!("no opening within the handshake's time ({e})"))?;
    if open[..8] != OPEN_MAGIC {
        return Err("not a paceline cluster process".into());
    }
    let protocol = u32::from_le_bytes([open[8], open[9], open[10], open[11]]);
    let key = hmac_key(spec);
    let mine = nonce().map_err(|_| "no random numbers for a nonce".to_string())?;
    let theirs = &open[12..];
    let mut challenge = Vec::with_capacity(CHALLENGE_LEN);
    challenge.extend_from_slice(&OPEN_MAGIC);
    challenge.extend_from_slice(&PROTOCOL.to_le_bytes());
    challenge.extend_from_slice(&mine);
    if protocol == PROTOCOL {
        challenge.extend_from_slice(proof(&key, b"accept", theirs, &mine).as_ref());
    } else {
        // No proof for a protocol this build does not speak: only the version, so that
        // the other side can name it.
        challenge.extend_from_slice(&[0u8; PROOF]);
    }
    stream
        .write_all(&challenge)
        .map_err(|e| format!("closed during the handshake ({e})"))?;
    if protocol != PROTOCOL {
        return Err(format!(
            "speaks cluster protocol {protocol}, this process {PROTOCOL}"
        ));
    }
    let their_proof = read_exactly::<PROOF>(stream, deadline)
        .map_err(|e| format!("no proof within the handshake's time ({e})"))?;
    if !verify(&key, b"connect", &mine, theirs, &their_proof) {
        return Err("it does not prove the cluster secret".into());
    }
    Ok(())
}

/// Reads exactly `N` bytes before `deadline`.
fn read_exactly<const N: usize>(stream: &mut Link, deadline: Instant) -> std::io::Result<[u8; N]> {
    let left = deadline.saturating_duration_since(Instant::now());
    stream
        .tcp()
        .set_read_timeout(Some(left.max(Duration::from_millis(10))))?;
    let mut buf = [0u8; N];
    stream.read_exact(&mut buf)?;
    Ok(buf)
}

/// Connects to every process before this one, retrying until the deadline.
fn connect_earlier(
    spec: &ClusterSpec,
    hello: &Hello,
    found: &Found,
    deadline: Instant,
) -> Result<(), ClusterError> {
    for index in 0..spec.placement.process {
        while Instant::now() < deadline {
            let Some(stream) = try_connect(&spec.addresses[index], deadline) else {
                std::thread::sleep(RETRY);
                continue;
            };
            let step = deadline.min(Instant::now() + HANDSHAKE_TIMEOUT);
            // A peer that accepts but breaks off the handshake (restarting) is tried again.
            let opened = open_as_connector(spec, index, stream, step)
                .and_then(|mut link| prove_as_connector(&mut link, spec, step).map(|()| link));
            let mut stream = match opened {
                Ok(link) => link,
                Err(Handshake::Retry) => {
                    std::thread::sleep(RETRY);
                    continue;
                }
                Err(Handshake::Refused(what)) => {
                    return Err(ClusterError::Mismatch {
                        index,
                        address: spec.addresses[index].clone(),
                        what,
                    })
                }
            };
            if write_hello(&mut stream, hello).is_err() {
                std::thread::sleep(RETRY);
                continue;
            }
            let Ok(peer) = read_hello(&mut stream, step) else {
                std::thread::sleep(RETRY);
                continue;
            };
            check_peer(spec, index, &peer)?;
            if let Ok(mut f) = found.lock() {
                f[index] = Some((stream, peer));
            }
            break;
        }
    }
    Ok(())
}

/// The connection to process `index` as the cluster runs it: plain, or TLS with its
/// handshake done (a refusal by TLS is for good: another CA, a certificate for another
/// host).
fn open_as_connector(
    spec: &ClusterSpec,
    index: usize,
    stream: TcpStream,
    deadline: Instant,
) -> Result<Link, Handshake> {
    let Some(tls) = &spec.tls else {
        return Ok(Link::plain(stream));
    };
    let left = deadline.saturating_duration_since(Instant::now());
    stream
        .set_read_timeout(Some(left.max(Duration::from_millis(10))))
        .map_err(|_| Handshake::Retry)?;
    let conn = tls
        .client(&spec.addresses[index])
        .map_err(|e| Handshake::Refused(format!("cannot be checked by TLS: {e}")))?;
    Link::tls(stream, conn).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => Handshake::Refused(format!(
            "is refused by TLS ({e}): every process needs a certificate of the CA in cluster.tls_ca_file, naming its host"
        )),
        _ => Handshake::Retry,
    })
}

fn try_connect(address: &str, deadline: Instant) -> Option<TcpStream> {
    // Resolved on every attempt: a pod's name exists only once the pod does.
    let addr = address.to_socket_addrs().ok()?.next()?;
    let left = deadline.saturating_duration_since(Instant::now());
    let stream = TcpStream::connect_timeout(&addr, left.min(Duration::from_secs(2))).ok()?;
    stream.set_nodelay(true).ok()?;
    Some(stream)
}

/// Until when to accept: the deadline, or the start given up.
struct Until {
    deadline: Instant,
    give_up: Arc<AtomicBool>,
}

impl Until {
    fn passed(&self) -> bool {
        Instant::now() >= self.deadline || self.give_up.load(Ordering::Relaxed)
    }
}

/// Accepts every process after this one until the deadline, each connection handshaken on
/// a thread of its own; a peer that proved the secret but runs another build, layout or
/// configuration fails the start.
fn accept_later(
    spec: &ClusterSpec,
    listener: TcpListener,
    hello: &Hello,
    found: Arc<Found>,
    until: &Until,
) -> Result<(), ClusterError> {
    let me = spec.placement.process;
    let later = spec.addresses.len() - me - 1;
    let refused: Arc<Mutex<Option<ClusterError>>> = Arc::new(Mutex::new(None));
    let answered = |found: &Found| {
        found
            .lock()
            .map_or(0, |f| f.iter().skip(me + 1).filter(|e| e.is_some()).count())
    };
    while answered(&found) < later && !until.passed() {
        if let Some(e) = refused.lock().ok().and_then(|mut r| r.take()) {
            return Err(e);
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let (spec, hello, found, refused) =
            (spec.clone(), hello.clone(), found.clone(), refused.clone());
        let deadline = until.deadline;
        let _ = std::thread::Builder::new()
            .name("cluster-handshake".into())
            .spawn(move || {
                let step = deadline.min(Instant::now() + HANDSHAKE_TIMEOUT);
                match handshake_accepted(stream, &spec, &hello, step) {
                    Ok(Some((index, stream, peer))) => {
                        if let Ok(mut f) = found.lock() {
                            f[index] = Some((stream, peer));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        if let Ok(mut r) = refused.lock() {
                            r.get_or_insert(e);
                        }
                    }
                }
            });
    }
    match refused.lock().ok().and_then(|mut r| r.take()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One accepted connection: the proof, then the hellos. `Ok(None)`: refused and logged (a
/// stranger, a silent or wrong-secret connection, a process that is not one after this
/// one); `Err`: a proven peer of another build or configuration.
fn handshake_accepted(
    stream: TcpStream,
    spec: &ClusterSpec,
    hello: &Hello,
    deadline: Instant,
) -> Result<Option<(usize, Link, Hello)>, ClusterError> {
    let from = stream
        .peer_addr()
        .map_or_else(|_| "an unknown address".to_string(), |a| a.to_string());
    let refuse = |why: String| {
        tracing::warn!(peer = %from, reason = %why, "refused a connection to the cluster port");
        Ok(None)
    };
    if stream.set_nonblocking(false).is_err() || stream.set_nodelay(true).is_err() {
        return Ok(None);
    }
    let mut stream = match &spec.tls {
        None => Link::plain(stream),
        Some(tls) => {
            let left = deadline.saturating_duration_since(Instant::now());
            let opened = stream
                .set_read_timeout(Some(left.max(Duration::from_millis(10))))
                .and_then(|()| tls.server())
                .and_then(|conn| Link::tls(stream, conn));
            match opened {
                Ok(link) => link,
                Err(e) => return refuse(format!("TLS: {e}")),
            }
        }
    };
    if let Err(why) = prove_as_acceptor(&mut stream, spec, deadline) {
        return refuse(why);
    }
    let peer = match read_hello(&mut stream, deadline) {
        Ok(p) => p,
        Err(e) => return refuse(format!("no hello after the proof ({e})")),
    };
    // Answered before checking, so that a peer configured differently learns it too.
    if write_hello(&mut stream, hello).is_err() {
        return Ok(None);
    }
    let me = spec.placement.process;
    let index = peer.process as usize;
    if index <= me || index >= spec.addresses.len() {
        // Not a process after this one: a peer configured with another index, named
        // when its own side checks this process's hello.
        return refuse(format!("it says it is process {index}"));
    }
    check_peer(spec, index, &peer)?;
    Ok(Some((index, stream, peer)))
}

fn write_hello(stream: &mut Link, hello: &Hello) -> std::io::Result<()> {
    let bytes = bincode::serialize(hello).map_err(std::io::Error::other)?;
    stream.write_all(&(bytes.len() as u32).to_le_bytes())?;
    stream.write_all(&bytes)?;
    stream.flush()
}

fn read_hello(stream: &mut Link, deadline: Instant) -> std::io::Result<Hello> {
    let left = deadline.saturating_duration_since(Instant::now());
    stream
        .tcp()
        .set_read_timeout(Some(left.max(Duration::from_millis(100))))?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_HELLO {
        return Err(std::io::Error::other("not a paceline cluster peer"));
    }
    let mut bytes = vec![0; len as usize];
    stream.read_exact(&mut bytes)?;
    // timely reads with blocking calls and no timeout from here on.
    stream.tcp().set_read_timeout(None)?;
    let hello: Hello = bincode::deserialize(&bytes).map_err(std::io::Error::other)?;
    if hello.magic != MAGIC {
        return Err(std::io::Error::other("not a paceline cluster peer"));
    }
    Ok(hello)
}

/// A peer must be the process expected at its address, with the same layout and settings.
fn check_peer(spec: &ClusterSpec, index: usize, peer: &Hello) -> Result<(), ClusterError> {
    let mismatch = |what: String| ClusterError::Mismatch {
        index,
        address: spec.addresses[index].clone(),
        what,
    };
    let p = &spec.placement;
    if peer.build != spec.build {
        return Err(mismatch(format!(
            "runs paceline {}, this process {}: every process must run the same build",
            peer.build, spec.build
        )));
    }
    if peer.process as usize != index {
        return Err(mismatch(format!(
            "answers as process {}: check cluster.process_index (PACELINE_PROCESS_INDEX) of each process",
            peer.process
        )));
    }
    if peer.processes as usize != p.processes || peer.workers as usize != p.workers {
        return Err(mismatch(format!(
            "runs {} processes of {} workers, this process {} of {}: every process needs the same cluster.processes and dataflow.workers",
            peer.processes, peer.workers, p.processes, p.workers
        )));
    }
    if peer.fingerprint != spec.fingerprint {
        return Err(mismatch(
            "has other cadences, horizons, topics or plan: every process needs the same configuration".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The workspace's picker: below the ephemeral range and claimed across test
    // processes (a `:0` port may be taken by an outgoing connection before it is bound).
    use paceline_testkit::free_port;

    fn spec(process: usize, addresses: &[String], fingerprint: u64) -> ClusterSpec {
        ClusterSpec {
            placement: Placement {
                process,
                processes: addresses.len(),
                workers: 2,
            },
            addresses: addresses.to_vec(),
            connect_timeout: Duration::from_secs(10),
            fingerprint,
            secret: b"the test cluster's secret".to_vec(),
            build: "0.1.0 (test)".into(),
            peer_timeout: Duration::from_secs(30),
            tls: None,
        }
    }

    #[test]
    fn placement_maps_workers_to_processes() {
        let p = Placement {
            process: 1,
            processes: 3,
            workers: 2,
        };
        assert_eq!(p.total(), 6);
        assert_eq!(p.first(), 2);
        assert_eq!(p.local(1), None);
        assert_eq!(p.local(3), Some(1));
        assert_eq!(p.local(4), None);
        assert_eq!(p.process_of(5), 2);
    }

    #[test]
    fn three_processes_agree_on_the_newest_common_checkpoint() {
        let addresses: Vec<String> = (0..3)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let held = [vec![10, 20, 30], vec![20, 30], vec![10, 20]];
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let s = spec(i, &addresses, 7);
                let c = held[i].clone();
                std::thread::spawn(move || connect(&s, &c))
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            let c = h.join().expect("no panic").expect("connected");
            assert_eq!(c.resume_from, Some(20), "process {i}");
            assert_eq!(c.sockets.iter().filter(|s| s.is_some()).count(), 2);
            assert!(c.sockets[i].is_none());
        }
    }

    #[test]
    fn a_missing_peer_is_named_after_the_timeout() {
        let addresses: Vec<String> = (0..2)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let mut s = spec(0, &addresses, 7);
        s.connect_timeout = Duration::from_millis(600);
        let started = Instant::now();
        let e = connect(&s, &[]).expect_err("process 1 never comes up");
        assert!(started.elapsed() < Duration::from_secs(5));
        let text = e.to_string();
        assert!(
            text.contains(&format!("process 1 ({})", addresses[1])),
            "{text}"
        );
    }

    /// Two processes' addresses on loopback.
    fn pair() -> Vec<String> {
        (0..2)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect()
    }

    /// Forms the pair `a`, `b` (process 0 and 1) side by side.
    fn form(
        a: ClusterSpec,
        b: ClusterSpec,
    ) -> (
        Result<Connected, ClusterError>,
        Result<Connected, ClusterError>,
    ) {
        let h = std::thread::spawn(move || connect(&a, &[]));
        let rb = connect(&b, &[]);
        (h.join().expect("no panic"), rb)
    }

    /// A CA and a certificate for 127.0.0.1 under it (both uses), made by `openssl` in
    /// `dir`; the files' PEM: CA, chain, key.
    fn pki(dir: &std::path::Path, name: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        std::fs::create_dir_all(dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ca = format!("{name}-ca");
        let me = format!("{name}-process");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} CA"),
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{me}.key"),
            "-out",
            &format!("{me}.csr"),
            "-subj",
            "/CN=paceline-0",
        ]);
        std::fs::write(
            dir.join(format!("{me}.ext")),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{me}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{me}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{me}.ext"),
        ]);
        let read = |f: String| std::fs::read(dir.join(f)).unwrap();
        (
            read(format!("{ca}.pem")),
            read(format!("{me}.pem")),
            read(format!("{me}.key")),
        )
    }

    /// Two processes with certificates of one CA form the cluster over TLS, and what the
    /// dataflow's sockets carry arrives whole both ways at once (8 MB each way, more than
    /// the tunnel queues: neither side may stop the other's reading); a process whose
    /// certificate is of another CA is refused, named as TLS's refusal.
    #[test]
    fn tls_carries_the_dataflow_and_refuses_another_ca() {
        let dir = std::env::temp_dir().join(format!("paceline-cluster-tls-{}", std::process::id()));
        let (ca, cert, key) = pki(&dir, "cluster");
        let tls = ClusterTls::from_pem(&ca, &cert, &key).expect("the files make a TLS setup");
        let addresses = pair();
        let mut a = spec(0, &addresses, 7);
        let mut b = spec(1, &addresses, 7);
        a.tls = Some(tls.clone());
        b.tls = Some(tls.clone());
        let (ra, rb) = form(a, b);
        let (mut ca_, mut cb) = (ra.expect("process 0 formed"), rb.expect("process 1 formed"));
        let to_b = ca_.sockets[1].take().expect("a socket to process 1");
        let mut to_a = cb.sockets[0].take().expect("a socket to process 0");
        let payload = |seed: u8| -> Vec<u8> {
            (0..8 << 20)
                .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
                .collect()
        };
        let (pa, pb) = (payload(1), payload(2));
        let send = |mut s: TcpStream, data: Vec<u8>| {
            std::thread::spawn(move || {
                s.write_all(&data).expect("written");
                s
            })
        };
        let read_all = |mut s: TcpStream, n: usize| {
            std::thread::spawn(move || {
                let mut got = vec![0u8; n];
                s.read_exact(&mut got).expect("read");
                got
            })
        };
        let wa = send(to_b.try_clone().unwrap(), pa.clone());
        let wb = send(to_a.try_clone().unwrap(), pb.clone());
        let at_b = read_all(to_a.try_clone().unwrap(), pa.len());
        let at_a = read_all(to_b.try_clone().unwrap(), pb.len());
        assert!(
            at_b.join().unwrap() == pa,
            "process 1 got process 0's bytes"
        );
        assert!(
            at_a.join().unwrap() == pb,
            "process 0 got process 1's bytes"
        );
        wa.join().unwrap();
        wb.join().unwrap();
        // One side closing is the other's end of input, as with a plain connection.
        to_b.shutdown(std::net::Shutdown::Both).unwrap();
        to_a.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        assert_eq!(
            to_a.read_to_end(&mut rest).map(|_| rest.len()).ok(),
            Some(0)
        );

        let (other_ca, other_cert, other_key) = pki(&dir, "other");
        let stranger = ClusterTls::from_pem(&other_ca, &other_cert, &other_key).unwrap();
        let addresses = pair();
        let mut a = spec(0, &addresses, 7);
        let mut b = spec(1, &addresses, 7);
        a.tls = Some(tls);
        b.tls = Some(stranger);
        a.connect_timeout = Duration::from_secs(3);
        b.connect_timeout = Duration::from_secs(3);
        let (ra, rb) = form(a, b);
        let text = rb.expect_err("another CA is refused").to_string();
        assert!(text.contains("process 0") && text.contains("TLS"), "{text}");
        assert!(ra.is_err(), "process 0 never formed with it");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn tls_files_that_are_not_pem_are_named() {
        assert!(matches!(
            ClusterTls::from_pem(b"", b"", b""),
            Err(TlsError::Ca(_))
        ));
        let dir =
            std::env::temp_dir().join(format!("paceline-cluster-tls-bad-{}", std::process::id()));
        let (ca, cert, key) = pki(&dir, "bad");
        assert!(matches!(
            ClusterTls::from_pem(&ca, b"junk", &key),
            Err(TlsError::Cert(_))
        ));
        assert!(matches!(
            ClusterTls::from_pem(&ca, &cert, &cert),
            Err(TlsError::Key(_))
        ));
        std::fs::remove_dir_all(&dir).ok();
    }

    /// An idle connection to the cluster port and a stranger that replays a captured
    /// handshake do not keep the real pair from forming; the stranger is refused.
    #[test]
    fn an_idle_connection_and_a_replayed_handshake_hold_nothing_up() {
        let addresses = pair();
        let a = spec(0, &addresses, 7);
        let b = spec(1, &addresses, 7);
        let key = hmac_key(&a);
        let started = Instant::now();
        let h = std::thread::spawn(move || connect(&a, &[]));
        // Process 0 listens: hold an idle connection, then replay a handshake.
        let mut idle = loop {
            if let Ok(s) = TcpStream::connect(&addresses[0]) {
                break s;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stranger = Link::plain(TcpStream::connect(&addresses[0]).expect("connects"));
        // What a listener could have captured of an earlier session: its opening, and the
        // proof that answered that session's challenge.
        let old_nonces = ([1u8; NONCE], [2u8; NONCE]);
        let mut open = OPEN_MAGIC.to_vec();
        open.extend_from_slice(&PROTOCOL.to_le_bytes());
        open.extend_from_slice(&old_nonces.0);
        stranger.write_all(&open).expect("open");
        let challenge =
            read_exactly::<CHALLENGE_LEN>(&mut stranger, Instant::now() + Duration::from_secs(5))
                .expect("a challenge, fresh");
        assert_ne!(
            &challenge[12..12 + NONCE],
            &old_nonces.1,
            "the nonce is new"
        );
        let replayed = proof(&key, b"connect", &old_nonces.1, &old_nonces.0);
        stranger.write_all(replayed.as_ref()).expect("proof");
        let mut rest = Vec::new();
        let _ = stranger.read_to_end(&mut rest);
        assert!(rest.is_empty(), "refused: closed without a hello");
        let rb = connect(&b, &[]);
        let ra = h.join().expect("no panic");
        ra.expect("process 0 forms the cluster");
        rb.expect("process 1 forms the cluster");
        // Sooner than the idle connection's own handshake gives up: it held nothing.
        assert!(
            started.elapsed() < HANDSHAKE_TIMEOUT - Duration::from_secs(1),
            "held up by the idle connection: {:?}",
            started.elapsed()
        );
        let _ = idle.write_all(b"");
    }

    #[test]
    fn a_process_without_the_secret_is_refused_named() {
        let addresses = pair();
        let mut a = spec(0, &addresses, 7);
        a.connect_timeout = Duration::from_secs(3);
        let mut b = spec(1, &addresses, 7);
        b.secret = b"another secret".to_vec();
        let (ra, rb) = form(a, b);
        let e = rb.expect_err("the secrets differ").to_string();
        assert!(
            e.contains("process 0") && e.contains("PACELINE_CLUSTER_SECRET"),
            "{e}"
        );
        let e = ra.expect_err("process 1 never proves itself").to_string();
        assert!(
            e.contains("process 1") && e.contains("did not connect"),
            "{e}"
        );
    }

    #[test]
    fn another_build_is_refused_named() {
        let addresses = pair();
        let a = spec(0, &addresses, 7);
        let mut b = spec(1, &addresses, 7);
        b.build = "0.2.0 (f00dfeed)".into();
        let (ra, rb) = form(a, b);
        let e = rb.expect_err("builds differ").to_string();
        assert!(
            e.contains("runs paceline 0.1.0 (test), this process 0.2.0 (f00dfeed)"),
            "{e}"
        );
        assert!(ra.is_err(), "process 0 refuses too");
    }

    #[test]
    fn a_peer_with_other_settings_is_refused() {
        let addresses: Vec<String> = (0..2)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let a = spec(0, &addresses, 1);
        let b = spec(1, &addresses, 2);
        let h = std::thread::spawn(move || connect(&a, &[]));
        let rb = connect(&b, &[]);
        let ra = h.join().expect("no panic");
        let e = rb.expect_err("fingerprints differ");
        assert!(e.to_string().contains("process 0"), "{e}");
        assert!(ra.is_err(), "process 0 refuses too");
    }
}
