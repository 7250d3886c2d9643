//! Child processes of the tests: spawning into a process group with a log
//! file, waiting for readiness, ending the group on drop; free ports; the
//! fake AWS environment every AWS client of the tests runs with.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Credentials, region and "no real AWS" settings for processes talking to
/// local endpoints: nothing from the developer's `~/.aws` is read and the
/// EC2 metadata service is never asked.
pub const FAKE_AWS_ENV: &[(&str, &str)] = &[
    ("AWS_REGION", "us-east-1"),
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/dev/null"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
];

/// Adds [`FAKE_AWS_ENV`] to `cmd`.
pub fn fake_aws_env(cmd: &mut Command) -> &mut Command {
    cmd.envs(FAKE_AWS_ENV.iter().copied())
}

/// A directory for logs and test files; `K6TS_E2E_KEEP=1` keeps it
/// (its path is printed) instead of removing it at the end of the test.
pub fn log_dir(what: &str) -> tempfile::TempDir {
    let mut dir = tempfile::tempdir().unwrap();
    if std::env::var_os("K6TS_E2E_KEEP").is_some_and(|v| v != "0") {
        dir.disable_cleanup(true);
        eprintln!("[{what}] logs kept in {}", dir.path().display());
    }
    dir
}

/// A child process in its own process group, its output in a log file;
/// dropping it ends the group (SIGTERM, then SIGKILL after 5 s).
pub struct Proc {
    pub name: String,
    child: Mutex<Child>,
    log: PathBuf,
    pub started: Instant,
    /// The group was SIGKILLed and the leader reaped: nothing is left to end.
    killed: AtomicBool,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0);
        let started = Instant::now();
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("starting {name} ({cmd:?}): {e}; the tools come from scripts/install-tools.sh")
        });
        Proc {
            name: name.to_owned(),
            child: Mutex::new(child),
            log,
            started,
            killed: AtomicBool::new(false),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    pub fn alive(&self) -> bool {
        matches!(self.child.lock().unwrap().try_wait(), Ok(None))
    }

    /// SIGKILL to the whole group, now (a crash: no handler runs, nothing
    /// is flushed), and waits for the leader.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        signal_group(&child, libc::SIGKILL);
        let _ = child.wait();
        self.killed.store(true, Ordering::SeqCst);
    }

    /// The last `n` lines of its output.
    pub fn tail(&self, n: usize) -> String {
        let s = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        format!(
            "--- last lines of {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            lines[lines.len().saturating_sub(n)..].join("\n")
        )
    }
}

fn signal_group(child: &Child, sig: libc::c_int) {
    let pgid = child.id() as libc::pid_t;
    // SAFETY: plain kill(2) on the process group `Proc::spawn` created.
    unsafe { libc::kill(-pgid, sig) };
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.killed.load(Ordering::SeqCst) {
            return;
        }
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        signal_group(&child, libc::SIGTERM);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if !matches!(child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The leader may be gone while others of its group are not.
        signal_group(&child, libc::SIGKILL);
        let _ = child.wait();
    }
}

/// A port nobody listens on right now (for servers that need a port number
/// on their command line).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `ready` every 100 ms until it holds; panics when `proc` dies or
/// after `limit` (with the end of the process's log).
pub fn wait_until(
    what: &str,
    limit: Duration,
    proc: Option<&Proc>,
    mut ready: impl FnMut() -> bool,
) {
    let until = Instant::now() + limit;
    loop {
        if ready() {
            return;
        }
        if let Some(p) = proc {
            assert!(p.alive(), "{what}: {} exited\n{}", p.name, p.tail(40));
        }
        assert!(
            Instant::now() < until,
            "{what}: not ready after {limit:?}{}",
            proc.map(|p| format!("\n{}", p.tail(40)))
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_millis(ticks * 1000 / hz))
}

/// Peak resident set size (`VmHWM`) of a process, in KiB.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
