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
//! Layout: version byte `1`, then varints: the number of members `n`, the largest member
//! number, then `n` pairs (member number minus the previous one, clicks). Numbers strictly
//! ascend and clicks are at least 1, so a damaged body is detected, never misread as members.

use thiserror::Error;

const VERSION: u8 = 1;

/// A body that is not a pack this release can read.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("damaged member pack ({0})")]
pub struct PackError(&'static str);

/// Encode `members`: (member number, clicks), in ascending member number.
pub fn encode(members: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + members.len() * 5);
    out.push(VERSION);
    put(&mut out, members.len() as u64);
    put(&mut out, members.last().map_or(0, |m| m.0));
    let mut previous = 0;
    for &(member, clicks) in members {
        put(&mut out, member - previous);
        put(&mut out, clicks);
        previous = member;
    }
    out
}

/// The largest member number in `body` (to size a counter array before decoding).
pub fn max_member(body: &[u8]) -> Result<u64, PackError> {
    let mut at = header_start(body)?;
    let _members = take(body, &mut at)?;
    take(body, &mut at)
}

/// Call `each(member number, clicks)` for every member of `body`, in ascending number.
pub fn for_each(body: &[u8], mut each: impl FnMut(u64, u64)) -> Result<(), PackError> {
    let mut at = header_start(body)?;
    let members = take(body, &mut at)?;
    let max = take(body, &mut at)?;
    let mut member = 0u64;
    for i in 0..members {
        let delta = take(body, &mut at)?;
        if delta == 0 && i > 0 {
            return Err(PackError("member numbers repeat"));
        }
        member = member
            .checked_add(delta)
            .ok_or(PackError("member number overflows"))?;
        let clicks = take(body, &mut at)?;
        if clicks == 0 {
            return Err(PackError("a member without clicks"));
        }
        each(member, clicks);
    }
    if at != body.len() {
        return Err(PackError("bytes after the last member"));
    }
    if members > 0 && member != max {
        return Err(PackError("largest member number does not match"));
    }
    Ok(())
}

fn header_start(body: &[u8]) -> Result<usize, PackError> {
    match body.first() {
        Some(&VERSION) => Ok(1),
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
        assert_eq!(max_member(&body), Ok(u64::from(u32::MAX) + 7));
    }

    #[test]
    fn damage_is_an_error_not_members() {
        let body = encode(&[(5, 2), (9, 1)]);
        assert!(decode(&body[..body.len() - 1]).is_err());
        let mut longer = body.clone();
        longer.push(1);
        assert!(decode(&longer).is_err());
        let mut version = body.clone();
        version[0] = 2;
        assert_eq!(decode(&version), Err(PackError("unknown version")));
        assert_eq!(decode(&[]), Err(PackError("empty")));
        // (5, 2), (5 + 0, 1): a repeated member.
        assert!(decode(&[1, 2, 5, 5, 2, 0, 1]).is_err());
        // A member with no clicks.
        assert!(decode(&[1, 1, 5, 5, 0]).is_err());
    }

    proptest! {
        #[test]
        fn any_hour_round_trips(
            members in proptest::collection::btree_map(any::<u32>(), 1u64..100_000, 0..300)
        ) {
            let members: Vec<(u64, u64)> =
                members.into_iter().map(|(m, c)| (u64::from(m), c)).collect();
            let body = encode(&members);
            prop_assert_eq!(decode(&body), Ok(members.clone()));
            prop_assert_eq!(max_member(&body), Ok(members.last().map_or(0, |m| m.0)));
        }
    }
}
