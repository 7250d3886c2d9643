//! HTTP/1.1 for the tests' local servers and clients, on hyper (already
//! built for the AWS SDK): a [`Server`] that hands each request, body read,
//! to an async handler, and a pooled [`Client`].

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// A response body: whole, or streamed by a task ([`channel_body`]).
pub type Body = BoxBody<Bytes, std::io::Error>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A body fed by the returned sender; an `Err` ends the response by
/// aborting the connection (hyper cannot finish the message).
pub fn channel_body(buffer: usize) -> (mpsc::Sender<std::io::Result<Bytes>>, Body) {
    struct Channel(mpsc::Receiver<std::io::Result<Bytes>>);
    impl hyper::body::Body for Channel {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
        }
    }
    let (tx, rx) = mpsc::channel(buffer);
    (tx, Channel(rx).boxed())
}

/// A response with `headers` (name, value) and a whole body.
pub fn response(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).expect("valid status");
    *r.headers_mut() = header_map(headers);
    r
}

/// Connection-level headers a proxy must not pass on (hyper frames each
/// message itself).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "expect",
    "te",
    "trailer",
    "upgrade",
];

/// `headers` without [`HOP_BY_HOP`] and without `extra` names.
pub fn end_to_end_headers(headers: &HeaderMap, extra: &[&str]) -> HeaderMap {
    let mut out = headers.clone();
    for h in HOP_BY_HOP.iter().chain(extra) {
        out.remove(*h);
    }
    out
}

/// A request as a [`Server`] handler sees it: the body read to its end.
#[derive(Debug)]
pub struct Req {
    pub method: Method,
    /// Path and query.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The path without the query.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }
}

/// The connection a request came on.
#[derive(Clone)]
pub struct Conn {
    /// A second handle on the socket (a dup of hyper's), to change its
    /// options while hyper owns the connection.
    sock: Arc<TcpStream>,
}

impl Conn {
    /// Makes the close of this connection a reset (RST, `SO_LINGER` 0)
    /// instead of an orderly FIN: what a peer sees when S3's side of the
    /// connection breaks mid-response. The socket closes once hyper has
    /// dropped it (a response body ending in an error does that) and the
    /// last clone of this handle is gone.
    pub fn reset_on_close(&self) {
        self.sock.set_zero_linger().expect("SO_LINGER");
    }
}

/// A local HTTP/1.1 server on 127.0.0.1 (a free port); dropping it stops
/// accepting (connections already open finish what they are doing).
pub struct Server {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Server {
    pub fn start<H, F>(rt: &tokio::runtime::Handle, handler: H) -> Server
    where
        H: Fn(Req, Conn) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let listener = {
            let _in_rt = rt.enter();
            TcpListener::from_std(std_listener).unwrap()
        };
        let (stop, mut stopped) = oneshot::channel::<()>();
        let handler = Arc::new(handler);
        rt.spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => match accepted {
                        Ok((s, _)) => s,
                        Err(_) => {
                            // Out of file descriptors and the like: back off, do not spin.
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                let Ok((stream, conn)) = split(stream) else {
                    continue;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (handler, conn) = (handler.clone(), conn.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let Ok(body) = body.collect().await else {
                                return Ok::<_, std::convert::Infallible>(response(
                                    400,
                                    &[],
                                    "request body not readable",
                                ));
                            };
                            let req = Req {
                                method: parts.method,
                                path: parts
                                    .uri
                                    .path_and_query()
                                    .map_or("/", |p| p.as_str())
                                    .to_owned(),
                                headers: parts.headers,
                                body: body.to_bytes(),
                            };
                            Ok(handler(req, conn).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Server { addr, _stop: stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The stream for hyper and a [`Conn`] on a dup of its socket.
fn split(stream: TcpStream) -> std::io::Result<(TcpStream, Conn)> {
    let std_stream = stream.into_std()?;
    let dup = TcpStream::from_std(std_stream.try_clone()?)?;
    Ok((
        TcpStream::from_std(std_stream)?,
        Conn {
            sock: Arc::new(dup),
        },
    ))
}

/// A response read to its end.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// This reply passed on to a client with `body`: its status, its
    /// end-to-end headers, and its own `Content-Length` (HEAD answers have
    /// no body), else the body's, the whole one's also when `body` is cut.
    pub fn passed_on(&self, body: Body) -> Response<Body> {
        let mut res = Response::new(body);
        *res.status_mut() = hyper::StatusCode::from_u16(self.status).unwrap();
        *res.headers_mut() = end_to_end_headers(&self.headers, &[]);
        let length = self
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.body.len());
        res.headers_mut()
            .insert(hyper::header::CONTENT_LENGTH, length.into());
        res
    }
}

/// A pooled HTTP/1.1 client (keep-alive, as the SDK's clients do).
#[derive(Clone)]
pub struct Client(hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>);

impl Default for Client {
    fn default() -> Self {
        Client(
            hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .build(HttpConnector::new()),
        )
    }
}

impl Client {
    /// `method` `path` (path and query) on `addr`; errors are one line
    /// naming the request.
    pub async fn send(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Reply, String> {
        let what = || format!("{method} {path} on {addr}");
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method.clone();
        *req.uri_mut() = format!("http://{addr}{path}")
            .parse()
            .map_err(|e| format!("{}: {e}", what()))?;
        *req.headers_mut() = headers;
        let res = self
            .0
            .request(req)
            .await
            .map_err(|e| format!("{}: {}", what(), error_chain(&e)))?;
        let (parts, body) = res.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("{}: reading the answer: {e}", what()))?
            .to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// `req` as it came, to `upstream` (end-to-end headers only; `Host` is
    /// kept, so the upstream sees the name the client used).
    pub async fn forward(&self, upstream: SocketAddr, req: &Req) -> Result<Reply, String> {
        self.send(
            upstream,
            req.method.clone(),
            &req.path,
            end_to_end_headers(&req.headers, &[]),
            req.body.clone(),
        )
        .await
    }
}

/// Headers from (name, value) pairs.
pub fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    h
}

/// `e: its source: …` (hyper's errors say little without their sources).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(&format!(": {x}"));
        src = x.source();
    }
    s
}
