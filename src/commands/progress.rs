//! The progress of `clicktrack migrate`'s backfill: a bar redrawn in place on a terminal, a
//! log line every few seconds otherwise (a deployment script's log, a CI run).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the bar is redrawn, and how often a line is logged without a terminal.
const REDRAW: Duration = Duration::from_millis(200);
const LOG_EVERY: Duration = Duration::from_secs(5);
const BAR_WIDTH: usize = 30;

pub struct Progress {
    /// Log ids of the history in all, and done when the run started.
    total: i64,
    done_at_start: i64,
    rows: u64,
    started: Instant,
    shown: Option<Instant>,
    terminal: bool,
}

impl Progress {
    pub fn new(total: i64, done: i64) -> Progress {
        Progress {
            total,
            done_at_start: done,
            rows: 0,
            started: Instant::now(),
            shown: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// `done` log ids of the history are rolled up; a step just rolled up `rows` rows.
    pub fn update(&mut self, done: i64, rows: u64) {
        self.rows += rows;
        let every = if self.terminal { REDRAW } else { LOG_EVERY };
        if self.shown.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        self.shown = Some(Instant::now());
        let percent = if self.total > 0 {
            (done as f64 / self.total as f64 * 100.0).clamp(0.0, 100.0)
        } else {
            100.0
        };
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.rows as f64 / elapsed;
        let left = self.total - done;
        let per_id = (done - self.done_at_start).max(1) as f64 / elapsed;
        let eta = (left.max(0) as f64 / per_id).round();
        if self.terminal {
            let filled = (percent / 100.0 * BAR_WIDTH as f64) as usize;
            let bar = format!("{}{}", "#".repeat(filled), " ".repeat(BAR_WIDTH - filled));
            let drawn = write!(
                std::io::stderr(),
                "\rrollups [{bar}] {percent:5.1}%  {} rows, {:.0} rows/s, about {eta:.0} s left ",
                self.rows,
                rate
            )
            .and_then(|()| std::io::stderr().flush());
            if let Err(error) = drawn {
                // A terminal that cannot be drawn on gets the log lines instead.
                tracing::warn!(%error, "cannot draw the progress bar; logging progress instead");
                self.terminal = false;
            }
        } else {
            tracing::info!(
                percent = format!("{percent:.1}"),
                rows = self.rows,
                rows_per_second = rate.round() as u64,
                seconds_left = eta as u64,
                "building rollups from the interaction log"
            );
        }
    }

    pub fn finish(&self) {
        if self.terminal && self.shown.is_some() {
            eprintln!();
        }
    }
}
