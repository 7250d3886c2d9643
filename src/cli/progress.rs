//! What `ingest` shows while it runs: on a terminal a bar (percent of the
//! input's bytes, rate, ETA, points written, rejected and dead-lettered
//! counts), otherwise a log line every few seconds. One input gets one bar;
//! many inputs ([`Board`]) get a total bar plus one bar per object in
//! flight.
//!
//! The percentage is of the bytes *read* (for gzip input: compressed
//! bytes, the object's size), so it is known before anything is inflated.

use crate::core::report::RunReport;
use crate::ingest::Live;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often a bar is redrawn and a log line is written.
const BAR_PERIOD: Duration = Duration::from_millis(200);
const LOG_PERIOD: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bar,
    Log,
    Quiet,
}

impl Mode {
    /// `--progress`: auto (a bar when stderr is a terminal), bar, log, none.
    pub fn resolve(flag: &str) -> Mode {
        match flag {
            "bar" => Mode::Bar,
            "auto" if std::io::stderr().is_terminal() => Mode::Bar,
            "auto" | "log" => Mode::Log,
            _ => Mode::Quiet,
        }
    }

    fn period(self) -> Duration {
        if self == Mode::Bar {
            BAR_PERIOD
        } else {
            LOG_PERIOD
        }
    }
}

/// The figures a progress line shows, for one object or a sum of many.
/// Written, rejected and dead-lettered count k6 points (measures), as the
/// final table does; retries count requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub read: u64,
    /// Bytes to read, when known (not for stdin).
    pub total: Option<u64>,
    pub written: u64,
    pub rejected: u64,
    pub dead_lettered: u64,
    pub retries: u64,
}

impl Counts {
    pub fn of(live: &Live, total: Option<u64>) -> Counts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = &live.stats;
        Counts {
            read: live.progress.done(),
            total,
            written: g(&s.written_measures),
            rejected: g(&s.rejected_measures),
            dead_lettered: g(&s.dead_lettered_measures),
            retries: g(&s.retries),
        }
    }

    /// A finished object's figures.
    pub fn of_report(r: &RunReport, total: Option<u64>) -> Counts {
        Counts {
            read: r.bytes_read,
            total,
            written: r.written_measures,
            rejected: r.rejected_measures,
            dead_lettered: r.dead_lettered_measures,
            retries: r.retries,
        }
    }

    pub fn add(&mut self, o: &Counts) {
        self.read += o.read;
        self.total = match (self.total, o.total) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        self.written += o.written;
        self.rejected += o.rejected;
        self.dead_lettered += o.dead_lettered;
        self.retries += o.retries;
    }

    /// The writer's side: `12,345 points written (2,468/s), 0 rejected, …`.
    pub fn writes(&self, elapsed: Duration) -> String {
        format!(
            "{} points written ({}/s), {} rejected, {} dead-lettered, {} retries",
            thousands(self.written),
            thousands(self.rate(elapsed)),
            thousands(self.rejected),
            thousands(self.dead_lettered),
            thousands(self.retries)
        )
    }

    /// The same, short, for a bar: `12,345 written (2,468/s), 0 rejected,
    /// 0 dead-lettered` (retries only when there were some).
    pub fn writes_short(&self, elapsed: Duration) -> String {
        let mut s = format!(
            "{} written ({}/s), {} rejected, {} dead-lettered",
            thousands(self.written),
            thousands(self.rate(elapsed)),
            thousands(self.rejected),
            thousands(self.dead_lettered),
        );
        if self.retries > 0 {
            s += &format!(", {} retries", thousands(self.retries));
        }
        s
    }

    fn rate(&self, elapsed: Duration) -> u64 {
        (self.written as f64 / elapsed.as_secs_f64().max(0.001)).round() as u64
    }

    /// The reading side for a log line: `43% of 12.0 MiB (1.2 MiB/s, ETA 6s)`.
    pub fn reading(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(0.001);
        let rate = self.read as f64 / secs;
        match self.total {
            Some(total) if total > 0 => {
                let pct = (self.read as f64 * 100.0 / total as f64).min(100.0);
                let eta = if rate > 0.0 {
                    human_duration(Duration::from_secs_f64(
                        total.saturating_sub(self.read) as f64 / rate,
                    ))
                } else {
                    "?".to_owned()
                };
                format!(
                    "{pct:.0}% of {} ({}/s, ETA {eta})",
                    human_bytes(total),
                    human_bytes(rate as u64)
                )
            }
            _ => format!(
                "{} read ({}/s)",
                human_bytes(self.read),
                human_bytes(rate as u64)
            ),
        }
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Binary units with one decimal: `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// `7s`, `3m05s`, `2h04m`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

fn style(known_size: bool, indent: bool) -> ProgressStyle {
    let head = if indent {
        "  {prefix:28!} "
    } else {
        "{spinner} [{elapsed_precise}] "
    };
    let t = if known_size {
        format!("{head}[{{bar:24}}] {{percent:>3}}% {{binary_bytes}}/{{binary_total_bytes}} {{binary_bytes_per_sec}} ETA {{eta}} | {{wide_msg}}")
    } else {
        format!("{head}{{binary_bytes}} read, {{binary_bytes_per_sec}} | {{wide_msg}}")
    };
    ProgressStyle::with_template(&t)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// A running display; [`Display::finish`] draws the last state and stops.
pub struct Display {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Display {
    fn spawn<F>(mode: Mode, mut draw: F) -> Display
    where
        F: FnMut(bool) + Send + 'static,
    {
        if mode == Mode::Quiet {
            return Display {
                stop: None,
                task: None,
            };
        }
        let (tx, mut rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(mode.period());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate
            loop {
                tokio::select! {
                    _ = tick.tick() => draw(false),
                    _ = &mut rx => {
                        draw(true);
                        return;
                    }
                }
            }
        });
        Display {
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the display after a last update (a bar is left at its final
    /// state; a log line is written only if the run lasted a period).
    pub async fn finish(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// The display of a single input.
pub fn single(mode: Mode, live: Live, total: Option<u64>) -> Display {
    let started = Instant::now();
    let pb = (mode == Mode::Bar).then(|| {
        let pb = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        pb.set_style(style(total.is_some(), false));
        pb
    });
    Display::spawn(mode, move |last| {
        let c = Counts::of(&live, total);
        let el = started.elapsed();
        match &pb {
            Some(pb) => {
                pb.set_position(c.read);
                pb.set_message(c.writes_short(el));
                if last {
                    pb.finish();
                } else {
                    pb.tick();
                }
            }
            // The report follows the last state.
            None if !last => eprintln!("progress: {}; {}", c.reading(el), c.writes(el)),
            None => {}
        }
    })
}

struct Active {
    id: u64,
    name: String,
    live: Live,
    size: Option<u64>,
    bar: Option<ProgressBar>,
}

struct BoardState {
    next_id: u64,
    active: Vec<Active>,
    /// Sum over finished objects.
    done: Counts,
    finished: u64,
    failed: u64,
}

/// The display of many objects: a total bar (bytes of all objects to
/// read, objects done) with one bar per object in flight below it, or
/// log lines. Objects report their start and end.
pub struct Board {
    mode: Mode,
    mp: Option<MultiProgress>,
    total_bar: Option<ProgressBar>,
    objects: u64,
    total_bytes: u64,
    started: Instant,
    state: Mutex<BoardState>,
}

impl Board {
    pub fn new(mode: Mode, objects: u64, total_bytes: u64) -> Arc<Board> {
        let mp = (mode == Mode::Bar)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let total_bar = mp.as_ref().map(|mp| {
            let pb = mp.add(ProgressBar::new(total_bytes));
            pb.set_style(style(true, false));
            pb
        });
        Arc::new(Board {
            mode,
            mp,
            total_bar,
            objects,
            total_bytes,
            started: Instant::now(),
            state: Mutex::new(BoardState {
                next_id: 0,
                active: Vec::new(),
                done: Counts {
                    total: Some(0),
                    ..Counts::default()
                },
                finished: 0,
                failed: 0,
            }),
        })
    }

    /// An object starts; returns its handle for [`Board::end`].
    pub fn begin(&self, name: &str, live: Live, size: Option<u64>) -> u64 {
        let bar = self.mp.as_ref().map(|mp| {
            let pb = mp.add(ProgressBar::new(size.unwrap_or(0)));
            pb.set_style(style(size.is_some(), true));
            pb.set_prefix(short_name(name, 28));
            pb
        });
        let mut st = self.state.lock().unwrap();
        let id = st.next_id;
        st.next_id += 1;
        st.active.push(Active {
            id,
            name: name.to_owned(),
            live,
            size,
            bar,
        });
        id
    }

    /// An object ended with `line` to show (above the bars on a terminal).
    pub fn end(&self, id: u64, report: &RunReport, failed: bool, line: &str) {
        let mut st = self.state.lock().unwrap();
        if let Some(i) = st.active.iter().position(|a| a.id == id) {
            let a = st.active.remove(i);
            if let (Some(mp), Some(bar)) = (&self.mp, &a.bar) {
                bar.finish_and_clear();
                mp.remove(bar);
            }
            st.done.add(&Counts::of_report(report, a.size));
        }
        st.finished += 1;
        st.failed += u64::from(failed);
        drop(st);
        match &self.mp {
            Some(mp) => {
                let _ = mp.println(line);
            }
            None if self.mode == Mode::Log => eprintln!("{line}"),
            None => {}
        }
    }

    fn draw(&self, last: bool) {
        let st = self.state.lock().unwrap();
        let el = self.started.elapsed();
        let mut sum = st.done;
        for a in &st.active {
            let c = Counts::of(&a.live, a.size);
            if let Some(bar) = &a.bar {
                bar.set_position(c.read);
                bar.set_message(format!(
                    "{} written, {} rejected, {} dead-lettered",
                    thousands(c.written),
                    thousands(c.rejected),
                    thousands(c.dead_lettered)
                ));
            }
            sum.add(&c);
        }
        sum.total = Some(self.total_bytes);
        let objects = format!(
            "objects {}/{}{}",
            st.finished,
            self.objects,
            if st.failed > 0 {
                format!(" ({} failed)", st.failed)
            } else {
                String::new()
            }
        );
        match &self.total_bar {
            Some(pb) => {
                pb.set_position(sum.read.min(self.total_bytes));
                pb.set_message(format!("{objects}; {}", sum.writes_short(el)));
                if last {
                    pb.finish();
                }
            }
            None if !last => {
                let names: Vec<String> = st
                    .active
                    .iter()
                    .map(|a| {
                        let c = Counts::of(&a.live, a.size);
                        match a.size {
                            Some(s) if s > 0 => format!(
                                "{} {:.0}%",
                                short_name(&a.name, 40),
                                (c.read as f64 * 100.0 / s as f64).min(100.0)
                            ),
                            _ => short_name(&a.name, 40),
                        }
                    })
                    .collect();
                eprintln!(
                    "progress: {objects}, {}; {}{}",
                    sum.reading(el),
                    sum.writes(el),
                    if names.is_empty() {
                        String::new()
                    } else {
                        format!("; in flight: {}", names.join(", "))
                    }
                );
            }
            None => {}
        }
    }
}

/// The display task of a board.
pub fn board(b: Arc<Board>) -> Display {
    Display::spawn(b.mode, move |last| b.draw(last))
}

/// The end of a long name, `…` in front when cut.
pub fn short_name(name: &str, max: usize) -> String {
    let n = name.chars().count();
    if n <= max {
        return name.to_owned();
    }
    let tail: String = name.chars().skip(n - (max - 1)).collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12 << 20), "12.0 MiB");
        assert_eq!(human_duration(Duration::from_secs(7)), "7s");
        assert_eq!(human_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(human_duration(Duration::from_secs(7440)), "2h04m");
        assert_eq!(short_name("s3://b/runs/abc.json.gz", 10), "…c.json.gz");
        assert_eq!(short_name("abc", 10), "abc");
    }

    #[test]
    fn log_lines_show_percent_rate_eta_and_the_writer() {
        let c = Counts {
            read: 3 << 20,
            total: Some(12 << 20),
            written: 24_680,
            rejected: 2,
            dead_lettered: 3,
            retries: 4,
        };
        let el = Duration::from_secs(10);
        assert_eq!(c.reading(el), "25% of 12.0 MiB (307.2 KiB/s, ETA 30s)");
        assert_eq!(
            c.writes(el),
            "24,680 points written (2,468/s), 2 rejected, 3 dead-lettered, 4 retries"
        );
        assert_eq!(
            c.writes_short(el),
            "24,680 written (2,468/s), 2 rejected, 3 dead-lettered, 4 retries"
        );
        let calm = Counts { retries: 0, ..c };
        assert_eq!(
            calm.writes_short(el),
            "24,680 written (2,468/s), 2 rejected, 3 dead-lettered"
        );
        let stdin = Counts { total: None, ..c };
        assert_eq!(stdin.reading(el), "3.0 MiB read (307.2 KiB/s)");
        let mut sum = c;
        sum.add(&c);
        assert_eq!(
            (sum.read, sum.total, sum.written),
            (6 << 20, Some(24 << 20), 49_360)
        );
        sum.add(&stdin);
        assert_eq!(sum.total, None, "an unknown size makes the sum unknown");
    }
}
