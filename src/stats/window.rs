//! The time window of a stats request: `from`, `to` and `bucket` parsed and checked, and the
//! list of buckets the time series is zero-filled with. Everything is UTC; the dashboard turns
//! bucket starts into the browser's time zone.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime, Time, UtcOffset};

use crate::db::db_time;

/// The window when no `from` is given (`clicktrack stats --since` has the same default).
pub const DEFAULT_SPAN: Duration = Duration::days(7);
/// Most buckets one series may have: a year of days, or 83 days of hours.
pub const MAX_BUCKETS: i64 = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    /// `hour` for windows up to two days, `day` beyond.
    fn for_span(span: Duration) -> Bucket {
        if span <= Duration::days(2) {
            Bucket::Hour
        } else {
            Bucket::Day
        }
    }

    fn step(self) -> Duration {
        match self {
            Bucket::Hour => Duration::HOUR,
            Bucket::Day => Duration::DAY,
        }
    }

    /// The bucket `t` falls in.
    fn floor(self, t: OffsetDateTime) -> OffsetDateTime {
        let hour = match self {
            Bucket::Hour => t.hour(),
            Bucket::Day => 0,
        };
        t.replace_time(Time::from_hms(hour, 0, 0).unwrap_or(Time::MIDNIGHT))
    }

    /// The label the SQL gives a bucket: a prefix of `db_time`.
    fn label(self, start: OffsetDateTime) -> String {
        let mut text = db_time(start);
        text.truncate(match self {
            Bucket::Hour => 13,
            Bucket::Day => 10,
        });
        text
    }
}

/// `[from, to)`, whole seconds, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub bucket: Bucket,
}

impl Window {
    /// From the API's query parameters. `to` defaults to now (the end of this second), `from` to `to` − 7 days, `bucket`
    /// to `hour` for windows up to two days and `day` beyond.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        bucket: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Window, String> {
        let (from, to) = parse_range(from, to, now)?;
        let bucket = match bucket {
            Some("hour") => Some(Bucket::Hour),
            Some("day") => Some(Bucket::Day),
            Some(other) => return Err(format!("bucket: {other:?} is not hour or day")),
            None => None,
        };
        Window::new(from, to, bucket)
    }

    /// The last `span` up to now (the CLI's `--since`), in whole buckets: "the last 7 days"
    /// is today and the 6 days before it (7 rows, not a partial 8th), "the last day" this hour
    /// and the 23 before it. A span shorter than one bucket is that span.
    pub fn since(span: Duration, now: OffsetDateTime) -> Result<Window, String> {
        let to = end_of_now(now);
        let start = to - span;
        let bucket = Bucket::for_span(span);
        let floor = bucket.floor(start);
        let from = if floor == start || floor + bucket.step() >= to {
            start
        } else {
            floor + bucket.step()
        };
        Window::new(from, to, Some(bucket))
    }

    /// Without a bucket: `hour` for windows up to two days, `day` beyond.
    fn new(
        from: OffsetDateTime,
        to: OffsetDateTime,
        bucket: Option<Bucket>,
    ) -> Result<Window, String> {
        let bucket = bucket.unwrap_or(Bucket::for_span(to - from));
        let window = Window { from, to, bucket };
        let count = window.bucket_count();
        if count > MAX_BUCKETS {
            let unit = match bucket {
                Bucket::Hour => "hour",
                Bucket::Day => "day",
            };
            return Err(format!(
                "{count} {unit} buckets between from and to (at most {MAX_BUCKETS}): \
                 use a shorter range or bucket=day"
            ));
        }
        Ok(window)
    }

    /// The bounds as the store's text form.
    pub fn bounds(&self) -> (String, String) {
        (db_time(self.from), db_time(self.to))
    }

    /// This window with each edge before `horizon` (an hour boundary: the purge horizon)
    /// widened to the hour it falls in: `from` down, `to` up. The rollups hold those hours
    /// whole; the raw rows to count a part of one are gone.
    pub fn whole_hours_before(&self, horizon: OffsetDateTime) -> Window {
        let hour = |t: OffsetDateTime| Bucket::Hour.floor(t);
        let from = if self.from < horizon {
            hour(self.from)
        } else {
            self.from
        };
        let to = if self.to < horizon && hour(self.to) < self.to {
            hour(self.to) + Duration::HOUR
        } else {
            self.to
        };
        Window {
            from,
            to,
            bucket: self.bucket,
        }
    }

    /// The start of the window's first whole hour: where `split`'s hours and
    /// `settled_hours` begin.
    fn first_whole_hour(&self) -> OffsetDateTime {
        let start = Bucket::Hour.floor(self.from);
        if start < self.from {
            start + Duration::HOUR
        } else {
            start
        }
    }

    /// The first whole hours of this window, up to the last that ended `settle` before
    /// `now` (hours a journal's late clicks no longer reach, as a rule): the part a later
    /// request for the same window may count from a kept tally (`member_cache.rs`). `None`
    /// when that is shorter than `at_least`.
    pub fn settled_hours(
        &self,
        now: OffsetDateTime,
        settle: Duration,
        at_least: Duration,
    ) -> Option<Window> {
        let hour = |t: OffsetDateTime| Bucket::Hour.floor(t);
        let from = self.first_whole_hour();
        let to = hour(self.to).min(hour(now - settle));
        (to - from >= at_least).then_some(Window {
            from,
            to,
            bucket: Bucket::Hour,
        })
    }

    /// The window cut for the rollups (`Split`).
    pub fn split(&self) -> Split {
        let hour = |t: OffsetDateTime| Bucket::Hour.floor(t);
        let mut mid_from = self.first_whole_hour();
        let mut mid_to = hour(self.to);
        if mid_from >= mid_to {
            // No whole hour inside: all of it from the raw log.
            (mid_from, mid_to) = (self.to, self.to);
        }
        // The whole days inside the whole hours; none: an empty range at mid_to.
        let day = |t: OffsetDateTime| Bucket::Day.floor(t);
        let mut day_from = day(mid_from);
        if day_from < mid_from {
            day_from += Duration::DAY;
        }
        let mut day_to = day(mid_to);
        if day_from >= day_to {
            (day_from, day_to) = (mid_to, mid_to);
        }
        Split {
            from: db_time(self.from),
            mid_from: db_time(mid_from),
            day_from: db_time(day_from),
            day_to: db_time(day_to),
            mid_to: db_time(mid_to),
            to: db_time(self.to),
        }
    }

    fn bucket_count(&self) -> i64 {
        let span = self.to - self.bucket.floor(self.from);
        let step = self.bucket.step();
        (span.whole_seconds() + step.whole_seconds() - 1) / step.whole_seconds()
    }

    /// Every bucket that overlaps the window, in order: (SQL label, start).
    pub fn buckets(&self) -> Vec<(String, OffsetDateTime)> {
        let mut out = Vec::new();
        let mut start = self.bucket.floor(self.from);
        while start < self.to {
            out.push((self.bucket.label(start), start));
            start += self.bucket.step();
        }
        out
    }
}

/// A window as the stats queries read it: the whole days `[day_from, day_to)` from the day
/// rollups, the other whole hours (`[mid_from, day_from)` and `[day_to, mid_to)`, less than a
/// day each) from the hour rollups, the seconds before (`[from, mid_from)`) and after
/// (`[mid_to, to)`) from the raw log, at most an hour each. All in the store's text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub from: String,
    pub mid_from: String,
    pub day_from: String,
    pub day_to: String,
    pub mid_to: String,
    pub to: String,
}

impl Split {
    /// Every whole hour from the hour rollups (an hour series; day rollups not built yet).
    pub fn without_days(mut self) -> Split {
        self.day_from.clone_from(&self.mid_to);
        self.day_to.clone_from(&self.mid_to);
        self
    }
}

/// `from` and `to` alone (the export has no buckets), with `parse`'s defaults and checks.
pub fn parse_range(
    from: Option<&str>,
    to: Option<&str>,
    now: OffsetDateTime,
) -> Result<(OffsetDateTime, OffsetDateTime), String> {
    let to = match to {
        Some(t) => parse_time(t).map_err(|e| format!("to: {e}"))?,
        None => end_of_now(now),
    };
    let from = match from {
        Some(f) => parse_time(f).map_err(|e| format!("from: {e}"))?,
        None => to - DEFAULT_SPAN,
    };
    if from >= to {
        return Err("from must be before to".into());
    }
    Ok((from, to))
}

/// RFC 3339 (`2026-11-25T09:00:00Z`, any offset) or a date (`2026-11-25`, midnight UTC).
pub fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339).or_else(|_| {
        Date::parse(text, format_description!("[year]-[month]-[day]"))
            .map(|d| d.midnight().assume_utc())
    });
    let t = parsed
        .map_err(|_| format!("{text:?} is not a date (2026-11-25) or an RFC 3339 time"))?
        .to_offset(UtcOffset::UTC);
    if !(1970..=9999).contains(&t.year()) {
        return Err(format!("{text:?} is outside the years 1970 to 9999"));
    }
    Ok(whole_seconds(t))
}

pub use crate::db::parse_db_time;

/// The API's form of a store time: `2026-11-25 09:00:00` → `2026-11-25T09:00:00Z`.
pub fn api_time(db_text: &str) -> String {
    match db_text.split_once(' ') {
        Some((date, time)) => format!("{date}T{time}Z"),
        None => db_text.to_owned(),
    }
}

/// RFC 3339 in UTC with a `Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    api_time(&db_time(t))
}

/// The end of the current second: `to` is exclusive and stored times are whole seconds, so a
/// click made this second is inside a window that ends "now".
fn end_of_now(now: OffsetDateTime) -> OffsetDateTime {
    whole_seconds(now) + Duration::SECOND
}

fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-25 10:30:15.5 UTC);

    #[test]
    fn defaults_to_the_last_seven_days_by_day() {
        let w = Window::parse(None, None, None, NOW).expect("valid");
        assert_eq!(w.to, datetime!(2026-11-25 10:30:16 UTC));
        assert_eq!(w.from, datetime!(2026-11-18 10:30:16 UTC));
        assert_eq!(w.bucket, Bucket::Day);
        let buckets = w.buckets();
        assert_eq!(buckets.len(), 8, "a partial first and last day");
        assert_eq!(buckets[0].0, "2026-11-18");
        assert_eq!(buckets[7].0, "2026-11-25");
    }

    #[test]
    fn hour_buckets_cover_the_window_and_match_the_sql_labels() {
        let w = Window::parse(
            Some("2026-11-25T10:15:00+09:00"),
            Some("2026-11-25"),
            None,
            NOW,
        );
        assert!(w.is_err(), "from after to: {w:?}");
        let w = Window::parse(
            Some("2026-11-24T22:15:00Z"),
            Some("2026-11-25T01:00:00Z"),
            Some("hour"),
            NOW,
        )
        .expect("valid");
        let labels: Vec<String> = w.buckets().into_iter().map(|(l, _)| l).collect();
        assert_eq!(
            labels,
            ["2026-11-24 22", "2026-11-24 23", "2026-11-25 00"],
            "to is exclusive"
        );
        assert_eq!(rfc3339(w.buckets()[2].1), "2026-11-25T00:00:00Z");
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        let err = |f: Option<&str>, t: Option<&str>, b: Option<&str>| {
            Window::parse(f, t, b, NOW).expect_err("invalid")
        };
        assert!(err(Some("yesterday"), None, None).starts_with("from: "));
        assert!(err(None, Some("2026-13-01"), None).starts_with("to: "));
        assert!(err(None, None, Some("week")).contains("not hour or day"));
        assert!(err(Some("1969-12-31"), None, None).contains("1970"));
        let too_many = err(Some("2026-01-01"), Some("2026-12-01"), Some("hour"));
        assert!(too_many.contains("at most 2000"), "{too_many}");
        assert!(Window::parse(Some("2026-01-01"), Some("2026-12-01"), None, NOW).is_ok());
    }

    #[test]
    fn since_is_whole_buckets_ending_with_the_current_one() {
        let week = Window::since(Duration::days(7), NOW).expect("valid");
        assert_eq!(week.bucket, Bucket::Day);
        assert_eq!(week.from, datetime!(2026-11-19 00:00 UTC));
        assert_eq!(week.buckets().len(), 7);
        let day = Window::since(Duration::days(1), NOW).expect("valid");
        assert_eq!(day.bucket, Bucket::Hour);
        assert_eq!(day.from, datetime!(2026-11-24 11:00 UTC));
        assert_eq!(day.buckets().len(), 24);
        // Shorter than a bucket: just that span.
        let minutes = Window::since(Duration::minutes(10), NOW).expect("valid");
        assert_eq!(minutes.from, datetime!(2026-11-25 10:20:16 UTC));
        assert_eq!(minutes.buckets().len(), 1);
    }

    #[test]
    fn a_window_splits_into_whole_hours_and_raw_edges() {
        let split = |f: &str, t: &str| {
            let w = Window::parse(Some(f), Some(t), None, NOW).expect("valid");
            let s = w.split();
            (s.from, s.mid_from, s.mid_to, s.to)
        };
        assert_eq!(
            split("2026-11-24T22:15:00Z", "2026-11-25T01:00:05Z"),
            (
                "2026-11-24 22:15:00".into(),
                "2026-11-24 23:00:00".into(),
                "2026-11-25 01:00:00".into(),
                "2026-11-25 01:00:05".into()
            )
        );
        let aligned = split("2026-11-24T22:00:00Z", "2026-11-25T01:00:00Z");
        assert_eq!(
            (aligned.1.as_str(), aligned.2.as_str()),
            ("2026-11-24 22:00:00", "2026-11-25 01:00:00")
        );
        // Within one hour, or across one boundary without a whole hour: all raw.
        for (f, t) in [
            ("2026-11-24T22:15:00Z", "2026-11-24T22:45:00Z"),
            ("2026-11-24T22:15:00Z", "2026-11-24T23:45:00Z"),
        ] {
            let (from, mid_from, mid_to, to) = split(f, t);
            assert_eq!((&mid_from, &mid_to), (&to, &to), "{f} {t}");
            assert!(from < to);
        }
    }

    #[test]
    fn whole_days_inside_the_whole_hours_come_from_the_day_rollups() {
        let days = |f: &str, t: &str| {
            let w = Window::parse(Some(f), Some(t), None, NOW).expect("valid");
            let s = w.split();
            (s.mid_from, s.day_from, s.day_to, s.mid_to)
        };
        assert_eq!(
            days("2026-11-20T22:15:00Z", "2026-11-24T03:30:00Z"),
            (
                "2026-11-20 23:00:00".into(),
                "2026-11-21 00:00:00".into(),
                "2026-11-24 00:00:00".into(),
                "2026-11-24 03:00:00".into()
            )
        );
        let aligned = days("2026-11-21T00:00:00Z", "2026-11-23T00:00:00Z");
        assert_eq!(aligned.0, aligned.1);
        assert_eq!(aligned.2, aligned.3);
        // Less than a whole day of whole hours: no day range (empty, at mid_to).
        let (mid_from, day_from, day_to, mid_to) =
            days("2026-11-20T13:15:00Z", "2026-11-21T12:30:00Z");
        assert_eq!((&day_from, &day_to), (&mid_to, &mid_to));
        assert_eq!(mid_from, "2026-11-20 14:00:00");
        let w = Window::parse(
            Some("2026-11-20T22:15:00Z"),
            Some("2026-11-24T03:30:00Z"),
            None,
            NOW,
        )
        .expect("valid");
        let hours = w.split().without_days();
        assert_eq!(
            (&hours.day_from, &hours.day_to),
            (&hours.mid_to, &hours.mid_to)
        );
    }

    #[test]
    fn edges_before_the_purge_horizon_widen_to_whole_hours() {
        let w = Window::parse(
            Some("2026-11-20T10:15:00Z"),
            Some("2026-11-20T12:30:00Z"),
            None,
            NOW,
        )
        .expect("valid");
        let horizon = datetime!(2026-11-20 11:00 UTC);
        let widened = w.whole_hours_before(horizon);
        assert_eq!(widened.from, datetime!(2026-11-20 10:00 UTC));
        assert_eq!(widened.to, w.to, "after the horizon: exact");
        let all_before = w.whole_hours_before(datetime!(2026-11-21 00:00 UTC));
        assert_eq!(all_before.to, datetime!(2026-11-20 13:00 UTC));
        assert_eq!(w.whole_hours_before(datetime!(2026-11-01 00:00 UTC)), w);
        assert_eq!(parse_db_time("2026-11-20 11:00:00"), Some(horizon));
    }

    #[test]
    fn settled_hours_are_whole_and_end_before_the_recent_ones() {
        let now = datetime!(2026-12-07 10:30 UTC);
        let window = Window {
            from: datetime!(2026-12-01 07:15 UTC),
            to: now,
            bucket: Bucket::Day,
        };
        let settled = window
            .settled_hours(now, Duration::hours(2), Duration::DAY)
            .expect("six days settled");
        assert_eq!(
            settled.bounds(),
            ("2026-12-01 08:00:00".into(), "2026-12-07 08:00:00".into())
        );
        // A window that ended long ago is settled to its last whole hour.
        let past = Window {
            from: datetime!(2026-11-01 00:00 UTC),
            to: datetime!(2026-11-03 05:59 UTC),
            bucket: Bucket::Hour,
        };
        let settled = past.settled_hours(now, Duration::hours(2), Duration::DAY);
        assert_eq!(
            settled.map(|w| w.bounds()),
            Some(("2026-11-01 00:00:00".into(), "2026-11-03 05:00:00".into()))
        );
        // Too short: nothing worth keeping.
        assert_eq!(
            past.settled_hours(now, Duration::hours(2), Duration::days(3)),
            None
        );
        let recent = Window {
            from: datetime!(2026-12-06 12:00 UTC),
            to: now,
            bucket: Bucket::Hour,
        };
        assert_eq!(
            recent.settled_hours(now, Duration::hours(2), Duration::DAY),
            None
        );
    }

    #[test]
    fn store_times_become_rfc3339() {
        assert_eq!(api_time("2026-11-25 09:00:00"), "2026-11-25T09:00:00Z");
    }
}
