//! Splitting `/__track`'s raw query string into the parameters of the link contract.
//!
//! Decoding is strict on purpose: a value whose percent escapes are not UTF-8 is an error, not
//! silently replaced with U+FFFD (a lossy target would redirect somewhere the link never said).
//! Each known parameter is decoded only when asked for, so a broken `tag` cannot break the
//! redirect, and a parameter given twice is reported as such instead of picking one.

use percent_encoding::percent_decode_str;

/// One known parameter as it appeared in the query string (still encoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'q> {
    Missing,
    One(&'q str),
    Repeated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("the parameter is given more than once")]
    Repeated,
    #[error("the parameter is not valid UTF-8 once decoded, or has a malformed % escape")]
    BadEncoding,
}

impl<'q> Field<'q> {
    /// The decoded value: `Ok(None)` when absent. A `%` not followed by two hex digits is an
    /// error (`uid=U%zz` is no uid anyone sent), as is a value that is not UTF-8.
    pub fn decode(self) -> Result<Option<String>, FieldError> {
        match self {
            Field::One(raw) if has_malformed_escape(raw) => Err(FieldError::BadEncoding),
            field => field.decode_target(),
        }
    }

    /// `decode` for `to`: a stray `%` is left to the URL parser, which keeps it as the
    /// browser would (links in the wild carry targets like `.../100%-off`).
    pub fn decode_target(self) -> Result<Option<String>, FieldError> {
        match self {
            Field::Missing => Ok(None),
            Field::Repeated => Err(FieldError::Repeated),
            Field::One(raw) => decode_component(raw).map(Some),
        }
    }

    fn see(&mut self, raw: &'q str) {
        *self = match *self {
            Field::Missing => Field::One(raw),
            Field::One(_) | Field::Repeated => Field::Repeated,
        };
    }
}

/// The link-contract parameters of one request. Unknown parameters (`utm_*`, ...) are ignored.
#[derive(Debug, Clone, Copy)]
pub struct TrackParams<'q> {
    pub to: Field<'q>,
    pub cid: Field<'q>,
    pub uid: Field<'q>,
    pub interaction_type: Field<'q>,
    pub src: Field<'q>,
    pub tag: Field<'q>,
    pub sig: Field<'q>,
}

impl<'q> TrackParams<'q> {
    pub fn parse(raw_query: &'q str) -> TrackParams<'q> {
        let mut params = TrackParams {
            to: Field::Missing,
            cid: Field::Missing,
            uid: Field::Missing,
            interaction_type: Field::Missing,
            src: Field::Missing,
            tag: Field::Missing,
            sig: Field::Missing,
        };
        for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            // Keys of the contract are plain ASCII; an encoded key is not one of ours.
            let slot = match key {
                "to" => &mut params.to,
                "cid" => &mut params.cid,
                "uid" => &mut params.uid,
                "type" => &mut params.interaction_type,
                "src" => &mut params.src,
                "tag" => &mut params.tag,
                "sig" => &mut params.sig,
                _ => continue,
            };
            slot.see(value);
        }
        params
    }
}

/// Every `uid` a raw query string names (a repeated one too), decoded, with bytes that are
/// not UTF-8 replaced: what erasure looks for in a reject's stored query.
pub fn uids_in(raw_query: &str) -> Vec<String> {
    raw_query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| *key == "uid")
        .map(|(_, value)| {
            let value = value.replace('+', " ");
            percent_decode_str(&value).decode_utf8_lossy().into_owned()
        })
        .collect()
}

/// A `%` that does not start an escape (`%zz`, a `%` at the end).
fn has_malformed_escape(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    bytes.iter().enumerate().any(|(i, b)| {
        *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// `application/x-www-form-urlencoded` decoding of one component, failing on non-UTF-8.
fn decode_component(raw: &str) -> Result<String, FieldError> {
    let plus_as_space;
    let raw = if raw.contains('+') {
        plus_as_space = raw.replace('+', " ");
        plus_as_space.as_str()
    } else {
        raw
    };
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| FieldError::BadEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_uid_of_a_query_is_found_decoded() {
        assert_eq!(uids_in("cid=1&uid=U%31&x=uid%3DU9&uid=U2"), ["U1", "U2"]);
        assert!(uids_in("cid=1&to=x").is_empty());
    }

    #[test]
    fn decodes_known_parameters_and_ignores_others() {
        let p = TrackParams::parse(
            "cid=123&uid=U1&to=https%3A%2F%2Fexample.com%2Fa%3Fb%3D1&utm_source=x&tag=A+B,C",
        );
        assert_eq!(p.cid.decode(), Ok(Some("123".into())));
        assert_eq!(p.uid.decode(), Ok(Some("U1".into())));
        assert_eq!(p.to.decode(), Ok(Some("https://example.com/a?b=1".into())));
        assert_eq!(p.tag.decode(), Ok(Some("A B,C".into())));
        assert_eq!(p.src.decode(), Ok(None));
    }

    #[test]
    fn malformed_escapes_are_errors_except_in_the_target() {
        let p = TrackParams::parse("uid=U%zz&tag=A%2&cid=1%&to=https%3A%2F%2Fx.com%2F100%-off");
        assert_eq!(p.uid.decode(), Err(FieldError::BadEncoding));
        assert_eq!(p.tag.decode(), Err(FieldError::BadEncoding));
        assert_eq!(p.cid.decode(), Err(FieldError::BadEncoding));
        assert_eq!(
            p.to.decode_target(),
            Ok(Some("https://x.com/100%-off".into()))
        );
        assert_eq!(
            TrackParams::parse("uid=U%41").uid.decode(),
            Ok(Some("UA".into()))
        );
    }

    #[test]
    fn repeated_and_badly_encoded_values_are_errors() {
        let p = TrackParams::parse("to=a&to=b&uid=%FF%FE&cid");
        assert_eq!(p.to.decode(), Err(FieldError::Repeated));
        assert_eq!(p.uid.decode(), Err(FieldError::BadEncoding));
        assert_eq!(p.cid.decode(), Ok(Some(String::new())));
    }
}
