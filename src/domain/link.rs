//! Minting tracking links (`clicktrack link`, `POST /api/links`): build the query of a link
//! from its fields, check it by the very rules `/__track` applies, and sign it.
//!
//! Checking with the endpoint's own parser means a minted link can never be one the endpoint
//! would reject or set aside.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::click::tracking_fields;
use super::ids::MAX_UID_CHARS;
use super::query::TrackParams;
use super::signature::Keyring;
use super::tags::{MAX_TAG_BYTES, MAX_TAGS_PER_CLICK};
use super::{InteractionType, RedirectPolicy, RejectReason};

/// Escaped in a minted link: everything but the unreserved characters.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What a link says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkSpec {
    pub to: String,
    pub cid: i64,
    pub uid: Option<String>,
    pub src: Option<i64>,
    pub interaction_type: Option<String>,
    /// Comma-separated, as in the link.
    pub tag: Option<String>,
    /// Unix seconds after which the link no longer redirects.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("no --signing-key is configured: links cannot be signed")]
    NoSigningKey,
    #[error("base_url: {0}")]
    BaseUrl(&'static str),
    #[error("to: {0}")]
    Target(#[from] super::TargetError),
    /// A field `/__track` would not accept: its name in the link and what is wrong with it.
    #[error("{field}: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
}

impl LinkError {
    /// The link field at fault (`base_url`, `to`, `cid`, `uid`, `src`, `type`, `tag`).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            LinkError::NoSigningKey => None,
            LinkError::BaseUrl(_) => Some("base_url"),
            LinkError::Target(_) => Some("to"),
            LinkError::Field { field, .. } => Some(field),
        }
    }

    /// What is wrong, without the field's name (the caller names it its own way).
    pub fn problem(&self) -> String {
        match self {
            LinkError::NoSigningKey => self.to_string(),
            LinkError::BaseUrl(problem) => (*problem).to_owned(),
            LinkError::Target(e) => e.to_string(),
            LinkError::Field { problem, .. } => problem.clone(),
        }
    }

    /// A field `/__track` would set aside for `reason`, explained.
    fn set_aside(reason: RejectReason, spec: &LinkSpec) -> LinkError {
        let (field, problem) = match reason {
            RejectReason::MissingCampaign
            | RejectReason::InvalidCampaign
            | RejectReason::UnknownCampaign => ("cid", "must be a positive campaign id".to_owned()),
            RejectReason::InvalidUid => ("uid", "must be printable ASCII".to_owned()),
            RejectReason::UidTooLong => ("uid", format!("longer than {MAX_UID_CHARS} characters")),
            RejectReason::UnknownType => (
                "type",
                format!(
                    "unknown type {:?}; one of {}",
                    spec.interaction_type.as_deref().unwrap_or(""),
                    InteractionType::ALL.map(|t| t.to_string()).join(", ")
                ),
            ),
            RejectReason::TooManyTags => ("tag", format!("more than {MAX_TAGS_PER_CLICK} tags")),
            RejectReason::TagTooLong => {
                ("tag", format!("a tag is longer than {MAX_TAG_BYTES} bytes"))
            }
            RejectReason::RepeatedParameter
            | RejectReason::BadEncoding
            | RejectReason::RefusedByDatabase
            | RejectReason::ValueTooLong => (
                "link",
                format!("/__track would set the link aside ({})", reason.as_str()),
            ),
        };
        LinkError::Field { field, problem }
    }
}

impl LinkSpec {
    /// The unsigned query string, checked.
    pub fn query(&self) -> Result<String, LinkError> {
        let mut parts = vec![format!("cid={}", self.cid)];
        let mut push = |name: &str, value: &str| {
            parts.push(format!("{name}={}", utf8_percent_encode(value, ESCAPED)));
        };
        if let Some(uid) = &self.uid {
            push("uid", uid);
        }
        if let Some(t) = &self.interaction_type {
            push("type", t);
        }
        if let Some(src) = self.src {
            if src < 0 || src > i64::from(i32::MAX) {
                return Err(LinkError::Field {
                    field: "src",
                    problem: format!("{src} is not a source campaign id (0 to {})", i32::MAX),
                });
            }
            push("src", &src.to_string());
        }
        if let Some(tag) = &self.tag {
            push("tag", tag);
        }
        push("to", &self.to);
        if let Some(exp) = self.expires_at {
            push("exp", &exp.to_string());
        }
        let query = parts.join("&");

        let params = TrackParams::parse(&query);
        tracking_fields(&params).map_err(|reason| LinkError::set_aside(reason, self))?;
        // Signed links may go to any host, but only to a well-formed http(s) address.
        RedirectPolicy::default().check_signed(self.to.clone())?;
        Ok(query)
    }

    /// The full signed link: `{base_url}/__track?{query}&sig=...`.
    pub fn signed_url(&self, base_url: &str, keys: &Keyring) -> Result<String, LinkError> {
        let base = checked_base(base_url)?;
        let query = self.query()?;
        let sig = keys.sign(&query).ok_or(LinkError::NoSigningKey)?;
        Ok(format!("{base}/__track?{query}&sig={sig}"))
    }
}

/// `https://host[:port][/prefix]`, without a trailing slash, query or fragment.
fn checked_base(base_url: &str) -> Result<&str, LinkError> {
    let url = url::Url::parse(base_url).map_err(|_| LinkError::BaseUrl("not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(LinkError::BaseUrl("must be an http(s) address"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(LinkError::BaseUrl(
            "no query, fragment or user name, only scheme, host, port and path",
        ));
    }
    Ok(base_url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::signature::Signature;

    fn keys() -> Keyring {
        Keyring::new(vec!["k1:0123456789abcdef0123".parse().expect("key")]).expect("ring")
    }

    fn spec() -> LinkSpec {
        LinkSpec {
            to: "https://partner.test/a?b=1&c=ä".into(),
            cid: 123,
            uid: Some("U4af4980629".into()),
            src: Some(7),
            interaction_type: Some("button_url".into()),
            tag: Some("A,B".into()),
            expires_at: Some(2_000_000_000),
        }
    }

    #[test]
    fn a_minted_link_parses_back_to_its_fields_and_verifies() {
        let url = spec()
            .signed_url("https://t.example.com/", &keys())
            .expect("link");
        let query = url
            .strip_prefix("https://t.example.com/__track?")
            .expect("base + /__track");
        let params = TrackParams::parse(query);
        assert_eq!(
            params.to.decode(),
            Ok(Some("https://partner.test/a?b=1&c=ä".into()))
        );
        assert_eq!(params.tag.decode(), Ok(Some("A,B".into())));
        assert_eq!(params.uid.decode(), Ok(Some("U4af4980629".into())));
        assert_eq!(keys().verify(query, 1_999_999_999), Signature::Valid);
    }

    #[test]
    fn links_the_endpoint_would_refuse_are_not_minted() {
        let bad = [
            LinkSpec { cid: 0, ..spec() },
            LinkSpec {
                interaction_type: Some("poke".into()),
                ..spec()
            },
            LinkSpec {
                uid: Some("U 1".into()),
                ..spec()
            },
            LinkSpec {
                tag: Some("x".repeat(65)),
                ..spec()
            },
            LinkSpec {
                src: Some(-1),
                ..spec()
            },
            LinkSpec {
                to: "javascript:alert(1)".into(),
                ..spec()
            },
            LinkSpec {
                to: "https://u:p@partner.test/".into(),
                ..spec()
            },
        ];
        for s in bad {
            assert!(
                s.signed_url("https://t.example.com", &keys()).is_err(),
                "{s:?}"
            );
        }
        for base in [
            "ftp://t.example.com",
            "t.example.com",
            "https://t.example.com/?x=1",
        ] {
            assert!(matches!(
                spec().signed_url(base, &keys()),
                Err(LinkError::BaseUrl(_))
            ));
        }
        assert_eq!(
            spec().signed_url("https://t.example.com", &Keyring::default()),
            Err(LinkError::NoSigningKey)
        );
    }
}
