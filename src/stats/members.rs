//! Unique and top members of a window, counted here from what `Dialect::members` reads: the
//! window's current member packs (`db/member_pack.rs`), the member rows of its other whole
//! hours and the clicks of its raw edges (docs/rollups.md "Member packs").
//!
//! Counting in SQL needed one row per member-hour; a pack is a few bytes per member-hour,
//! decoded into an array indexed by member number, so a window of millions of clicks is
//! counted in tens of milliseconds. The figures are those of a `GROUP BY line_id` over the raw
//! rows: a member is one uid, ties in the top list are broken by uid in byte order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::db::member_pack::{self, PackError};

/// One row of `Dialect::members`: a pack, or (uid, its number if it has one, clicks).
pub type MemberRow = (Option<Vec<u8>>, Option<String>, Option<i64>, i64);

/// Clicks per member number: an array when the numbers are dense enough, else a map.
#[derive(Clone)]
enum ByNumber {
    Dense(Vec<u32>),
    Sparse(HashMap<u64, u64>),
}

impl ByNumber {
    /// A pack's members, deciding the representation once per pack, not per member (a
    /// window decodes millions).
    fn add_pack(&mut self, body: &[u8]) -> Result<(), PackError> {
        match self {
            ByNumber::Dense(counts) => member_pack::for_each(body, |n, c| add_dense(counts, n, c)),
            ByNumber::Sparse(counts) => {
                member_pack::for_each(body, |n, c| *counts.entry(n).or_default() += c)
            }
        }
    }

    /// An array while the largest number is within reach of the members counted (a few
    /// members with large numbers would otherwise allocate megabytes), else a map; switched
    /// as the window's rows arrive, so the numbers need not be known before counting.
    fn fit(&mut self, max: u64, entries: u64) {
        let dense = max < DENSE_MAX && max <= entries.saturating_mul(8) + 65_536;
        match self {
            ByNumber::Dense(counts) if dense => {
                let needed = max as usize + 1;
                if counts.len() < needed {
                    // Doubling: a window whose numbers grow pack by pack copies the array
                    // a few times, not once per pack.
                    let grown = needed.max(counts.len() * 2).min(DENSE_MAX as usize);
                    counts.resize(grown, 0);
                }
            }
            ByNumber::Dense(counts) => *self = ByNumber::Sparse(counted(counts).collect()),
            ByNumber::Sparse(counts) if dense => {
                let mut array = vec![0u32; max as usize + 1];
                for (n, c) in counts.drain() {
                    add_dense(&mut array, n, c);
                }
                *self = ByNumber::Dense(array);
            }
            ByNumber::Sparse(_) => {}
        }
    }
}

/// The (number, clicks) of an array's members that clicked.
fn counted(counts: &[u32]) -> impl Iterator<Item = (u64, u64)> + '_ {
    counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(n, c)| (n as u64, u64::from(*c)))
}

#[inline(always)]
fn add_dense(counts: &mut [u32], number: u64, clicks: u64) {
    if let Some(count) = counts.get_mut(number as usize) {
        *count = count.saturating_add(u32::try_from(clicks).unwrap_or(u32::MAX));
    }
}

/// The members of a window and their clicks.
#[derive(Clone)]
pub struct Tally {
    by_number: ByNumber,
    /// The largest member number counted, and roughly how many (member, clicks) entries:
    /// what `ByNumber::fit` decides from.
    max: u64,
    entries: u64,
    /// Uids of numbers seen in rows (packs hold numbers only).
    named: HashMap<u64, String>,
    /// Members without a number yet (never packed): by uid.
    unnumbered: HashMap<String, u64>,
    /// Every click counted: a pack's row carries the member clicks it covers, so this is
    /// the window's member clicks as the rows read them (`member_cache.rs` compares it).
    clicks: u64,
}

/// What `Tally::rank` found.
#[derive(Debug, PartialEq, Eq)]
pub struct Ranking {
    /// Distinct members.
    pub unique: i64,
    /// The clicks of the last place of the top list (ties included).
    pub last_place: u64,
    /// Numbers above the last place whose uid the rows did not give (fewer than `n`).
    pub above_unnamed: Vec<u64>,
    /// The numbers at the last place (which of them are listed depends on their uids; a
    /// short window ties most of its members), or `None`: more than the limit.
    pub tied: Option<Vec<u64>>,
}

/// Largest array of counters (4 bytes each) worth allocating for one window.
const DENSE_MAX: u64 = 16 << 20;

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            by_number: ByNumber::Dense(Vec::new()),
            max: 0,
            entries: 0,
            named: HashMap::new(),
            unnumbered: HashMap::new(),
            clicks: 0,
        }
    }
}

impl Tally {
    /// The tally of `rows` (`add_row` of each).
    #[cfg(test)]
    pub fn of(rows: Vec<MemberRow>) -> Result<Tally, PackError> {
        let mut tally = Tally::default();
        for row in rows {
            tally.add_row(row)?;
        }
        Ok(tally)
    }

    /// Count one row of `Dialect::members` as it arrives: the reader counts a window's
    /// packs while the database is still reading the next ones (the two halves of a long
    /// window's time, on two cores).
    pub fn add_row(&mut self, (body, line_id, number, clicks): MemberRow) -> Result<(), PackError> {
        let clicks = u64::try_from(clicks).unwrap_or(0);
        self.clicks = self.clicks.saturating_add(clicks);
        match (body, number.and_then(|n| u64::try_from(n).ok()), line_id) {
            (Some(body), _, _) => {
                let (members, max) = member_pack::header(&body)?;
                self.grow(max, members);
                self.by_number.add_pack(&body)?;
            }
            (None, Some(n), line_id) => {
                self.grow(n, 1);
                self.add(n, clicks);
                if let Some(line_id) = line_id {
                    self.named.entry(n).or_insert(line_id);
                }
            }
            (None, None, Some(line_id)) => {
                *self.unnumbered.entry(line_id).or_default() += clicks;
            }
            (None, None, None) => {}
        }
        Ok(())
    }

    /// Add the counts of `other` (another part of the same window): the same as counting
    /// its rows here.
    pub fn absorb(&mut self, other: Tally) {
        self.clicks = self.clicks.saturating_add(other.clicks);
        self.grow(other.max, other.entries);
        for (number, clicks) in other.numbered() {
            self.add(number, clicks);
        }
        for (number, uid) in other.named {
            self.named.entry(number).or_insert(uid);
        }
        for (uid, clicks) in other.unnumbered {
            *self.unnumbered.entry(uid).or_default() += clicks;
        }
    }

    /// The member clicks counted.
    pub fn clicks(&self) -> u64 {
        self.clicks
    }

    /// A copy to keep for later requests (`member_cache.rs`): the counts by number only.
    /// Numbers never change hands, but an erasure renames a number's uid, so uids are read
    /// again when a later request ranks; `None` when a member had no number yet (a later
    /// request could meet it with one, and count it twice).
    pub fn to_keep(&self) -> Option<Tally> {
        self.unnumbered.is_empty().then(|| Tally {
            by_number: self.by_number.clone(),
            max: self.max,
            entries: self.entries,
            named: HashMap::new(),
            unnumbered: HashMap::new(),
            clicks: self.clicks,
        })
    }

    /// Roughly the bytes this tally holds (what a cache of them weighs).
    pub fn bytes(&self) -> usize {
        let counts = match &self.by_number {
            ByNumber::Dense(counts) => counts.capacity() * 4,
            ByNumber::Sparse(counts) => counts.capacity() * 24,
        };
        counts + (self.named.len() + self.unnumbered.len()) * 64
    }

    /// Make room for member number `max` and `entries` more members.
    fn grow(&mut self, max: u64, entries: u64) {
        self.max = self.max.max(max);
        self.entries = self.entries.saturating_add(entries);
        self.by_number.fit(self.max, self.entries);
    }

    fn add(&mut self, number: u64, clicks: u64) {
        match &mut self.by_number {
            ByNumber::Dense(counts) => add_dense(counts, number, clicks),
            ByNumber::Sparse(counts) => *counts.entry(number).or_default() += clicks,
        }
    }

    /// The clicks counted for a member number (0: none).
    pub fn clicks_of(&self, number: u64) -> u64 {
        match &self.by_number {
            ByNumber::Dense(counts) => usize::try_from(number)
                .ok()
                .and_then(|n| counts.get(n))
                .map_or(0, |c| u64::from(*c)),
            ByNumber::Sparse(counts) => counts.get(&number).copied().unwrap_or(0),
        }
    }

    /// Every (number, clicks) counted.
    fn numbered(&self) -> Box<dyn Iterator<Item = (u64, u64)> + '_> {
        match &self.by_number {
            ByNumber::Dense(counts) => Box::new(counted(counts)),
            ByNumber::Sparse(counts) => Box::new(counts.iter().map(|(n, c)| (*n, *c))),
        }
    }

    /// Where the top `n` ends and which member numbers need their uid read to list it, in
    /// two passes over the counts (a window can count hundreds of thousands of members).
    /// `tied_limit`: past this many numbers at the last place, `tied` is `None` and the
    /// caller reads uids in order instead of looking every tied number up.
    pub fn rank(&self, n: usize, tied_limit: usize) -> Ranking {
        let (last_place, unique) = self.last_place(n);
        let mut above_unnamed = Vec::new();
        let mut tied = Some(Vec::new());
        for (number, c) in self.numbered() {
            if c > last_place && !self.named.contains_key(&number) {
                above_unnamed.push(number);
            } else if c == last_place
                && let Some(list) = &mut tied
            {
                if list.len() < tied_limit {
                    list.push(number);
                } else {
                    tied = None;
                }
            }
        }
        Ranking {
            unique: i64::try_from(unique).unwrap_or(i64::MAX),
            last_place,
            above_unnamed,
            tied,
        }
    }

    /// The clicks a member needs to be among the top `n` (ties included): the `n`th highest
    /// (1 with fewer members); and how many members there are.
    fn last_place(&self, n: usize) -> (u64, usize) {
        let mut highest: BinaryHeap<Reverse<u64>> = BinaryHeap::with_capacity(n + 1);
        let mut members = 0;
        let counts = self.numbered().map(|(_, c)| c);
        for c in counts.chain(self.unnumbered.values().copied()) {
            members += 1;
            if highest.len() < n {
                highest.push(Reverse(c));
            } else if highest.peek().is_some_and(|Reverse(low)| c > *low) {
                highest.pop();
                highest.push(Reverse(c));
            }
        }
        let last_place = match highest.peek() {
            Some(Reverse(c)) if highest.len() == n => *c,
            _ => 1,
        };
        (last_place, members)
    }

    /// The top `n` as (uid, clicks), most clicks first, ties by uid, for the `last_place` of
    /// `rank`. `names` holds the uids of `above_unnamed` and, of the tied numbers, either all
    /// or at least the first `n` in uid order (the others cannot be listed). A number above
    /// the last place without a uid is an error the caller reports.
    pub fn top(
        &self,
        n: usize,
        last_place: u64,
        names: &HashMap<u64, String>,
    ) -> Result<Vec<(String, i64)>, u64> {
        let mut candidates: Vec<(String, u64)> = Vec::new();
        for (number, c) in self.numbered().filter(|(_, c)| *c > last_place) {
            match self.named.get(&number).or_else(|| names.get(&number)) {
                Some(name) => candidates.push((name.clone(), c)),
                None => return Err(number),
            }
        }
        // At the last place, only the uids known can be listed: look those up rather than
        // walk every tied number (a short window ties most of its members).
        let known = self.named.iter().chain(
            names
                .iter()
                .filter(|(number, _)| !self.named.contains_key(number)),
        );
        for (number, name) in known {
            if self.clicks_of(*number) == last_place {
                candidates.push((name.clone(), last_place));
            }
        }
        candidates.extend(
            self.unnumbered
                .iter()
                .filter(|(_, c)| **c >= last_place)
                .map(|(name, c)| (name.clone(), *c)),
        );
        candidates.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        candidates.truncate(n);
        Ok(candidates
            .into_iter()
            .map(|(name, c)| (name, i64::try_from(c).unwrap_or(i64::MAX)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pack(members: &[(u64, u64)]) -> MemberRow {
        (Some(member_pack::encode(members)), None, None, 0)
    }

    fn row(line_id: &str, number: Option<i64>, clicks: i64) -> MemberRow {
        (None, Some(line_id.to_owned()), number, clicks)
    }

    #[test]
    fn packs_rows_and_unnumbered_members_count_once_each() {
        let rows = vec![
            pack(&[(1, 2), (3, 1)]),
            pack(&[(1, 1), (7, 4)]),
            row("U3", Some(3), 5),
            row("Unew", None, 2),
            row("Unew", None, 1),
        ];
        let tally = Tally::of(rows).expect("valid packs");
        // U3 6, U7 4, U1 3, Unew 3: the third place is a tie, broken by uid.
        let ranking = tally.rank(3, 10);
        assert_eq!(
            ranking,
            Ranking {
                unique: 4,
                last_place: 3,
                above_unnamed: vec![7],
                tied: Some(vec![1]),
            }
        );
        assert_eq!(
            tally.rank(3, 0).tied,
            None,
            "more tied numbers than the limit"
        );
        let names = HashMap::from([(1, "U1".to_owned()), (7, "U7".to_owned())]);
        assert_eq!(
            tally.top(3, 3, &names),
            Ok(vec![
                ("U3".to_owned(), 6),
                ("U7".to_owned(), 4),
                ("U1".to_owned(), 3),
            ])
        );
        assert_eq!(tally.top(3, 3, &HashMap::new()), Err(7));
        // A tied number whose uid was not read is after the tied ones that were.
        let only_above = HashMap::from([(7, "U7".to_owned())]);
        assert_eq!(
            tally.top(3, 3, &only_above),
            Ok(vec![
                ("U3".to_owned(), 6),
                ("U7".to_owned(), 4),
                ("Unew".to_owned(), 3),
            ])
        );
    }

    #[test]
    fn a_tied_member_known_twice_is_listed_once() {
        // All three tie at 2 clicks; U3's uid came with its row and is also among the names
        // read, number 2's was not read (it is after the others in uid order).
        let rows = vec![
            pack(&[(1, 2), (2, 1)]),
            pack(&[(2, 1)]),
            row("U3", Some(3), 2),
        ];
        let tally = Tally::of(rows).expect("valid packs");
        assert_eq!(tally.rank(3, 10).last_place, 2);
        let names = HashMap::from([(1, "U1".to_owned()), (3, "U3".to_owned())]);
        assert_eq!(
            tally.top(3, 2, &names),
            Ok(vec![("U1".to_owned(), 2), ("U3".to_owned(), 2)])
        );
    }

    #[test]
    fn sparse_numbers_are_counted_in_a_map() {
        let rows = vec![pack(&[(5, 1), (DENSE_MAX + 9, 2)]), row("Ux", Some(5), 1)];
        let tally = Tally::of(rows).expect("valid packs");
        assert!(matches!(tally.by_number, ByNumber::Sparse(_)));
        let ranking = tally.rank(10, 10);
        assert_eq!((ranking.unique, ranking.last_place), (2, 1));
        let names = HashMap::from([(DENSE_MAX + 9, "Uy".to_owned())]);
        assert_eq!(
            tally.top(10, 1, &names),
            Ok(vec![("Ux".to_owned(), 2), ("Uy".to_owned(), 2)])
        );
    }

    /// Rows as the database returns them: packs, numbered and unnumbered member rows, in
    /// any order and with numbers small and past `DENSE_MAX`, so the tally switches between
    /// the array and the map while it counts.
    fn any_rows() -> impl Strategy<Value = Vec<MemberRow>> {
        let number = prop_oneof![0u64..300, 0u64..200_000, DENSE_MAX - 5..DENSE_MAX + 5];
        let a_pack = proptest::collection::btree_map(number.clone(), 1u64..50, 0..40)
            .prop_map(|members| pack(&members.into_iter().collect::<Vec<_>>()));
        let a_row = (number, 1i64..50, proptest::option::of(0u8..5)).prop_map(|(n, c, name)| {
            let uid = name.map(|k| format!("U{k}"));
            (None, uid, Some(n as i64), c)
        });
        let unnumbered = (0u8..5, 1i64..50).prop_map(|(k, c)| row(&format!("N{k}"), None, c));
        proptest::collection::vec(prop_oneof![a_pack, a_row, unnumbered], 0..30)
    }

    proptest! {
        #[test]
        fn counting_rows_as_they_arrive_is_a_plain_sum(rows in any_rows()) {
            let mut expected: HashMap<u64, u64> = HashMap::new();
            let mut unnumbered: HashMap<String, u64> = HashMap::new();
            for (body, line_id, number, clicks) in &rows {
                match (body, number) {
                    (Some(body), _) => member_pack::for_each(body, |n, c| {
                        *expected.entry(n).or_default() += c;
                    })
                    .expect("valid pack"),
                    (None, Some(n)) => *expected.entry(*n as u64).or_default() += *clicks as u64,
                    (None, None) => {
                        let uid = line_id.clone().expect("a row has a uid");
                        *unnumbered.entry(uid).or_default() += *clicks as u64;
                    }
                }
            }
            let tally = Tally::of(rows).expect("valid rows");
            for (n, c) in &expected {
                prop_assert_eq!(tally.clicks_of(*n), *c);
            }
            let mut counted: Vec<(u64, u64)> = tally.numbered().collect();
            counted.sort_unstable();
            let mut want: Vec<(u64, u64)> = expected.into_iter().collect();
            want.sort_unstable();
            prop_assert_eq!(counted, want.clone());
            prop_assert_eq!(&tally.unnumbered, &unnumbered);
            let ranking = tally.rank(10, 10);
            prop_assert_eq!(ranking.unique as usize, want.len() + unnumbered.len());
        }
    }

    proptest! {
        #[test]
        fn a_window_counted_in_two_parts_is_counted_as_one(
            rows in any_rows(),
            cut in 0usize..30,
        ) {
            let cut = cut.min(rows.len());
            let whole = Tally::of(rows.clone()).expect("valid rows");
            let mut first = Tally::of(rows[..cut].to_vec()).expect("valid rows");
            first.absorb(Tally::of(rows[cut..].to_vec()).expect("valid rows"));
            let sorted = |tally: &Tally| {
                let mut counts: Vec<(u64, u64)> = tally.numbered().collect();
                counts.sort_unstable();
                counts
            };
            prop_assert_eq!(sorted(&first), sorted(&whole));
            prop_assert_eq!(&first.unnumbered, &whole.unnumbered);
            prop_assert_eq!(first.clicks(), whole.clicks());
            // (The order of the numbers in a ranking is the representation's: an array's or
            // a map's.)
            let ranked = |tally: &Tally| {
                let mut ranking = tally.rank(10, 10);
                ranking.above_unnamed.sort_unstable();
                if let Some(tied) = &mut ranking.tied {
                    tied.sort_unstable();
                }
                ranking
            };
            prop_assert_eq!(ranked(&first), ranked(&whole));
        }
    }

    #[test]
    fn a_kept_tally_holds_numbers_and_clicks_not_uids() {
        let mut pack_row = pack(&[(1, 2), (4, 1)]);
        pack_row.3 = 3;
        let rows = vec![pack_row, row("U9", Some(9), 5)];
        let tally = Tally::of(rows).expect("valid packs");
        assert_eq!(
            tally.clicks(),
            8,
            "a pack's row carries the clicks it covers"
        );
        let kept = tally.to_keep().expect("every member has a number");
        assert_eq!(kept.clicks(), 8);
        assert_eq!(kept.clicks_of(9), 5);
        assert!(kept.named.is_empty(), "an erasure may rename U9 later");
        // Ranking a kept tally asks for the uid again.
        assert_eq!(tally.rank(2, 10).above_unnamed, Vec::<u64>::new());
        assert_eq!(kept.rank(2, 10).above_unnamed, vec![9]);

        let with_new_member = Tally::of(vec![row("Unew", None, 1)]).expect("rows");
        assert!(
            with_new_member.to_keep().is_none(),
            "a member without a number could be met again with one"
        );
    }

    #[test]
    fn a_damaged_pack_is_an_error() {
        let rows = vec![(Some(vec![1, 3, 0]), None, None, 0)];
        assert!(Tally::of(rows).is_err());
    }
}
