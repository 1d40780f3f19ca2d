//! A front for a test database. For VictoriaMetrics, which ignores the token, the
//! organisation and the bucket, the gate checks all three exactly as InfluxDB 2.x would
//! (`Authorization: Token …`, `org`, `bucket` on `/api/v2/write`), answers a wrong one as
//! InfluxDB does (401, 404) and forwards the rest. For the retry tests it answers the first
//! writes with given statuses (429, 503…) before forwarding. One request per connection
//! (`Connection: close`), plain HTTP.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::services::http;

/// What the gate has seen.
#[derive(Debug, Default)]
pub struct Seen {
    /// Writes forwarded (token, org and bucket right).
    pub forwarded: AtomicUsize,
    /// Writes refused for the token (401).
    pub wrong_token: AtomicUsize,
    /// Writes refused for the organisation or bucket (404).
    pub wrong_place: AtomicUsize,
    /// Writes answered with a scripted fault.
    pub faulted: AtomicUsize,
}

/// What the gate does with writes.
#[derive(Debug, Clone)]
enum Rule {
    /// Checks the v2 token, organisation and bucket.
    Checks(Expected),
    /// The next writes, in order: forwarded (None) or answered with a status; once the
    /// script is done every write is forwarded.
    Faults(Arc<Mutex<VecDeque<Option<u16>>>>),
}

/// The gate, listening on loopback until dropped.
pub struct Gate {
    /// Its base URL, for `PACELINE_INFLUX_URL`.
    pub url: String,
    /// Its counts.
    pub seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
}

/// What a write must carry.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The token.
    pub token: String,
    /// The organisation.
    pub org: String,
    /// The bucket.
    pub bucket: String,
}

impl Gate {
    /// Starts a gate in front of `upstream` (a base URL) that lets through writes with
    /// exactly `expected`.
    pub fn start(upstream: String, expected: Expected) -> Gate {
        Gate::with_rule(upstream, Rule::Checks(expected))
    }

    /// Starts a gate in front of `upstream` that forwards the first `after` writes (any
    /// path ending in `/write`), answers the next ones with `statuses` in order, then
    /// forwards every request.
    pub fn faulty(upstream: String, after: usize, statuses: &[u16]) -> Gate {
        let script = std::iter::repeat_n(None, after)
            .chain(statuses.iter().map(|s| Some(*s)))
            .collect();
        Gate::with_rule(upstream, Rule::Faults(Arc::new(Mutex::new(script))))
    }

    fn with_rule(upstream: String, rule: Rule) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the gate");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (counts, stopped) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (upstream, rule, counts) =
                            (upstream.clone(), rule.clone(), counts.clone());
                        std::thread::spawn(move || {
                            let _ = answer(conn, &upstream, &rule, &counts);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Gate { url, seen, stop }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One request read off a connection.
struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

fn read_request(conn: &TcpStream) -> std::io::Result<Request> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok(Request {
        method,
        path: path.to_string(),
        query,
        headers,
        body,
    })
}

/// Percent-decoding of a query value (the names here are plain; `+` is a space).
fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn answer(mut conn: TcpStream, upstream: &str, rule: &Rule, seen: &Seen) -> std::io::Result<()> {
    let req = read_request(&conn)?;
    let (status, body) = judge(&req, rule, seen).unwrap_or_else(|| forward(upstream, &req));
    let reason = match status {
        200..=299 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Error",
    };
    write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

/// The gate's own answer to `req`, or None to forward it.
fn judge(req: &Request, rule: &Rule, seen: &Seen) -> Option<(u16, String)> {
    match rule {
        Rule::Checks(expected) if req.path == "/api/v2/write" => {
            let token = req.headers.get("authorization").map(String::as_str);
            if token != Some(&format!("Token {}", expected.token)) {
                seen.wrong_token.fetch_add(1, Ordering::SeqCst);
                Some((
                    401,
                    r#"{"code":"unauthorized","message":"unauthorized access"}"#.into(),
                ))
            } else if req.query.get("org") != Some(&expected.org)
                || req.query.get("bucket") != Some(&expected.bucket)
            {
                seen.wrong_place.fetch_add(1, Ordering::SeqCst);
                Some((
                    404,
                    r#"{"code":"not found","message":"bucket not found"}"#.into(),
                ))
            } else {
                seen.forwarded.fetch_add(1, Ordering::SeqCst);
                None
            }
        }
        Rule::Faults(script) if req.path.ends_with("/write") => {
            let next = script.lock().ok().and_then(|mut s| s.pop_front()).flatten();
            match next {
                Some(status) => {
                    seen.faulted.fetch_add(1, Ordering::SeqCst);
                    Some((
                        status,
                        format!(r#"{{"error":"the gate answers {status}"}}"#),
                    ))
                }
                None => {
                    seen.forwarded.fetch_add(1, Ordering::SeqCst);
                    None
                }
            }
        }
        _ => None,
    }
}

/// The request sent on to `upstream`, with its query and body: status and body.
fn forward(upstream: &str, req: &Request) -> (u16, String) {
    let url = format!("{upstream}{}", req.path);
    let client = http();
    let mut r = match req.method.as_str() {
        "POST" => client.post(&url).body(req.body.clone()),
        "HEAD" => client.head(&url),
        _ => client.get(&url),
    };
    r = r.query(&req.query.iter().collect::<Vec<_>>());
    if let Some(ct) = req.headers.get("content-encoding") {
        r = r.header("Content-Encoding", ct);
    }
    match r.send() {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.text().unwrap_or_default())
        }
        Err(e) => (502, format!("{{\"message\":\"gate: {e}\"}}")),
    }
}
