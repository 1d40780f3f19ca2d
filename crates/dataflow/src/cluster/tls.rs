//! Optional TLS between a cluster's processes (rustls): mutual, every process presenting a
//! certificate of the cluster's CA and checking its peer's, the connecting side checking
//! that the certificate names the host it dialled. The secret's proof and the hellos then
//! run inside TLS.
//!
//! timely takes plain `TcpStream`s and reads and writes them from two threads of its own,
//! so a TLS connection is handed to it as the far end of a loopback pair that three threads
//! pump: network → TLS → loopback, loopback → TLS → a queue, the queue → network. Records
//! are queued under the connection's lock, so they leave in the order they were sealed;
//! the network is written outside it, so a peer that is slow to read cannot stop this
//! side from reading (two processes writing to each other at once would otherwise
//! deadlock). The queue is bounded by waiting, not by blocking under the lock.

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};

/// The PEM files of a cluster's TLS, read.
#[derive(Clone)]
pub struct ClusterTls {
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ClusterTls {
    // Keys are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTls { .. }")
    }
}

/// A TLS file that cannot be used; the caller names the key that gave it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA bundle.
    #[error("not PEM CA certificates: {0}")]
    Ca(String),
    /// The process's certificate chain.
    #[error("not a PEM certificate chain: {0}")]
    Cert(String),
    /// The process's private key.
    #[error("not a PEM private key (PKCS#8, RSA or EC): {0}")]
    Key(String),
    /// The certificate and key do not make a configuration.
    #[error("the certificate and key are refused: {0}")]
    Config(#[source] rustls::Error),
}

impl ClusterTls {
    /// From PEM: the CA bundle every process trusts, this process's chain and key.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<ClusterTls, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        let cas = rustls_pemfile::certs(&mut BufReader::new(ca))
            .map_err(|e| TlsError::Ca(e.to_string()))?;
        if cas.is_empty() {
            return Err(TlsError::Ca("no certificate in it".into()));
        }
        for der in cas {
            roots
                .add(&rustls::Certificate(der))
                .map_err(|e| TlsError::Ca(e.to_string()))?;
        }
        let chain: Vec<rustls::Certificate> = rustls_pemfile::certs(&mut BufReader::new(cert))
            .map_err(|e| TlsError::Cert(e.to_string()))?
            .into_iter()
            .map(rustls::Certificate)
            .collect();
        if chain.is_empty() {
            return Err(TlsError::Cert("no certificate in it".into()));
        }
        let key = private_key(key)?;
        let client = rustls::ClientConfig::builder()
            .with_safe_defaults()
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain.clone(), key.clone())
            .map_err(TlsError::Config)?;
        let server = rustls::ServerConfig::builder()
            .with_safe_defaults()
            .with_client_cert_verifier(
                rustls::server::AllowAnyAuthenticatedClient::new(roots).boxed(),
            )
            .with_single_cert(chain, key)
            .map_err(TlsError::Config)?;
        Ok(ClusterTls {
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }

    /// The connecting side of `tcp`, to the peer at `address` (`host:port`): its
    /// certificate must name `host`.
    pub(crate) fn client(&self, address: &str) -> std::io::Result<rustls::Connection> {
        let host = address
            .rsplit_once(':')
            .map_or(address, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = rustls::ServerName::try_from(host).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{host}: {e}"))
        })?;
        rustls::ClientConnection::new(self.client.clone(), name)
            .map(rustls::Connection::Client)
            .map_err(std::io::Error::other)
    }

    /// The accepting side.
    pub(crate) fn server(&self) -> std::io::Result<rustls::Connection> {
        rustls::ServerConnection::new(self.server.clone())
            .map(rustls::Connection::Server)
            .map_err(std::io::Error::other)
    }
}

/// The first private key of `pem`, of any of the three PEM kinds.
fn private_key(pem: &[u8]) -> Result<rustls::PrivateKey, TlsError> {
    let items = rustls_pemfile::read_all(&mut BufReader::new(pem))
        .map_err(|e| TlsError::Key(e.to_string()))?;
    items
        .into_iter()
        .find_map(|item| match item {
            rustls_pemfile::Item::PKCS8Key(k)
            | rustls_pemfile::Item::RSAKey(k)
            | rustls_pemfile::Item::ECKey(k) => Some(rustls::PrivateKey(k)),
            _ => None,
        })
        .ok_or_else(|| TlsError::Key("no private key in it".into()))
}

/// A connection between two processes during the handshake: plain, or TLS over TCP.
pub(crate) struct Link {
    tcp: TcpStream,
    tls: Option<rustls::Connection>,
}

impl Link {
    pub(crate) fn plain(tcp: TcpStream) -> Link {
        Link { tcp, tls: None }
    }

    /// `tcp` under `tls`, its handshake completed before the read timeout `tcp` carries;
    /// an `InvalidData` error is TLS refusing the peer (a certificate of another CA, for
    /// another host).
    pub(crate) fn tls(mut tcp: TcpStream, mut tls: rustls::Connection) -> std::io::Result<Link> {
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp)?;
        }
        Ok(Link {
            tcp,
            tls: Some(tls),
        })
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// What timely gets: the socket itself, or the far end of a pumped loopback pair.
    pub(crate) fn into_timely(self) -> std::io::Result<TcpStream> {
        match self.tls {
            None => Ok(self.tcp),
            Some(tls) => tunnel(tls, self.tcp),
        }
    }
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.tls {
            None => self.tcp.read(buf),
            Some(rustls::Connection::Client(c)) => rustls::Stream::new(c, &mut self.tcp).read(buf),
            Some(rustls::Connection::Server(c)) => rustls::Stream::new(c, &mut self.tcp).read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.tls {
            None => self.tcp.write(buf),
            Some(rustls::Connection::Client(c)) => rustls::Stream::new(c, &mut self.tcp).write(buf),
            Some(rustls::Connection::Server(c)) => rustls::Stream::new(c, &mut self.tcp).write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.tls {
            None => self.tcp.flush(),
            Some(rustls::Connection::Client(c)) => rustls::Stream::new(c, &mut self.tcp).flush(),
            Some(rustls::Connection::Server(c)) => rustls::Stream::new(c, &mut self.tcp).flush(),
        }
    }
}

/// Sealed bytes waiting for the network, at most about this many: the loopback reader
/// waits (outside the lock) while more are queued.
const QUEUED_MAX: usize = 4 << 20;
const CHUNK: usize = 64 * 1024;

/// What the pump threads share.
struct Pump {
    tls: Mutex<rustls::Connection>,
    queued: AtomicUsize,
    closed: AtomicBool,
}

impl Pump {
    /// Seals what `tls` has to send into the queue, under the lock the caller holds.
    fn seal(&self, tls: &mut rustls::Connection, out: &Sender<Vec<u8>>) -> std::io::Result<()> {
        let mut sealed = Vec::new();
        while tls.wants_write() {
            tls.write_tls(&mut sealed)?;
        }
        if !sealed.is_empty() {
            self.queued.fetch_add(sealed.len(), Ordering::SeqCst);
            out.send(sealed).map_err(|_| closed())?;
        }
        Ok(())
    }
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "cluster TLS tunnel closed")
}

/// A loopback pair whose far end stands for `tcp` under `tls`; three threads pump. When
/// either side ends (the peer gone, the keepalive giving up, timely closing), both ends are
/// shut, so that timely sees the connection lost as it would a plain one.
fn tunnel(tls: rustls::Connection, tcp: TcpStream) -> std::io::Result<TcpStream> {
    let (near, far) = loopback_pair()?;
    let pump = Arc::new(Pump {
        tls: Mutex::new(tls),
        queued: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
    });
    let (tx, rx) = unbounded::<Vec<u8>>();
    let shut = {
        let (near, tcp, pump) = (near.try_clone()?, tcp.try_clone()?, pump.clone());
        Arc::new(move || {
            pump.closed.store(true, Ordering::SeqCst);
            let _ = near.shutdown(Shutdown::Both);
            let _ = tcp.shutdown(Shutdown::Both);
        })
    };
    // A failure anywhere shuts everything. Timely closing its end is not one: the close
    // is sealed behind what it wrote, and the ends shut once the network side is done.
    type Step = Box<dyn FnOnce() -> std::io::Result<()> + Send>;
    let spawn = |name: &str, shut_when_done: bool, f: Step| {
        let shut = shut.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let result = f();
                if let Err(e) = &result {
                    tracing::debug!(error = %e, "cluster TLS tunnel ends");
                }
                if shut_when_done || result.is_err() {
                    shut();
                }
            })
            .map(|_| ())
    };
    {
        let (tcp, near, pump, tx) = (
            tcp.try_clone()?,
            near.try_clone()?,
            pump.clone(),
            tx.clone(),
        );
        spawn(
            "cluster-tls-in",
            true,
            Box::new(move || from_network(&pump, tcp, near, &tx)),
        )?;
    }
    {
        let (near, pump) = (near.try_clone()?, pump.clone());
        spawn(
            "cluster-tls-out",
            false,
            Box::new(move || to_tls(&pump, near, &tx)),
        )?;
    }
    {
        let pump = pump.clone();
        spawn(
            "cluster-tls-send",
            true,
            Box::new(move || to_network(&pump, tcp, &rx)),
        )?;
    }
    drop(near);
    Ok(far)
}

/// A connected pair of loopback sockets (the accepted one checked to be the one dialled).
fn loopback_pair() -> std::io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let far = TcpStream::connect(listener.local_addr()?)?;
    loop {
        let (near, from) = listener.accept()?;
        if from == far.local_addr()? {
            near.set_nodelay(true)?;
            far.set_nodelay(true)?;
            return Ok((near, far));
        }
    }
}

/// Network → TLS → loopback.
fn from_network(
    pump: &Pump,
    mut tcp: TcpStream,
    mut near: TcpStream,
    out: &Sender<Vec<u8>>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut plain = Vec::with_capacity(CHUNK);
    loop {
        let n = tcp.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let mut input = &buf[..n];
        plain.clear();
        {
            let mut tls = pump.tls.lock().map_err(|_| closed())?;
            while !input.is_empty() {
                tls.read_tls(&mut input)?;
                let state = tls
                    .process_new_packets()
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                if state.plaintext_bytes_to_read() > 0 {
                    let start = plain.len();
                    plain.resize(start + state.plaintext_bytes_to_read(), 0);
                    tls.reader().read_exact(&mut plain[start..])?;
                }
                if state.peer_has_closed() {
                    near.write_all(&plain)?;
                    return Ok(());
                }
            }
            // Answers TLS itself owes (a key update): in order with the rest.
            pump.seal(&mut tls, out)?;
        }
        near.write_all(&plain)?;
    }
}

/// Loopback → TLS → the queue.
fn to_tls(pump: &Pump, mut near: TcpStream, out: &Sender<Vec<u8>>) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = near.read(&mut buf)?;
        let mut tls = loop {
            if pump.closed.load(Ordering::SeqCst) {
                return Err(closed());
            }
            if pump.queued.load(Ordering::SeqCst) < QUEUED_MAX {
                break pump.tls.lock().map_err(|_| closed())?;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if n == 0 {
            tls.send_close_notify();
            pump.seal(&mut tls, out)?;
            return Ok(());
        }
        tls.writer().write_all(&buf[..n])?;
        pump.seal(&mut tls, out)?;
    }
}

/// The queue → network.
fn to_network(pump: &Pump, mut tcp: TcpStream, sealed: &Receiver<Vec<u8>>) -> std::io::Result<()> {
    for bytes in sealed {
        tcp.write_all(&bytes)?;
        pump.queued.fetch_sub(bytes.len(), Ordering::SeqCst);
    }
    Ok(())
}
