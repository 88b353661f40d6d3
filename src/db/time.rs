//! Times as every store writes and compares them.

use time::OffsetDateTime;

/// The stores' text form of a time: `YYYY-MM-DD HH:MM:SS` in UTC, as MySQL DATETIME prints it,
/// so it sorts as text and compares the same on every backend.
pub fn db_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A store time (`YYYY-MM-DD HH:MM:SS`, UTC) as a time.
pub fn parse_db_time(text: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(text, format)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_time_is_utc_and_fixed_width() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.678 +09:00);
        assert_eq!(db_time(t), "2026-01-01 18:04:05");
    }
}
