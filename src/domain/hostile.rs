//! Property tests over the whole query string (issue 5, "hostile input"): whatever arrives —
//! random bytes, broken or overlong percent escapes, repeated parameters, CR/LF/NUL, IDN and
//! userinfo tricks, open-redirect bypasses — the rules never panic, never accept a target
//! outside the policy, and never let a control character reach a header or the database.
//!
//! The same properties are checked end to end, through the real server, by
//! `tests/api/hostile.rs`.

use proptest::prelude::*;
use url::Url;

use super::click::{Arrival, classify};
use super::query::TrackParams;
use super::signature::{Keyring, Signature};
use super::{Record, RedirectPolicy};

/// Targets that try to get past an allow-list of `example.com` and `*.example.org`.
const BYPASSES: &[&str] = &[
    "//evil.com",
    "///evil.com",
    "/\\evil.com",
    "\\\\evil.com",
    "https:evil.com",
    "https:/evil.com",
    "https:\\\\evil.com",
    "https://evil.com\\@example.com",
    "https://example.com\\@evil.com",
    "https://example.com@evil.com",
    "https://example.com:443@evil.com",
    "https://evil.com#@example.com",
    "https://evil.com?@example.com",
    "https://evil.com/.example.com",
    "https://example.com.evil.com",
    "https://example.com%2eevil.com",
    "https://example.com%00.evil.com",
    "https://example.com\u{3002}evil.com",
    "https://evilexample.com",
    "https://example.org",
    "https://.example.org",
    "https://xn--exmple-cua.com",
    "https://exаmple.com",
    "javascript:alert(1)//https://example.com",
    "data:text/html,<script>alert(1)</script>",
    "https://example.com/\r\nSet-Cookie: a=b",
    "https://example.com/\u{0}",
    "http://[::ffff:127.0.0.1]/",
    "https://0x7f.1/",
];

fn policy() -> RedirectPolicy {
    RedirectPolicy::new(&["example.com".into(), "*.example.org".into()], false)
        .expect("valid rules")
}

fn allowed_host(host: &str) -> bool {
    host == "example.com" || (host.ends_with(".example.org") && host.len() > ".example.org".len())
}

/// One parameter value: plausible, hostile or random.
fn value() -> impl Strategy<Value = String> {
    let escaped = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    prop_oneof![
        prop::sample::select(BYPASSES).prop_map(escaped),
        prop::sample::select(BYPASSES).prop_map(str::to_owned),
        Just("https%3A%2F%2Fexample.com%2Fx".to_owned()),
        Just("https%3A%2F%2Fshop.example.org%2F%3Fa%3D1".to_owned()),
        "[0-9]{0,25}",
        "-?[0-9]{1,20}",
        "[ -~]{0,40}",
        "(%[0-9A-Fa-f]{2}){0,20}",
        "(%[0-9A-Za-z]{0,2}){0,10}",
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| {
            percent_encoding::percent_encode(&b, percent_encoding::NON_ALPHANUMERIC).to_string()
        }),
        any::<String>(),
        "[A,]{0,3}([a-zA-Z0-9 ]{0,70},){0,25}",
        "a{2040,2060}",
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(&["to", "cid", "uid", "type", "src", "tag", "sig", "exp"][..])
            .prop_map(str::to_owned),
        1 => "[a-z%&=]{0,6}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            8 => (name(), value()).prop_map(|(n, v)| format!("{n}={v}")),
            1 => name(),
            1 => any::<String>(),
        ],
        0..12,
    )
    .prop_map(|pairs| pairs.join("&"))
}

fn check(raw_query: &str) -> Result<(), TestCaseError> {
    let keys = Keyring::new(vec!["k1:0123456789abcdef".parse().expect("key")]).expect("ring");
    let params = TrackParams::parse(raw_query);
    let signature = keys.verify(raw_query, 0);
    let Ok(Some(to)) = params.to.decode_target() else {
        return Ok(());
    };
    // A random query never carries a valid signature (that would be a forged MAC).
    prop_assert_ne!(signature, Signature::Valid);
    let Ok(target) = policy().check(to) else {
        return Ok(());
    };
    let location = Url::parse(&target.location).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(matches!(location.scheme(), "http" | "https"));
    prop_assert!(location.username().is_empty() && location.password().is_none());
    prop_assert!(
        allowed_host(location.host_str().unwrap_or("")),
        "{}",
        target.location
    );
    prop_assert!(
        target.location.bytes().all(|b| b.is_ascii_graphic()),
        "{:?}",
        target.location
    );

    let record = classify(
        &params,
        &target,
        Arrival {
            click_id: uuid::Uuid::now_v7(),
            received_at: time::OffsetDateTime::UNIX_EPOCH,
            user_agent: Some("Mozilla/5.0\r\nX: y"),
            raw_query,
        },
    );
    if let Record::Click(click) = record {
        prop_assert!(click.campaign_id.get() > 0);
        prop_assert!(click.source_campaign_id >= 0);
        if let Some(uid) = &click.uid {
            prop_assert!(uid.len() <= 64 && uid.bytes().all(|b| b.is_ascii_graphic()));
        }
        prop_assert!(click.tags.len() <= 20);
        for tag in &click.tags {
            prop_assert!(!tag.is_empty() && tag.len() <= 64 && !tag.contains(','));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn no_query_string_breaks_the_rules(q in query()) {
        check(&q)?;
    }
}

#[test]
fn every_listed_bypass_is_refused_or_stays_on_an_allowed_host() {
    for bypass in BYPASSES {
        if let Ok(target) = policy().check((*bypass).to_owned()) {
            let host = Url::parse(&target.location)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned));
            assert!(
                host.as_deref().is_some_and(allowed_host),
                "{bypass} → {}",
                target.location
            );
        }
    }
}
