//! Tags: the `tag` parameter's normal form, its limits, and the merge into a summary row.
//!
//! The merge is the rule the old endpoint lost under concurrency (P1): the stored
//! `last_click_tag` becomes the existing tags followed by each new tag once, in arrival order.
//! Stores call `merge_tags` while they hold the summary row, so the result is exact.

/// At most this many tags on one click (docs/link-contract.md).
pub const MAX_TAGS_PER_CLICK: usize = 20;
/// At most this many bytes per tag (docs/link-contract.md).
pub const MAX_TAG_BYTES: usize = 64;
/// The capacity of `ryan_click_demo.last_click_tag` in the schema clicktrack creates.
pub const LAST_CLICK_TAG_MAX_BYTES: usize = 1024;

/// Why a click's tags cannot be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagError {
    TooMany,
    TooLong,
}

/// Split on commas, trim, drop empties and repeats, keep the first-seen order
/// (the seed's `normalize_tags`).
pub fn normalize_tags(raw: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in raw.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if !out.iter().any(|seen| seen == tag) {
            out.push(tag.to_owned());
        }
    }
    out
}

/// `normalize_tags` plus the per-click limits.
pub fn parse_click_tags(raw: &str) -> Result<Vec<String>, TagError> {
    let tags = normalize_tags(raw);
    if tags.len() > MAX_TAGS_PER_CLICK {
        return Err(TagError::TooMany);
    }
    if tags.iter().any(|t| t.len() > MAX_TAG_BYTES) {
        return Err(TagError::TooLong);
    }
    Ok(tags)
}

/// The result of merging new tags into a stored `last_click_tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedTags {
    /// The new column value (`None` when there are no tags at all, as the old code stored NULL).
    pub value: Option<String>,
    /// New tags left out because the column was full.
    pub dropped: usize,
}

/// Existing tags, then each incoming tag not yet present, as long as the result fits in
/// `max_bytes`. Existing tags are never removed, even when legacy data already overflows.
pub fn merge_tags<'a>(
    existing: Option<&str>,
    incoming: impl IntoIterator<Item = &'a str>,
    max_bytes: usize,
) -> MergedTags {
    let mut tags = normalize_tags(existing.unwrap_or(""));
    let mut len = joined_len(&tags);
    let mut dropped = 0;
    for tag in incoming {
        if tags.iter().any(|t| t == tag) {
            continue;
        }
        let added = if tags.is_empty() {
            tag.len()
        } else {
            tag.len() + 1
        };
        if len + added > max_bytes {
            dropped += 1;
            continue;
        }
        len += added;
        tags.push(tag.to_owned());
    }
    MergedTags {
        value: (!tags.is_empty()).then(|| tags.join(",")),
        dropped,
    }
}

fn joined_len(tags: &[String]) -> usize {
    tags.iter().map(String::len).sum::<usize>() + tags.len().saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The seed's test_tag_merge cases.
    #[test]
    fn normalize_tags_matches_the_seed() {
        assert_eq!(normalize_tags("A,B,C"), ["A", "B", "C"]);
        assert_eq!(normalize_tags("A, B , C "), ["A", "B", "C"]);
        assert_eq!(normalize_tags("A,A,B,B"), ["A", "B"]);
        assert_eq!(normalize_tags("A,,B,,"), ["A", "B"]);
        assert!(normalize_tags("").is_empty());
    }

    #[test]
    fn click_tag_limits() {
        let twenty: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
        assert_eq!(parse_click_tags(&twenty.join(",")).map(|t| t.len()), Ok(20));
        let twenty_one = format!("{},extra", twenty.join(","));
        assert_eq!(parse_click_tags(&twenty_one), Err(TagError::TooMany));
        assert_eq!(parse_click_tags(&"x".repeat(64)).map(|t| t.len()), Ok(1));
        assert_eq!(parse_click_tags(&"x".repeat(65)), Err(TagError::TooLong));
        // repeats do not count against the limit
        assert_eq!(parse_click_tags(&"A,".repeat(50)).map(|t| t.len()), Ok(1));
    }

    #[test]
    fn merge_keeps_existing_then_appends_new_once() {
        let m = merge_tags(Some("A,B"), ["B", "C", "A", "D"], 1024);
        assert_eq!(m.value.as_deref(), Some("A,B,C,D"));
        assert_eq!(m.dropped, 0);
        assert_eq!(merge_tags(None, [], 1024).value, None);
        assert_eq!(
            merge_tags(Some(" A , ,B"), [], 1024).value.as_deref(),
            Some("A,B")
        );
    }

    #[test]
    fn merge_never_exceeds_the_column() {
        let m = merge_tags(Some("AAAA"), ["BB", "CCCC", "D"], 9);
        // "AAAA,BB" is 7 bytes; ",CCCC" would make 12; ",D" makes 9.
        assert_eq!(m.value.as_deref(), Some("AAAA,BB,D"));
        assert_eq!(m.dropped, 1);
        // legacy overflow is kept, new tags are dropped
        let m = merge_tags(Some("AAAAAAAAAAAA"), ["B"], 9);
        assert_eq!(m.value.as_deref(), Some("AAAAAAAAAAAA"));
        assert_eq!(m.dropped, 1);
    }
}
