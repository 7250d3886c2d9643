//! moto_server (S3, and Timestream Write for the wire test) on a free port,
//! and an S3 client for it.

use super::http::Client;
use super::procs::{free_port, log_dir, wait_until, Proc};
use hyper::header::HeaderMap;
use hyper::Method;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

pub struct Moto {
    pub addr: SocketAddr,
    proc: Proc,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts moto_server and waits until it answers HTTP (its start takes
    /// seconds on a busy machine).
    pub fn start() -> Moto {
        let dir = log_dir("moto_server");
        let port = free_port();
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let proc = Proc::spawn("moto_server", cmd, dir.path().join("moto.log"));
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = Client::default();
        wait_until("moto_server", Duration::from_secs(60), Some(&proc), || {
            rt.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(2),
                    client.send(addr, Method::GET, "/", HeaderMap::new(), Default::default()),
                )
                .await
                .is_ok_and(|r| r.is_ok())
            })
        });
        Moto {
            addr,
            proc,
            _dir: dir,
        }
    }

    /// One moto_server for the tests of this binary that run at the same
    /// time: started by the first, stopped when the last lets go of it.
    /// Tests sharing it use their own buckets.
    pub fn shared() -> Arc<Moto> {
        static SHARED: Mutex<Weak<Moto>> = Mutex::new(Weak::new());
        let mut w = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = w.upgrade() {
            return m;
        }
        let m = Arc::new(Moto::start());
        *w = Arc::downgrade(&m);
        m
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn tail(&self, n: usize) -> String {
        self.proc.tail(n)
    }

    /// A path-style S3 client with the fake credentials.
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        use aws_sdk_s3::config::{BehaviorVersion, Builder, Credentials, Region};
        let conf = Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .endpoint_url(self.url())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// A Secrets Manager client with the fake credentials (moto serves
    /// every service on one port).
    pub fn secrets_client(&self) -> aws_sdk_secretsmanager::Client {
        use aws_sdk_secretsmanager::config::{BehaviorVersion, Builder, Credentials, Region};
        let conf = Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .endpoint_url(self.url())
            .build();
        aws_sdk_secretsmanager::Client::from_conf(conf)
    }
}
