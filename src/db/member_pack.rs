//! A member pack: one campaign-hour's members and their clicks in one compact value
//! (`track_rollup_member_packs.body`, docs/rollups.md "Member packs").
//!
//! Unique and top members of a window need every member of every hour in it; read as rows
//! (`track_rollup_members`) that is one row per member-hour, about a microsecond each, so a
//! campaign with millions of clicks took seconds per view. A pack holds the same hour as a few
//! bytes per member: members are numbered once (`track_rollup_member_ids`), and an hour is the
//! sorted list of (member number, clicks), delta- and varint-coded. The store writes packs
//! (`store/member_packs.rs`), the stats decode them (`stats/members.rs`); both sides share
//! this one format.
//!
//! Layout: a version byte, then varints: the number of members `n`, the largest member number,
//! then `n` members in ascending number:
//! - version `2` (written since): `(number minus the previous one) * 2 + 1` for a member with
//!   one click, the most common case by far (a member rarely clicks one campaign twice within
//!   an hour); `(number minus the previous one) * 2` followed by the clicks otherwise. One byte
//!   per member where members are dense: half of version 1, so half the bytes for a window to
//!   read and to decode (90 days of a campaign of 5,000,000 clicks: 5 MB instead of 10).
//! - version `1` (packs written by earlier releases, still read): pairs (number minus the
//!   previous one, clicks).
//!
//! Numbers strictly ascend and clicks are at least 1, so a damaged body is detected, never
//! misread as members.

use thiserror::Error;

/// Pairs of (delta, clicks).
const PAIRS: u8 = 1;
/// A delta with a one-click flag, clicks only when not one.
const FLAGGED: u8 = 2;

/// A body that is not a pack this release can read.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("damaged member pack ({0})")]
pub struct PackError(&'static str);

/// Encode `members`: (member number, clicks), in ascending member number.
pub fn encode(members: &[(u64, u64)]) -> Vec<u8> {
    let largest = members.last().map_or(0, |m| m.0);
    // A delta must fit beside its flag; member numbers are database ids (at most i64::MAX),
    // so only numbers no database hands out take the older layout.
    let version = if largest <= u64::MAX >> 1 {
        FLAGGED
    } else {
        PAIRS
    };
    let mut out = Vec::with_capacity(16 + members.len() * 2);
    out.push(version);
    put(&mut out, members.len() as u64);
    put(&mut out, largest);
    let mut previous = 0;
    for &(member, clicks) in members {
        let delta = member - previous;
        if version == PAIRS {
            put(&mut out, delta);
            put(&mut out, clicks);
        } else if clicks == 1 {
            put(&mut out, delta << 1 | 1);
        } else {
            put(&mut out, delta << 1);
            put(&mut out, clicks);
        }
        previous = member;
    }
    out
}

/// The number of members in `body` and the largest member number (to size a counter array
/// before decoding).
pub fn header(body: &[u8]) -> Result<(u64, u64), PackError> {
    let (_, mut at) = header_start(body)?;
    let members = take(body, &mut at)?;
    Ok((members, take(body, &mut at)?))
}

/// Call `each(member number, clicks)` for every member of `body`, in ascending number.
pub fn for_each(body: &[u8], each: impl FnMut(u64, u64)) -> Result<(), PackError> {
    let (version, mut at) = header_start(body)?;
    let members = take(body, &mut at)?;
    let max = take(body, &mut at)?;
    // One loop per layout, so the layout is not decided again for each of millions of members.
    let last = if version == FLAGGED {
        each_member::<true>(body, &mut at, members, each)?
    } else {
        each_member::<false>(body, &mut at, members, each)?
    };
    if at != body.len() {
        return Err(PackError("bytes after the last member"));
    }
    if members > 0 && last != max {
        return Err(PackError("largest member number does not match"));
    }
    Ok(())
}

/// The `members` members from `at` on; the last member number.
#[inline(always)]
fn each_member<const FLAGGED_LAYOUT: bool>(
    body: &[u8],
    at: &mut usize,
    members: u64,
    mut each: impl FnMut(u64, u64),
) -> Result<u64, PackError> {
    let mut member = 0u64;
    for i in 0..members {
        let (delta, clicks) = if FLAGGED_LAYOUT {
            let flagged = take(body, at)?;
            if flagged & 1 == 1 {
                (flagged >> 1, 1)
            } else {
                (flagged >> 1, take(body, at)?)
            }
        } else {
            (take(body, at)?, take(body, at)?)
        };
        if delta == 0 && i > 0 {
            return Err(PackError("member numbers repeat"));
        }
        member = member
            .checked_add(delta)
            .ok_or(PackError("member number overflows"))?;
        if clicks == 0 {
            return Err(PackError("a member without clicks"));
        }
        each(member, clicks);
    }
    Ok(member)
}

/// The version and where the header's numbers start.
fn header_start(body: &[u8]) -> Result<(u8, usize), PackError> {
    match body.first() {
        Some(&version @ (PAIRS | FLAGGED)) => Ok((version, 1)),
        Some(_) => Err(PackError("unknown version")),
        None => Err(PackError("empty")),
    }
}

/// LEB128: seven bits per byte, low bits first, the high bit set on all but the last byte.
fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One number: most are a single byte (deltas between dense member numbers, a few clicks),
/// so that case is decided first; a window decodes millions of them.
#[inline(always)]
fn take(body: &[u8], at: &mut usize) -> Result<u64, PackError> {
    match body.get(*at) {
        Some(&byte) if byte < 0x80 => {
            *at += 1;
            Ok(u64::from(byte))
        }
        _ => take_long(body, at),
    }
}

#[inline(never)]
fn take_long(body: &[u8], at: &mut usize) -> Result<u64, PackError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *body.get(*at).ok_or(PackError("cut short"))?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(PackError("a number longer than 64 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(body: &[u8]) -> Result<Vec<(u64, u64)>, PackError> {
        let mut out = Vec::new();
        for_each(body, |m, c| out.push((m, c)))?;
        Ok(out)
    }

    #[test]
    fn an_empty_hour_and_large_numbers_round_trip() {
        assert_eq!(decode(&encode(&[])), Ok(vec![]));
        let members = [(0, 1), (1, 300), (u64::from(u32::MAX) + 7, u64::MAX)];
        let body = encode(&members);
        assert_eq!(decode(&body), Ok(members.to_vec()));
        assert_eq!(header(&body), Ok((3, u64::from(u32::MAX) + 7)));
    }

    #[test]
    fn damage_is_an_error_not_members() {
        let body = encode(&[(5, 2), (9, 1)]);
        assert!(decode(&body[..body.len() - 1]).is_err());
        let mut longer = body.clone();
        longer.push(1);
        assert!(decode(&longer).is_err());
        let mut version = body.clone();
        version[0] = 3;
        assert_eq!(decode(&version), Err(PackError("unknown version")));
        assert_eq!(decode(&[]), Err(PackError("empty")));
        // (5, 2), (5 + 0, 1): a repeated member.
        assert!(decode(&[1, 2, 5, 5, 2, 0, 1]).is_err());
        // A member with no clicks.
        assert!(decode(&[1, 1, 5, 5, 0]).is_err());
        // The same in the flagged layout: (5, 2), then a delta of 0 with one click.
        assert!(decode(&[2, 2, 5, 10, 2, 1]).is_err());
        assert!(decode(&[2, 1, 5, 10, 0]).is_err());
    }

    #[test]
    fn a_member_with_one_click_takes_one_byte() {
        // Members 3, 4 and 70 with one click each, member 71 with two.
        let body = encode(&[(3, 1), (4, 1), (70, 1), (71, 2)]);
        assert_eq!(
            body,
            [
                FLAGGED,
                4,
                71,
                3 << 1 | 1,
                1 << 1 | 1,
                0x85,
                0x01,
                1 << 1,
                2
            ]
        );
        assert_eq!(decode(&body), Ok(vec![(3, 1), (4, 1), (70, 1), (71, 2)]));
    }

    #[test]
    fn packs_of_earlier_releases_are_still_read() {
        // Version 1: (delta, clicks) pairs for members 5 (two clicks) and 9 (one).
        assert_eq!(decode(&[PAIRS, 2, 9, 5, 2, 4, 1]), Ok(vec![(5, 2), (9, 1)]));
        assert_eq!(header(&[PAIRS, 2, 9, 5, 2, 4, 1]), Ok((2, 9)));
    }

    #[test]
    fn numbers_beyond_the_flagged_layout_take_the_pairs() {
        let members = [(1, 1), (u64::MAX, 1)];
        let body = encode(&members);
        assert_eq!(body[0], PAIRS);
        assert_eq!(decode(&body), Ok(members.to_vec()));
    }

    proptest! {
        #[test]
        fn any_hour_round_trips(
            members in proptest::collection::btree_map(
                any::<u32>(),
                prop_oneof![Just(1u64), 1u64..100_000],
                0..300
            )
        ) {
            let members: Vec<(u64, u64)> =
                members.into_iter().map(|(m, c)| (u64::from(m), c)).collect();
            let body = encode(&members);
            prop_assert_eq!(decode(&body), Ok(members.clone()));
            prop_assert_eq!(
                header(&body),
                Ok((members.len() as u64, members.last().map_or(0, |m| m.0)))
            );
        }
    }
}
