//! Multi-row statements in a few fixed sizes.
//!
//! Every distinct row count is a distinct prepared statement (MySQL caps them server-wide, and
//! each backend's statement cache holds only so many), so a batch of 300 rows is written as
//! 256 + 16 + 16 + 4 + 4 + 4 rows, not as one statement of 300.

const SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// Split `items` into consecutive chunks whose lengths are all in `SIZES`.
pub fn fixed_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let size = SIZES.into_iter().find(|s| *s <= items.len()).unwrap_or(1);
        let (head, tail) = items.split_at(size);
        items = tail;
        Some(head)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_everything_in_fixed_sizes() {
        for n in 0..700 {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = fixed_chunks(&items).collect();
            assert!(chunks.iter().all(|c| SIZES.contains(&c.len())), "n={n}");
            let flat: Vec<usize> = chunks.concat();
            assert_eq!(flat, items);
        }
        let lens: Vec<usize> = fixed_chunks(&[0; 300]).map(<[_]>::len).collect();
        assert_eq!(lens, [256, 16, 16, 4, 4, 4]);
    }
}
