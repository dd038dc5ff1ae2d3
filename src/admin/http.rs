//! A minimal HTTP/1.1 server for the admin endpoints.
//!
//! Why by hand: the control plane serves a handful of small requests per second to local
//! tooling (Prometheus, `sipdisp ctl`, scripts); a general HTTP stack (and its async runtime)
//! would dwarf the rest of the daemon's dependencies. What it does: one thread accepts
//! connections and hands each to a short-lived thread of its own (at most
//! [`MAX_CONNECTIONS`] at once; beyond, `503` at once), which reads one request (request line
//! and headers ≤ 16 KiB, body ≤ [`MAX_BODY`] bytes given by exactly one `Content-Length`, the
//! whole request within [`REQUEST_DEADLINE`] however slowly it drips), checks the bearer token
//! when one is configured, calls the matching [`Route`], writes the response and closes. Idle
//! or dripping clients therefore hold one small thread each for a few seconds and never stall
//! `/metrics` or `/RPC` for others. Malformed requests get 400, oversized ones 413, unknown
//! paths 404, wrong methods 405, a missing or wrong token 401 — never a panic.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Largest request body accepted (413 above).
pub const MAX_BODY: usize = 1 << 20;
const MAX_HEAD: usize = 16 * 1024;

/// Connections served at once; beyond, a new one gets `503` and is closed.
pub const MAX_CONNECTIONS: usize = 1024;

/// The time a client has to send its whole request (head and body).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// Stack of a connection thread (it parses one small request and formats one response).
const CONNECTION_STACK: usize = 256 * 1024;

/// A reader that fails once `until` has passed, however the bytes trickle in: each read waits
/// at most the time left.
struct Deadline<'a> {
    stream: &'a TcpStream,
    until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request deadline"));
        }
        self.stream.set_read_timeout(Some(left))?;
        (&*self.stream).read(buf)
    }
}

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The query string (after `?`), if any.
    pub query: Option<String>,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The peer.
    pub peer: SocketAddr,
}

impl Request {
    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(
            status,
            "text/plain; charset=utf-8",
            body.into().into_bytes(),
        )
    }
}

/// An endpoint: method, exact path, and the handler.
pub struct Route {
    /// Method (`GET`, `POST`).
    pub method: &'static str,
    /// Exact path (`/metrics`).
    pub path: &'static str,
    /// The handler; runs on the connection's thread (several may run at once).
    pub handler: Box<dyn Fn(&Request) -> Response + Send + Sync>,
}

/// The running admin listener.
pub struct AdminServer {
    /// The bound address.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `addr` and serves `routes` on a new thread. With `token`, every request must carry
    /// `Authorization: Bearer <token>` (401 otherwise).
    pub fn start(
        addr: SocketAddr,
        token: Option<String>,
        routes: Vec<Route>,
    ) -> io::Result<AdminServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let shared = Arc::new((token, routes));
        let open = Arc::new(AtomicUsize::new(0));
        let thread = thread::Builder::new()
            .name("sipdisp-admin".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, peer)) => dispatch(stream, peer, &shared, &open),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(5))
                        }
                        Err(_) => thread::sleep(Duration::from_millis(20)),
                    }
                }
            })?;
        Ok(AdminServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn write_response(stream: &mut TcpStream, r: &Response) {
    let extra = if r.status == 401 {
        "WWW-Authenticate: Bearer\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&r.body);
    let _ = stream.flush();
}

/// Serves one connection on a thread of its own, unless [`MAX_CONNECTIONS`] are open.
fn dispatch(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<(Option<String>, Vec<Route>)>,
    open: &Arc<AtomicUsize>,
) {
    let _ = stream.set_nonblocking(false);
    if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
        open.fetch_sub(1, Ordering::AcqRel);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        return write_response(&mut stream, &Response::text(503, "too many connections\n"));
    }
    let (shared, open2) = (Arc::clone(shared), Arc::clone(open));
    let spawned = thread::Builder::new()
        .name("sipdisp-admin-c".into())
        .stack_size(CONNECTION_STACK)
        .spawn(move || {
            serve(stream, peer, shared.0.as_deref(), &shared.1);
            open2.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a request could not be read.
enum ReadError {
    Bad(&'static str),
    TooLarge,
    Io,
}

fn read_request(stream: &TcpStream, peer: SocketAddr) -> Result<Request, ReadError> {
    let deadline = Deadline {
        stream,
        until: Instant::now() + REQUEST_DEADLINE,
    };
    let mut reader = BufReader::new(deadline.take((MAX_HEAD + MAX_BODY + 1) as u64));
    let mut head_len = 0usize;
    let mut line = String::new();
    let mut read_line = |line: &mut String| -> Result<(), ReadError> {
        line.clear();
        let n = reader.read_line(line).map_err(|_| ReadError::Io)?;
        head_len += n;
        if head_len > MAX_HEAD {
            return Err(ReadError::TooLarge);
        }
        if n == 0 {
            return Err(ReadError::Bad(
                "connection closed before the end of the request head",
            ));
        }
        Ok(())
    };
    read_line(&mut line)?;
    let mut parts = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Err(ReadError::Bad("malformed request line"));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let method = method.to_owned();
    let mut headers = Vec::new();
    loop {
        read_line(&mut line)?;
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (n, v) = l
            .split_once(':')
            .ok_or(ReadError::Bad("malformed header line"))?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let mut lengths = headers.iter().filter(|(n, _)| n == "content-length");
    let len = match (lengths.next(), lengths.next()) {
        (Some((_, v)), None) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v
            .parse::<usize>()
            .map_err(|_| ReadError::Bad("bad Content-Length"))?,
        (None, _) => 0,
        (Some(_), Some(_)) => return Err(ReadError::Bad("more than one Content-Length")),
        _ => return Err(ReadError::Bad("bad Content-Length")),
    };
    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Err(ReadError::Bad(
            "chunked bodies are not supported: send Content-Length",
        ));
    }
    if len > MAX_BODY {
        return Err(ReadError::TooLarge);
    }
    let mut body = vec![0u8; len];
    reader
        .read_exact(&mut body)
        .map_err(|_| ReadError::Bad("body shorter than Content-Length"))?;
    Ok(Request {
        method,
        path,
        query,
        headers,
        body,
        peer,
    })
}

fn serve(mut stream: TcpStream, peer: SocketAddr, token: Option<&str>, routes: &[Route]) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let req = match read_request(&stream, peer) {
        Ok(r) => r,
        Err(ReadError::Bad(why)) => {
            return write_response(&mut stream, &Response::text(400, format!("{why}\n")));
        }
        Err(ReadError::TooLarge) => {
            return write_response(&mut stream, &Response::text(413, "request too large\n"));
        }
        Err(ReadError::Io) => return,
    };
    if let Some(t) = token {
        // RFC 7235: the scheme name is case-insensitive.
        let ok = req
            .header("authorization")
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .is_some_and(|(_, v)| constant_time_eq(v.trim().as_bytes(), t.as_bytes()));
        if !ok {
            return write_response(
                &mut stream,
                &Response::text(401, "missing or wrong bearer token\n"),
            );
        }
    }
    let resp = match routes.iter().find(|r| r.path == req.path) {
        None => Response::text(404, "not found\n"),
        Some(r) if r.method != req.method => Response::text(405, format!("use {}\n", r.method)),
        Some(r) => (r.handler)(&req),
    };
    write_response(&mut stream, &resp);
}

/// Compares without an early exit, so the token cannot be guessed byte by byte from timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, raw: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    fn server(token: Option<&str>) -> AdminServer {
        let routes = vec![
            Route {
                method: "GET",
                path: "/health",
                handler: Box::new(|_| Response::text(200, "ok\n")),
            },
            Route {
                method: "POST",
                path: "/echo",
                handler: Box::new(|r| {
                    Response::new(200, "application/octet-stream", r.body.clone())
                }),
            },
        ];
        AdminServer::start(
            "127.0.0.1:0".parse().unwrap(),
            token.map(str::to_owned),
            routes,
        )
        .unwrap()
    }

    #[test]
    fn routes_methods_and_errors() {
        let s = server(None);
        assert!(
            get(s.addr, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 200 OK")
        );
        let echo = get(
            s.addr,
            "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert!(
            echo.starts_with("HTTP/1.1 200") && echo.ends_with("hello"),
            "{echo}"
        );
        assert!(get(s.addr, "GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(s.addr, "GET /echo HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(get(s.addr, "garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(
            get(s.addr, "POST /echo HTTP/1.1\r\nContent-Length: x\r\n\r\n")
                .starts_with("HTTP/1.1 400")
        );
        assert!(
            get(
                s.addr,
                "POST /echo HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"
            )
            .starts_with("HTTP/1.1 413")
        );
        let big_head = format!(
            "GET /health HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD)
        );
        assert!(get(s.addr, &big_head).starts_with("HTTP/1.1 413"));
        assert!(
            get(
                s.addr,
                "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .starts_with("HTTP/1.1 400")
        );
        // Still serving after all that.
        assert!(get(s.addr, "GET /health?x=1 HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn bearer_token() {
        let s = server(Some("s3cret"));
        let r = get(s.addr, "GET /health HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 401") && r.contains("WWW-Authenticate: Bearer"));
        assert!(
            get(
                s.addr,
                "GET /health HTTP/1.1\r\nAuthorization: Bearer wrong\r\n\r\n"
            )
            .starts_with("HTTP/1.1 401")
        );
        assert!(
            get(
                s.addr,
                "GET /health HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n"
            )
            .starts_with("HTTP/1.1 200")
        );
    }
}
