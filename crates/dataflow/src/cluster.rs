//! One timely cluster across processes: where each worker is, connecting the processes
//! within a deadline, and the handshake in which they check that they run the same layout
//! and configuration and agree on the checkpoint to resume from.
//!
//! The connections are made here, not by timely (which retries for ever and reports a
//! missing peer only on standard output), and handed to timely once every process has
//! answered. Process `i` connects to every process before it and accepts every process
//! after it, as timely does; each connection opens with one [`Hello`] each way.

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
#[derive(Debug, Clone)]
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
}

/// What each process tells each peer first.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hello {
    magic: [u8; 8],
    process: u32,
    processes: u32,
    workers: u32,
    fingerprint: u64,
    /// The checkpoints this process holds, by sequence.
    checkpoints: Vec<u64>,
}

const MAGIC: [u8; 8] = *b"PCLNHELO";
/// A hello is a few numbers and at most a handful of checkpoint sequences.
const MAX_HELLO: u32 = 64 * 1024;

/// Each peer's connection and hello, by process index, as they come in.
type Found = Mutex<Vec<Option<(TcpStream, Hello)>>>;

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
            .spawn(move || accept_later(&spec, listener, &hello, &found, &until))
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
    for entry in found {
        match entry {
            Some((stream, peer)) => {
                resume.retain(|c| peer.checkpoints.contains(c));
                held.push(peer.checkpoints);
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

/// Connects to every process before this one, retrying until the deadline.
fn connect_earlier(
    spec: &ClusterSpec,
    hello: &Hello,
    found: &Found,
    deadline: Instant,
) -> Result<(), ClusterError> {
    for index in 0..spec.placement.process {
        while Instant::now() < deadline {
            let Some(mut stream) = try_connect(&spec.addresses[index], deadline) else {
                std::thread::sleep(RETRY);
                continue;
            };
            // A peer that accepts but breaks off the handshake (restarting) is tried again.
            if write_hello(&mut stream, hello).is_err() {
                std::thread::sleep(RETRY);
                continue;
            }
            let Ok(peer) = read_hello(&mut stream, deadline) else {
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

/// Accepts every process after this one until the deadline.
fn accept_later(
    spec: &ClusterSpec,
    listener: TcpListener,
    hello: &Hello,
    found: &Found,
    until: &Until,
) -> Result<(), ClusterError> {
    let me = spec.placement.process;
    let later = spec.addresses.len() - me - 1;
    let deadline = until.deadline;
    let mut accepted = 0;
    while accepted < later && !until.passed() {
        let mut stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        if stream.set_nonblocking(false).is_err() || stream.set_nodelay(true).is_err() {
            continue;
        }
        let Ok(peer) = read_hello(&mut stream, deadline) else {
            continue;
        };
        // Answered before checking, so that a peer configured differently learns it too.
        if write_hello(&mut stream, hello).is_err() {
            continue;
        }
        let index = peer.process as usize;
        if index <= me || index >= spec.addresses.len() {
            // Not a process after this one: a peer configured with another index, named
            // when its own side checks this process's hello.
            continue;
        }
        check_peer(spec, index, &peer)?;
        if let Ok(mut f) = found.lock() {
            if f[index].is_none() {
                accepted += 1;
            }
            f[index] = Some((stream, peer));
        }
    }
    Ok(())
}

fn write_hello(stream: &mut TcpStream, hello: &Hello) -> std::io::Result<()> {
    let bytes = bincode::serialize(hello).map_err(std::io::Error::other)?;
    stream.write_all(&(bytes.len() as u32).to_le_bytes())?;
    stream.write_all(&bytes)?;
    stream.flush()
}

fn read_hello(stream: &mut TcpStream, deadline: Instant) -> std::io::Result<Hello> {
    let left = deadline.saturating_duration_since(Instant::now());
    stream.set_read_timeout(Some(left.max(Duration::from_millis(100))))?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_HELLO {
        return Err(std::io::Error::other("not a paceline cluster peer"));
    }
    let mut bytes = vec![0; len as usize];
    stream.read_exact(&mut bytes)?;
    // timely reads with blocking calls and no timeout from here on.
    stream.set_read_timeout(None)?;
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

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }

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
