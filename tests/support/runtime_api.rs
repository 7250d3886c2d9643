//! A minimal Lambda Runtime API (the interface a function process polls
//! for work) on hyper: the test delivers events and reads what the
//! function answered, and, unlike a full emulator, decides itself what
//! happens after a crash (the same event again, to a new process, is what
//! Lambda's retry of an asynchronous invocation does).
//!
//! Served: `GET …/runtime/invocation/next` (a long poll), `POST
//! …/runtime/invocation/{id}/response`, `POST …/runtime/invocation/{id}/error`
//! and `POST …/runtime/init/error`. Deadlines are real epoch milliseconds,
//! as the Lambda service sends them.

use super::http::{response, Body, Server};
use hyper::{Method, Response};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// What the function answered instead of a result (the runtime's
/// `{"errorType", "errorMessage"}`): Lambda would retry the invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionError {
    pub error_type: String,
    pub message: String,
}

impl FunctionError {
    /// From an error body of the runtime (or of `cargo lambda watch`).
    pub fn from_json(v: &Value) -> Option<FunctionError> {
        Some(FunctionError {
            message: v.get("errorMessage")?.as_str()?.to_owned(),
            error_type: v
                .get("errorType")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        })
    }
}

/// The function's answer to one invocation.
type Answer = Result<Value, FunctionError>;

#[derive(Default)]
struct State {
    queue: VecDeque<(String, Vec<u8>)>,
    handed_out: Vec<String>,
    results: HashMap<String, Answer>,
    init_errors: Vec<FunctionError>,
    polls: u64,
    ids: u64,
}

struct Shared {
    state: Mutex<State>,
    delivered: Notify,
    arn: String,
    timeout: Duration,
}

pub struct RuntimeApi {
    server: Server,
    shared: Arc<Shared>,
}

const PREFIX: &str = "/2018-06-01/runtime/";

impl RuntimeApi {
    /// For a function `name` whose invocations may last `timeout`.
    pub fn start(rt: &tokio::runtime::Handle, name: &str, timeout: Duration) -> RuntimeApi {
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            delivered: Notify::new(),
            arn: format!("arn:aws:lambda:us-east-1:000000000000:function:{name}"),
            timeout,
        });
        let sh = shared.clone();
        let server = Server::start(rt, move |req, _| {
            let sh = sh.clone();
            async move {
                let Some(rest) = req.path_only().strip_prefix(PREFIX) else {
                    return response(404, &[], "not a runtime API path");
                };
                let parts: Vec<&str> = rest.split('/').collect();
                match (&req.method, parts.as_slice()) {
                    (&Method::GET, ["invocation", "next"]) => next(&sh).await,
                    (&Method::POST, ["invocation", id, "response"]) => {
                        let v = serde_json::from_slice(&req.body).unwrap_or_else(|_| {
                            Value::String(String::from_utf8_lossy(&req.body).into_owned())
                        });
                        finish(&sh, id, Ok(v))
                    }
                    (&Method::POST, ["invocation", id, "error"]) => {
                        let e = error_of(&req.body);
                        finish(&sh, id, Err(e))
                    }
                    (&Method::POST, ["init", "error"]) => {
                        sh.state
                            .lock()
                            .unwrap()
                            .init_errors
                            .push(error_of(&req.body));
                        response(202, &[], "")
                    }
                    _ => response(404, &[], "unknown runtime API call"),
                }
            }
        });
        RuntimeApi { server, shared }
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API` for the function process.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// How many `next` polls have arrived (a started function process is
    /// initialised once it polls).
    pub fn polls(&self) -> u64 {
        self.shared.state.lock().unwrap().polls
    }

    /// Queues an invocation of `payload`; returns its request id.
    pub fn deliver(&self, payload: &Value) -> String {
        let mut st = self.shared.state.lock().unwrap();
        st.ids += 1;
        let id = format!("invocation-{}", st.ids);
        st.queue
            .push_back((id.clone(), serde_json::to_vec(payload).unwrap()));
        drop(st);
        self.shared.delivered.notify_waiters();
        id
    }

    /// Whether a function process has taken invocation `id`.
    pub fn handed_out(&self, id: &str) -> bool {
        self.shared
            .state
            .lock()
            .unwrap()
            .handed_out
            .iter()
            .any(|h| h == id)
    }

    /// What the function answered to `id`, if it has.
    pub fn result(&self, id: &str) -> Option<Answer> {
        self.shared.state.lock().unwrap().results.get(id).cloned()
    }

    /// Waits for the answer to `id`; panics after `limit`, when `alive`
    /// says the function process is gone, or on an init error.
    pub fn wait(&self, id: &str, limit: Duration, alive: &dyn Fn() -> bool) -> Answer {
        let until = Instant::now() + limit;
        loop {
            if let Some(r) = self.result(id) {
                return r;
            }
            let init = self.shared.state.lock().unwrap().init_errors.clone();
            assert!(init.is_empty(), "function init failed: {init:?}");
            assert!(alive(), "{id}: the function process is gone");
            assert!(Instant::now() < until, "{id}: no answer after {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn next(sh: &Shared) -> Response<Body> {
    sh.state.lock().unwrap().polls += 1;
    let (id, payload) = loop {
        // Registered before looking, so a delivery in between is not missed.
        let delivered = sh.delivered.notified();
        {
            let mut st = sh.state.lock().unwrap();
            if let Some((id, payload)) = st.queue.pop_front() {
                st.handed_out.push(id.clone());
                break (id, payload);
            }
        }
        delivered.await;
    };
    let deadline = (SystemTime::now() + sh.timeout)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    response(
        200,
        &[
            ("content-type", "application/json"),
            ("lambda-runtime-aws-request-id", &id),
            ("lambda-runtime-deadline-ms", &deadline),
            ("lambda-runtime-invoked-function-arn", &sh.arn),
            (
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000",
            ),
        ],
        payload,
    )
}

fn finish(sh: &Shared, id: &str, answer: Answer) -> Response<Body> {
    let mut st = sh.state.lock().unwrap();
    if !st.handed_out.iter().any(|h| h == id) {
        return response(400, &[], format!("unknown request id {id}"));
    }
    st.results.insert(id.to_owned(), answer);
    response(
        202,
        &[("content-type", "application/json")],
        "{\"status\":\"OK\"}",
    )
}

fn error_of(body: &[u8]) -> FunctionError {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| FunctionError::from_json(&v))
        .unwrap_or_else(|| FunctionError {
            error_type: String::new(),
            message: String::from_utf8_lossy(body).into_owned(),
        })
}
