//! Small helpers shared by the AWS clients (S3, Timestream, Lambda).

/// Formats an error with its sources, `a: b: c`.
pub struct DisplayErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut src = self.0.source();
        while let Some(s) = src {
            write!(f, ": {s}")?;
            src = s.source();
        }
        Ok(())
    }
}

/// The SDK clients' tests: an in-process HTTP client that answers each
/// request with the next canned response and keeps every request sent, and
/// a clock and a sleep the test drives. (The SDK's `StaticReplayClient`
/// needs `aws-smithy-http-client`'s `test-util` feature, which pulls in
/// `aws-smithy-protocol-test` and its dependency tree; this is the part of
/// it these tests need.) The real client builders run unchanged on top.
#[cfg(test)]
pub(crate) mod test_http {
    use aws_smithy_async::rt::sleep::{AsyncSleep, Sleep, TokioSleep};
    use aws_smithy_async::time::TimeSource;
    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime};

    /// One request as it left the client.
    #[derive(Debug, Clone)]
    pub struct Sent {
        pub method: String,
        pub uri: String,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Sent {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        /// `X-Amz-Target` without the service prefix (JSON protocols).
        pub fn operation(&self) -> &str {
            let t = self.header("x-amz-target").unwrap_or_default();
            t.rsplit('.').next().unwrap_or(t)
        }

        /// scheme://host[:port] of the URI.
        pub fn origin(&self) -> &str {
            let after = self.uri.find("://").map_or(0, |i| i + 3);
            let end = self.uri[after..]
                .find('/')
                .map_or(self.uri.len(), |i| after + i);
            &self.uri[..end]
        }
    }

    enum Answer {
        Response(u16, Vec<(&'static str, String)>, Vec<u8>),
        /// The connection fails (no response at all).
        Fail(&'static str),
    }

    #[derive(Default)]
    struct State {
        answers: VecDeque<Answer>,
        sent: Vec<Sent>,
    }

    #[derive(Clone, Default)]
    pub struct Replay(Arc<Mutex<State>>);

    impl std::fmt::Debug for Replay {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Replay")
        }
    }

    impl Replay {
        /// Queues a response.
        pub fn respond(&self, status: u16, headers: &[(&'static str, &str)], body: &str) -> &Self {
            let h = headers.iter().map(|(n, v)| (*n, v.to_string())).collect();
            let a = Answer::Response(status, h, body.as_bytes().to_vec());
            self.0.lock().unwrap().answers.push_back(a);
            self
        }

        /// Queues a JSON (awsJson1.0) response.
        pub fn json(&self, status: u16, body: &str) -> &Self {
            self.respond(
                status,
                &[("content-type", "application/x-amz-json-1.0")],
                body,
            )
        }

        /// Queues a connection failure.
        pub fn fail(&self, why: &'static str) -> &Self {
            self.0.lock().unwrap().answers.push_back(Answer::Fail(why));
            self
        }

        pub fn sent(&self) -> Vec<Sent> {
            self.0.lock().unwrap().sent.clone()
        }
    }

    impl HttpConnector for Replay {
        fn call(&self, req: HttpRequest) -> HttpConnectorFuture {
            let sent = Sent {
                method: req.method().to_owned(),
                uri: req.uri().to_owned(),
                headers: req
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .collect(),
                body: req.body().bytes().unwrap_or_default().to_vec(),
            };
            let mut st = self.0.lock().unwrap();
            st.sent.push(sent);
            let answer = st.answers.pop_front();
            HttpConnectorFuture::ready(match answer {
                Some(Answer::Response(status, headers, body)) => {
                    let mut r = HttpResponse::new(
                        StatusCode::try_from(status).expect("a valid status"),
                        SdkBody::from(body),
                    );
                    for (n, v) in headers {
                        r.headers_mut().insert(n, v);
                    }
                    Ok(r)
                }
                Some(Answer::Fail(why)) => Err(ConnectorError::io(why.into())),
                None => Err(ConnectorError::other(
                    "the test queued no response for this request".into(),
                    None,
                )),
            })
        }
    }

    impl HttpClient for Replay {
        fn http_connector(
            &self,
            _: &HttpConnectorSettings,
            _: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(self.clone())
        }
    }

    /// A wall clock the test sets.
    #[derive(Debug, Clone)]
    pub struct Clock(Arc<Mutex<SystemTime>>);

    impl Clock {
        pub fn new() -> Self {
            Self(Arc::new(Mutex::new(SystemTime::now())))
        }
        pub fn advance(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }
    }

    impl TimeSource for Clock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    /// Sleeps of exactly `gated` last until the test calls `tick` (one
    /// sleep per tick); every other sleep is a real one.
    #[derive(Debug, Clone)]
    pub struct GatedSleep {
        gated: Duration,
        ticks: Arc<tokio::sync::Semaphore>,
    }

    impl GatedSleep {
        pub fn new(gated: Duration) -> Self {
            Self {
                gated,
                ticks: Arc::new(tokio::sync::Semaphore::new(0)),
            }
        }
        pub fn tick(&self) {
            self.ticks.add_permits(1);
        }
    }

    impl AsyncSleep for GatedSleep {
        fn sleep(&self, d: Duration) -> Sleep {
            if d == self.gated {
                let ticks = self.ticks.clone();
                Sleep::new(async move {
                    ticks.acquire().await.expect("never closed").forget();
                })
            } else {
                TokioSleep::new().sleep(d)
            }
        }
    }

    /// An SdkConfig as `aws_config` would load it, with `http` as its HTTP
    /// client, static credentials and the given clock and sleep.
    pub fn sdk_config(
        http: &Replay,
        region: &str,
        clock: Option<Clock>,
        sleep: Option<GatedSleep>,
    ) -> aws_config::SdkConfig {
        use aws_sdk_timestreamwrite::config::{Credentials, SharedCredentialsProvider};
        let creds = Credentials::new("AKIDTEST", "secret", None, None, "test");
        let mut b = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_owned()))
            .credentials_provider(SharedCredentialsProvider::new(creds))
            .http_client(http.clone());
        b = match sleep {
            Some(s) => b.sleep_impl(aws_smithy_async::rt::sleep::SharedAsyncSleep::new(s)),
            None => b.sleep_impl(aws_smithy_async::rt::sleep::SharedAsyncSleep::new(
                TokioSleep::new(),
            )),
        };
        if let Some(c) = clock {
            b = b.time_source(aws_smithy_async::time::SharedTimeSource::new(c));
        }
        b.build()
    }
}
