//! The admin endpoints' HTTP/1.1 server, on hyper.
//!
//! One thread (`sipdisp-admin`) runs a current-thread tokio runtime: it accepts connections
//! (at most [`MAX_CONNECTIONS`] at once; beyond, a `503` is written and the connection closed)
//! and serves each as a task with hyper's HTTP/1.1 connection: one request per connection
//! (`Connection: close`), the request head within [`REQUEST_DEADLINE`] (hyper's
//! `header_read_timeout`, however slowly it drips) and at most 16 KiB (431 beyond), the body
//! within the same deadline and at most [`MAX_BODY`] bytes (413), given by one valid
//! `Content-Length` (hyper refuses conflicting or malformed lengths with 400; chunked bodies
//! get 400 here). The bearer token, when configured, is checked before the body is read (401,
//! with a case-insensitive `Bearer` scheme and a comparison in constant time). The matching
//! [`Route`]'s handler then runs on tokio's blocking pool (at most [`HANDLER_THREADS`] at
//! once), never on the accepting thread, so a slow reload or RPC stalls neither `/metrics`
//! nor new connections. Idle and dripping clients cost one small task each until their
//! deadline; unknown paths get 404, wrong methods 405 — never a panic.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, oneshot};

/// Largest request body accepted (413 above).
pub const MAX_BODY: usize = 1 << 20;
/// hyper's read buffer: bounds the request head (431 above; hyper's minimum is 8 KiB).
const MAX_HEAD: usize = 16 * 1024;

/// Connections served at once; beyond, a new one gets `503` and is closed.
pub const MAX_CONNECTIONS: usize = 1024;

/// The time a client has to send its request head, and then its body.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// The longest a connection lives: the request, the handler (a reload from a slow database,
/// say) and writing the response. A client that does not read its response is dropped then.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(120);

/// Handlers running at once (tokio's blocking pool); more requests wait for a thread.
pub const HANDLER_THREADS: usize = 16;

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
    /// The handler; runs on a thread of the blocking pool (several may run at once).
    pub handler: Box<dyn Fn(&Request) -> Response + Send + Sync>,
}

/// The running admin listener.
pub struct AdminServer {
    /// The bound address.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

/// What every connection task shares.
struct Shared {
    token: Option<String>,
    routes: Vec<Route>,
}

impl AdminServer {
    /// Binds `addr` and serves `routes` on a new thread. With `token`, every request must carry
    /// `Authorization: Bearer <token>` (401 otherwise).
    pub fn start(
        addr: SocketAddr,
        token: Option<String>,
        routes: Vec<Route>,
    ) -> io::Result<AdminServer> {
        // Bound here, so that a taken port is the caller's error, not the thread's.
        let listener = std::net::TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .max_blocking_threads(HANDLER_THREADS)
            .thread_name("sipdisp-admin-h")
            .build()?;
        let (stop, stopped) = oneshot::channel();
        let shared = Arc::new(Shared { token, routes });
        let thread = thread::Builder::new()
            .name("sipdisp-admin".into())
            .spawn(move || {
                rt.block_on(accept(listener, shared, stopped));
                // Handlers still running (a slow RPC) are not waited for beyond this.
                rt.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(AdminServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts until `stopped`; each connection becomes a task holding one of the
/// [`MAX_CONNECTIONS`] permits.
async fn accept(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sipdisp: admin listener: {e}");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => match Arc::clone(&permits).try_acquire_owned() {
                Ok(permit) => {
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        connection(stream, peer, shared).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    tokio::spawn(too_many(stream));
                }
            },
            // Out of file descriptors or the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// `503` to a connection beyond [`MAX_CONNECTIONS`], without reading its request.
async fn too_many(mut stream: tokio::net::TcpStream) {
    let body = "too many connections\n";
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(head.as_bytes())).await;
}

/// Serves one connection: one request, bounded in time (see the module documentation).
async fn connection(stream: tokio::net::TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let service = service_fn(move |req| handle(req, peer, Arc::clone(&shared)));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_DEADLINE)
        .keep_alive(false)
        .title_case_headers(true)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(CONNECTION_DEADLINE, conn).await;
}

/// One request: token, route, body, then the handler on the blocking pool.
async fn handle(
    req: hyper::Request<Incoming>,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    // Refused on its declared length alone: nothing of such a body is read.
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if declared > MAX_BODY as u64 {
        return Ok(reply(Response::text(413, "request too large\n")));
    }
    if let Some(t) = &shared.token {
        // RFC 7235: the scheme name is case-insensitive.
        let ok = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .is_some_and(|(_, v)| constant_time_eq(v.trim().as_bytes(), t.as_bytes()));
        if !ok {
            return Ok(reply(Response::text(
                401,
                "missing or wrong bearer token\n",
            )));
        }
    }
    let path = parts.uri.path();
    let Some(i) = shared.routes.iter().position(|r| r.path == path) else {
        return Ok(reply(Response::text(404, "not found\n")));
    };
    let route = &shared.routes[i];
    if parts.method.as_str() != route.method {
        return Ok(reply(Response::text(
            405,
            format!("use {}\n", route.method),
        )));
    }
    if parts.headers.contains_key(header::TRANSFER_ENCODING) {
        return Ok(reply(Response::text(
            400,
            "chunked bodies are not supported: send Content-Length\n",
        )));
    }
    let body = match tokio::time::timeout(REQUEST_DEADLINE, Limited::new(body, MAX_BODY).collect())
        .await
    {
        Ok(Ok(b)) => b.to_bytes().to_vec(),
        Ok(Err(_)) => {
            return Ok(reply(Response::text(
                400,
                "body shorter than Content-Length\n",
            )));
        }
        Err(_) => {
            return Ok(reply(Response::text(
                408,
                "request body not received in time\n",
            )));
        }
    };
    let request = Request {
        method: parts.method.as_str().to_owned(),
        path: path.to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).trim().to_owned(),
                )
            })
            .collect(),
        body,
        peer,
    };
    let run = Arc::clone(&shared);
    let resp = tokio::task::spawn_blocking(move || (run.routes[i].handler)(&request))
        .await
        .unwrap_or_else(|_| Response::text(500, "handler failed\n"));
    Ok(reply(resp))
}

/// The hyper response for `r` (`WWW-Authenticate: Bearer` on a 401).
fn reply(r: Response) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from(r.body)));
    *out.status_mut() =
        hyper::StatusCode::from_u16(r.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    if r.status == 401 {
        out.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    out
}

/// Compares without an early exit, so the token cannot be guessed byte by byte from timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

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
        let r = get(s.addr, &big_head);
        assert!(r.starts_with("HTTP/1.1 431"), "{r}");
        assert!(
            get(
                s.addr,
                "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .starts_with("HTTP/1.1 400")
        );
        // Still serving after all that.
        assert!(get(s.addr, "GET /health?x=1 HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 200"));
    }

    #[test]
    fn bearer_token() {
        let s = server(Some("s3cret"));
        let r = get(s.addr, "GET /health HTTP/1.1\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 401")
                && r.to_ascii_lowercase().contains("www-authenticate: bearer"),
            "{r}"
        );
        assert!(
            get(
                s.addr,
                "GET /health HTTP/1.1\r\nAuthorization: bEaReR s3cret\r\n\r\n"
            )
            .starts_with("HTTP/1.1 200"),
            "the scheme is case-insensitive"
        );
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
