//! A fault-injecting HTTP proxy in front of an S3 endpoint (moto): it
//! forwards every request, and for requests matching a rule (method and
//! path prefix) breaks the answer the way S3 or the network can: a reset in
//! the middle of the body, a body trickled out slowly, an S3 error answer
//! instead of forwarding.
//!
//! Responses are read whole from the upstream before they are passed on
//! (test objects are a few MB at most), so a fault can cut them at an exact
//! byte.

use super::http::{channel_body, full, response, Body, Client, Req, Server};
use hyper::body::Bytes;
use hyper::{Method, Response};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward; send the status, the headers (with the full
    /// `Content-Length`) and the first `after` bytes of the body, then
    /// reset the connection.
    ResetBody { after: usize },
    /// Forward; send the body in `chunk`-byte pieces, each after `delay`.
    SlowBody { chunk: usize, delay: Duration },
    /// Do not forward; answer `status` with an S3 XML error of `code`.
    S3Error { status: u16, code: &'static str },
}

/// Which requests a fault applies to, and how often.
#[derive(Debug, Clone)]
struct Rule {
    method: Method,
    path_prefix: String,
    fault: Fault,
    /// How many more matching requests get the fault (`None`: all).
    left: Option<u32>,
}

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: Method,
    /// The path without the query.
    pub path: String,
    /// The fault it got, if any.
    pub fault: Option<Fault>,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
}

pub struct FaultProxy {
    server: Server,
    state: Arc<Mutex<State>>,
}

impl FaultProxy {
    pub fn start(rt: &tokio::runtime::Handle, upstream: SocketAddr) -> FaultProxy {
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let client = Client::default();
        let server = Server::start(rt, move |req, conn| {
            let (st, client) = (st.clone(), client.clone());
            async move {
                let fault = take_fault(&st, &req);
                st.lock().unwrap().seen.push(Seen {
                    method: req.method.clone(),
                    path: req.path_only().to_owned(),
                    fault,
                });
                if let Some(Fault::S3Error { status, code }) = fault {
                    return s3_error(status, code, req.path_only());
                }
                let up = match client.forward(upstream, &req).await {
                    Ok(r) => r,
                    Err(e) => return response(502, &[], e),
                };
                let body = match fault {
                    Some(Fault::ResetBody { after }) => {
                        let (tx, body) = channel_body(2);
                        let head = up.body.slice(..after.min(up.body.len()));
                        tokio::spawn(async move {
                            let _ = tx.send(Ok(head)).await;
                            // Let the bytes reach the client before the reset.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            conn.reset_on_close();
                            let _ = tx.send(Err(std::io::Error::other("injected reset"))).await;
                        });
                        body
                    }
                    Some(Fault::SlowBody { chunk, delay }) => {
                        trickle(up.body.clone(), chunk, delay)
                    }
                    _ => full(up.body.clone()),
                };
                up.passed_on(body)
            }
        });
        FaultProxy { server, state }
    }

    /// The endpoint URL to give the client under test.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// `fault` for the next `times` requests (`None`: every one) whose
    /// method is `method` and whose path (`/bucket/key`, path-style)
    /// starts with `path_prefix`. The oldest matching rule applies first.
    pub fn inject(&self, method: Method, path_prefix: &str, fault: Fault, times: Option<u32>) {
        self.state.lock().unwrap().rules.push(Rule {
            method,
            path_prefix: path_prefix.to_owned(),
            fault,
            left: times,
        });
    }

    /// No more faults.
    pub fn clear(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// The requests seen since the last call.
    pub fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut self.state.lock().unwrap().seen)
    }
}

fn take_fault(st: &Mutex<State>, req: &Req) -> Option<Fault> {
    let mut st = st.lock().unwrap();
    let i = st.rules.iter().position(|r| {
        r.method == req.method && req.path_only().starts_with(&r.path_prefix) && r.left != Some(0)
    })?;
    let rule = &mut st.rules[i];
    if let Some(n) = &mut rule.left {
        *n -= 1;
    }
    Some(rule.fault)
}

/// The body in `chunk`-byte pieces, `delay` before each.
fn trickle(body: Bytes, chunk: usize, delay: Duration) -> Body {
    let (tx, out) = channel_body(1);
    tokio::spawn(async move {
        let mut rest = body;
        while !rest.is_empty() {
            tokio::time::sleep(delay).await;
            let piece = rest.split_to(chunk.min(rest.len()));
            if tx.send(Ok(piece)).await.is_err() {
                return;
            }
        }
    });
    out
}

/// An S3 REST error answer (the XML body the SDK parses for the code).
fn s3_error(status: u16, code: &str, resource: &str) -> Response<Body> {
    let message = match code {
        "SlowDown" => "Please reduce your request rate.",
        "InternalError" => "We encountered an internal error. Please try again.",
        _ => "Injected error.",
    };
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><Resource>{resource}</Resource><RequestId>FAULTPROXY</RequestId><HostId>fault-proxy</HostId></Error>"
    );
    response(
        status,
        &[
            ("content-type", "application/xml"),
            ("x-amz-request-id", "FAULTPROXY"),
        ],
        xml,
    )
}
