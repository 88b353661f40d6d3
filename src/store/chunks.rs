//! Multi-row statements in a few fixed sizes.
//!
//! Every distinct row count is a distinct prepared statement (MySQL caps them server-wide, and
//! each connection's statement cache holds only so many), so statements are cut to a few
//! fixed sizes. Inserts are split into power-of-two chunks (a batch of 50 rows is 32 + 16 + 2);
//! `IN (...)` lists are padded up to the next size instead (repeating the last value changes
//! no result), so a lookup is one statement per batch.

/// Insert chunk sizes: powers of two, so any count needs at most one chunk of each.
const INSERT_SIZES: [usize; 10] = [512, 256, 128, 64, 32, 16, 8, 4, 2, 1];
/// `IN (...)` list sizes.
const LIST_SIZES: [usize; 5] = [4, 16, 64, 256, 1024];

/// Split `items` into consecutive chunks whose lengths are all in `INSERT_SIZES`.
pub fn fixed_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let size = INSERT_SIZES
            .into_iter()
            .find(|s| *s <= items.len())
            .unwrap_or(1);
        let (head, tail) = items.split_at(size);
        items = tail;
        Some(head)
    })
}

/// Split `items` into lists of at most 1024, each padded with its last value to a length in
/// `LIST_SIZES`.
pub fn padded_lists<T: Clone>(items: &[T]) -> impl Iterator<Item = Vec<T>> + '_ {
    items.chunks(LIST_SIZES[LIST_SIZES.len() - 1]).map(|chunk| {
        let size = LIST_SIZES
            .into_iter()
            .find(|s| *s >= chunk.len())
            .unwrap_or(chunk.len());
        let mut list = chunk.to_vec();
        if let Some(last) = chunk.last() {
            list.resize(size, last.clone());
        }
        list
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_everything_in_fixed_sizes() {
        for n in 0..1100 {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = fixed_chunks(&items).collect();
            assert!(
                chunks.iter().all(|c| INSERT_SIZES.contains(&c.len())),
                "n={n}"
            );
            assert_eq!(chunks.concat(), items);
        }
        let lens: Vec<usize> = fixed_chunks(&[0; 50]).map(<[_]>::len).collect();
        assert_eq!(lens, [32, 16, 2]);
    }

    #[test]
    fn lists_are_padded_to_fixed_sizes_with_the_last_value() {
        let lists: Vec<Vec<u32>> = padded_lists(&[1, 2, 3, 4, 5]).collect();
        assert_eq!(
            lists,
            [vec![1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5]]
        );
        for n in 1..3000 {
            let items: Vec<usize> = (0..n).collect();
            let lists: Vec<Vec<usize>> = padded_lists(&items).collect();
            assert!(lists.iter().all(|l| LIST_SIZES.contains(&l.len())), "n={n}");
            let mut seen: Vec<usize> = lists.concat();
            seen.dedup();
            assert_eq!(seen, items);
        }
        assert_eq!(padded_lists::<u8>(&[]).count(), 0);
    }
}
