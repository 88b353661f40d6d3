//! The applier steps aside while the CPU is saturated, within a bounded lag.
//!
//! A redirect waits for its group's fsync, not for the store, so during a burst every
//! millisecond the applier spends on SQL is a millisecond the redirects do not get, and the
//! journal is there precisely to hold the clicks meanwhile. A lower nice value alone
//! (`--apply-nice`) does not do it: the redirects keep leaving the cores idle for the moments
//! their group syncs, and the applier fills those moments with work that then delays the next
//! group. So before each step the applier reads the kernel's CPU pressure (PSI,
//! `/proc/pressure/cpu`: the share of time some runnable thread waited for a core) and, while
//! it is above `SATURATED`, waits instead of applying, until the oldest waiting click is
//! `--max-apply-lag` old; then it applies whatever the pressure, so the store is never further
//! behind than that plus one step. Once the burst is over the pressure falls and the applier
//! drains the backlog at full speed (the time it takes is `track_journal_apply_lag_seconds`).
//! Without PSI (not Linux, or a kernel built without it) the applier never steps aside.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use crate::telemetry::metrics;

/// Where Linux reports CPU pressure.
pub const PSI_CPU: &str = "/proc/pressure/cpu";

/// Pressure above which the CPU counts as saturated: some thread waited for a core during a
/// fifth of the time. An idle machine and a steady load of a few thousand clicks/s stay well
/// below; a burst that saturates two cores reads 40-50 %.
const SATURATED: f64 = 0.20;

/// Pressure is read over at least this window (shorter windows are noise); while stepping
/// aside, the applier looks again after it.
const WINDOW: Duration = Duration::from_millis(100);

/// Older than this, the previous reading says nothing about now (the applier was idle or
/// busy with a step): the kernel's own ten-second average stands in for one window.
const STALE: Duration = Duration::from_secs(1);

/// The kernel's running total of stalled time, read twice to get the share of a window.
#[derive(Debug)]
struct CpuPressure {
    path: PathBuf,
    /// The previous reading: when, and the total of stalled microseconds then.
    last: Option<(Instant, u64)>,
    /// The share measured over the last full window.
    share: f64,
}

impl CpuPressure {
    /// The share of time during which some thread waited for a core: since the previous
    /// reading if that is between `WINDOW` and `STALE` ago, the previous share if it is more
    /// recent, the kernel's ten-second average if there is none or it is stale. `None`:
    /// unreadable.
    fn share(&mut self) -> Option<f64> {
        let now_reading = read_some(&self.path)?;
        let now = Instant::now();
        match self.last {
            Some((at, _)) if now.duration_since(at) < WINDOW => return Some(self.share),
            Some((at, before)) if now.duration_since(at) <= STALE => {
                let wall = now.duration_since(at).as_micros() as f64;
                self.share = (now_reading.total.saturating_sub(before) as f64 / wall).min(1.0);
            }
            _ => self.share = now_reading.avg10,
        }
        self.last = Some((now, now_reading.total));
        Some(self.share)
    }
}

/// The `some` line of a pressure file.
#[derive(Debug, PartialEq)]
struct SomeLine {
    /// The kernel's average share over the last ten seconds (0-1).
    avg10: f64,
    /// Microseconds during which at least one thread waited, since boot.
    total: u64,
}

fn read_some(path: &Path) -> Option<SomeLine> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_some(&text)
}

fn parse_some(text: &str) -> Option<SomeLine> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
    };
    Some(SomeLine {
        avg10: field("avg10")?.parse::<f64>().ok()? / 100.0,
        total: field("total")?.parse().ok()?,
    })
}

/// What the applier should do before its next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Apply now.
    Apply,
    /// The CPU is saturated and the lag is within bounds: wait `WINDOW` and ask again.
    StepAside,
}

/// The applier's side of the bargain (`--max-apply-lag`).
#[derive(Debug)]
pub struct GiveWay {
    max_lag: Duration,
    pressure: Option<CpuPressure>,
    /// Since when the applier has been stepping aside (for the metric and the log line).
    aside_since: Option<Instant>,
    /// All the time stepped aside, and the whole seconds of it already counted.
    aside_total: Duration,
    counted_seconds: u64,
}

impl GiveWay {
    /// `max_lag` zero: never step aside. `psi`: the pressure file (`PSI_CPU` in production).
    pub fn new(max_lag: Duration, psi: &Path) -> GiveWay {
        let pressure = if max_lag.is_zero() {
            None
        } else if read_some(psi).is_none() {
            tracing::info!(
                path = %psi.display(),
                "no CPU pressure information (PSI): the applier does not step aside for the \
                 redirects under load (--max-apply-lag has no effect)"
            );
            None
        } else {
            Some(CpuPressure {
                path: psi.to_path_buf(),
                last: None,
                share: 0.0,
            })
        };
        GiveWay {
            max_lag,
            pressure,
            aside_since: None,
            aside_total: Duration::ZERO,
            counted_seconds: 0,
        }
    }

    /// Apply, or step aside for one window. `lag`: the age of the oldest waiting click.
    pub fn turn(&mut self, lag: Duration) -> Turn {
        let saturated = self
            .pressure
            .as_mut()
            .and_then(CpuPressure::share)
            .is_some_and(|share| share > SATURATED);
        let turn = decide(saturated, lag, self.max_lag);
        match (turn, self.aside_since) {
            (Turn::StepAside, None) => {
                self.aside_since = Some(Instant::now());
                metrics::applier_aside(true);
                tracing::debug!(
                    lag_ms = lag.as_millis() as u64,
                    "CPU saturated: applier steps aside"
                );
            }
            (Turn::Apply, Some(since)) => {
                self.aside_since = None;
                metrics::applier_aside(false);
                self.aside_total += since.elapsed();
                let seconds = self.aside_total.as_secs();
                metrics::applier_aside_seconds(seconds - self.counted_seconds);
                self.counted_seconds = seconds;
                if saturated {
                    tracing::info!(
                        lag_ms = lag.as_millis() as u64,
                        aside_ms = since.elapsed().as_millis() as u64,
                        "the oldest waiting click reached --max-apply-lag: applying although \
                         the CPU is saturated"
                    );
                }
            }
            _ => {}
        }
        turn
    }

    /// How long to wait after `Turn::StepAside`.
    pub fn window() -> Duration {
        WINDOW
    }
}

fn decide(saturated: bool, lag: Duration, max_lag: Duration) -> Turn {
    if saturated && lag < max_lag {
        Turn::StepAside
    } else {
        Turn::Apply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_some_line_is_read_from_the_kernel_format() {
        let text = "some avg10=41.50 avg60=12.02 avg300=3.10 total=67608756\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(
            parse_some(text),
            Some(SomeLine {
                avg10: 0.415,
                total: 67_608_756
            })
        );
        assert_eq!(parse_some("full avg10=0.00 total=5\n"), None);
        assert_eq!(parse_some("some avg10=0.00 total=x\n"), None);
        assert_eq!(parse_some("some total=5\n"), None);
        assert_eq!(parse_some(""), None);
    }

    #[test]
    fn the_applier_steps_aside_only_when_saturated_and_within_the_lag() {
        let max = Duration::from_secs(30);
        assert_eq!(decide(true, Duration::from_secs(1), max), Turn::StepAside);
        assert_eq!(decide(true, max, max), Turn::Apply);
        assert_eq!(decide(false, Duration::from_secs(1), max), Turn::Apply);
        assert_eq!(decide(true, Duration::ZERO, Duration::ZERO), Turn::Apply);
    }

    #[tokio::test(start_paused = true)]
    async fn the_share_is_the_stalled_time_over_the_wall_time_of_a_window() {
        let dir = tempfile::tempdir().expect("tempdir");
        let psi = dir.path().join("cpu");
        let write = |avg10: f64, total: u64| {
            let text = format!("some avg10={avg10:.2} avg60=0.00 avg300=0.00 total={total}\n");
            std::fs::write(&psi, text).expect("write");
        };
        write(5.0, 1_000);
        let mut give_way = GiveWay::new(Duration::from_secs(30), &psi);
        let lag = Duration::from_secs(1);
        // No previous reading: the kernel's ten-second average (5 %).
        assert_eq!(give_way.turn(lag), Turn::Apply);
        // 200 ms later, 150 ms stalled: 75 %.
        tokio::time::advance(Duration::from_millis(200)).await;
        write(5.0, 151_000);
        assert_eq!(give_way.turn(lag), Turn::StepAside);
        // Within a window the last share stands.
        assert_eq!(give_way.turn(lag), Turn::StepAside);
        // The lag bound wins over the pressure.
        assert_eq!(give_way.turn(Duration::from_secs(30)), Turn::Apply);
        // 500 ms later, 10 ms stalled: 2 %.
        tokio::time::advance(Duration::from_millis(500)).await;
        write(5.0, 161_000);
        assert_eq!(give_way.turn(lag), Turn::Apply);
        // A reading older than a second says nothing about now: the ten-second average does.
        tokio::time::advance(Duration::from_secs(5)).await;
        write(60.0, 4_161_000);
        assert_eq!(give_way.turn(lag), Turn::StepAside);
        tokio::time::advance(Duration::from_secs(5)).await;
        write(1.0, 9_161_000);
        assert_eq!(give_way.turn(lag), Turn::Apply);
    }

    #[test]
    fn no_pressure_file_or_no_lag_bound_means_never_stepping_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut missing = GiveWay::new(Duration::from_secs(30), &dir.path().join("none"));
        assert!(missing.pressure.is_none());
        assert_eq!(missing.turn(Duration::ZERO), Turn::Apply);
        let psi = dir.path().join("cpu");
        std::fs::write(&psi, "some avg10=99.00 total=1\n").expect("write");
        let off = GiveWay::new(Duration::ZERO, &psi);
        assert!(off.pressure.is_none());
    }
}
