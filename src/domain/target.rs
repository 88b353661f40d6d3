//! The redirect policy (docs/link-contract.md): which `to` values clicktrack will send a browser to.
//!
//! An endpoint that redirects anywhere is an open redirect (CWE-601). A target must be an
//! absolute http(s) URL without userinfo, whose host (as the `url` crate parses it, after IDNA,
//! lower-cased) is allowed. The `Location` header is the parsed URL's own serialization, never
//! the raw input, so what we checked is exactly where the browser goes.

use url::{Host, Url};

/// Longest accepted `to`, in bytes after decoding.
pub const MAX_TARGET_BYTES: usize = 2048;

/// A target that passed the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The canonical serialization, ASCII only: sent as `Location`, and what the interaction
    /// log, the message row and the statistics record, so that `HTTPS://EXAMPLE.COM/x` and
    /// `https://example.com/./x` are one target, the one the browser was sent to. The link's
    /// own spelling survives only in `track_rejects.query_string` (of a set-aside click).
    pub location: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the link has no target")]
    Missing,
    #[error("the link gives its target more than once")]
    Repeated,
    #[error("the target is not valid UTF-8")]
    BadEncoding,
    #[error("the target is longer than 2048 bytes")]
    TooLong,
    #[error("the target contains spaces or control characters")]
    ControlCharacter,
    #[error("the target is not an absolute http or https address")]
    NotHttp,
    #[error("the target is not a valid address")]
    Malformed,
    #[error("the target contains a user name or password")]
    UserInfo,
    #[error("the target's host is not on this service's allow-list")]
    HostNotAllowed,
}

impl TargetError {
    /// A short stable code, used as a metric label.
    pub fn code(self) -> &'static str {
        match self {
            TargetError::Missing => "missing",
            TargetError::Repeated => "repeated",
            TargetError::BadEncoding => "bad_encoding",
            TargetError::TooLong => "too_long",
            TargetError::ControlCharacter => "control_character",
            TargetError::NotHttp => "not_http",
            TargetError::Malformed => "malformed",
            TargetError::UserInfo => "userinfo",
            TargetError::HostNotAllowed => "host_not_allowed",
        }
    }

    pub const ALL: [TargetError; 9] = [
        TargetError::Missing,
        TargetError::Repeated,
        TargetError::BadEncoding,
        TargetError::TooLong,
        TargetError::ControlCharacter,
        TargetError::NotHttp,
        TargetError::Malformed,
        TargetError::UserInfo,
        TargetError::HostNotAllowed,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    /// `example.com`: that host only.
    Exact(String),
    /// `*.example.com`: any subdomain of it (not the apex).
    Subdomains(String),
}

/// An `--allow-host` value that cannot be a host, or that would allow anyone's hosts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadHostRule {
    #[error("{value:?} is not a host name (expected e.g. example.com or *.example.com)")]
    NotAHost { value: String },
    #[error(
        "{value:?} allows every host under {suffix}, a public suffix under which anyone can \
         register a name: an open redirect. Allow your own domain instead (e.g. \
         *.example.{suffix}), or --allow-any-target for development"
    )]
    PublicSuffix { value: String, suffix: String },
}

/// Which targets may be redirected to.
#[derive(Debug, Clone, Default)]
pub struct RedirectPolicy {
    rules: Vec<HostRule>,
    allow_any: bool,
}

impl RedirectPolicy {
    pub fn new(allow_hosts: &[String], allow_any: bool) -> Result<RedirectPolicy, BadHostRule> {
        let rules = allow_hosts
            .iter()
            .map(|h| h.trim())
            .filter(|h| !h.is_empty())
            .map(parse_rule)
            .collect::<Result<_, _>>()?;
        Ok(RedirectPolicy { rules, allow_any })
    }

    /// True when no target can ever pass (neither a host rule nor allow-any).
    pub fn refuses_everything(&self) -> bool {
        self.rules.is_empty() && !self.allow_any
    }

    pub fn allows_any(&self) -> bool {
        self.allow_any
    }

    /// Check a decoded `to` value.
    pub fn check(&self, raw: String) -> Result<Target, TargetError> {
        self.check_hosts(raw, self.allow_any)
    }

    /// Check the `to` of a link with a valid signature: clicktrack minted it, so any host is
    /// fine; the structural checks (http(s), no userinfo, length, ...) still apply.
    pub fn check_signed(&self, raw: String) -> Result<Target, TargetError> {
        self.check_hosts(raw, true)
    }

    fn check_hosts(&self, raw: String, any_host: bool) -> Result<Target, TargetError> {
        let location = canonical_http_url(&raw)?;
        let host = location
            .host_str()
            .ok_or(TargetError::Malformed)?
            .to_ascii_lowercase();
        if !any_host && !self.rules.iter().any(|rule| rule.matches(&host)) {
            return Err(TargetError::HostNotAllowed);
        }
        Ok(Target {
            location: location.into(),
        })
    }
}

impl HostRule {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostRule::Exact(name) => host == name,
            HostRule::Subdomains(apex) => host
                .strip_suffix(apex.as_str())
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
        }
    }
}

fn parse_rule(value: &str) -> Result<HostRule, BadHostRule> {
    let bad = || BadHostRule::NotAHost {
        value: value.to_owned(),
    };
    let (wildcard, name) = match value.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    // Let the same parser that reads targets normalise the rule (IDNA, case, IP forms).
    let url = Url::parse(&format!("http://{name}/")).map_err(|_| bad())?;
    let host = match url.host() {
        Some(Host::Domain(d)) if !d.is_empty() => d.to_ascii_lowercase(),
        Some(Host::Ipv4(_) | Host::Ipv6(_)) if !wildcard => url.host_str().unwrap_or("").to_owned(),
        _ => return Err(bad()),
    };
    if url.port().is_some() || url.path() != "/" || !url.username().is_empty() || host.is_empty() {
        return Err(bad());
    }
    // `*.com`, `*.co.jp`, `*.github.io`: every name anyone registers there would be a target.
    // The public suffix list (compiled into the binary) says which suffixes those are.
    if wildcard
        && psl::suffix(host.as_bytes())
            .is_some_and(|s| s.is_known() && s.as_bytes() == host.as_bytes())
    {
        return Err(BadHostRule::PublicSuffix {
            value: value.to_owned(),
            suffix: host,
        });
    }
    Ok(if wildcard {
        HostRule::Subdomains(host)
    } else {
        HostRule::Exact(host)
    })
}

/// The structural checks every target must pass, whatever the host policy.
fn canonical_http_url(raw: &str) -> Result<Url, TargetError> {
    if raw.is_empty() {
        return Err(TargetError::Missing);
    }
    if raw.len() > MAX_TARGET_BYTES {
        return Err(TargetError::TooLong);
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(TargetError::ControlCharacter);
    }
    // Demand the literal `scheme://` form: WHATWG parsing would also accept `https:evil.com`
    // or `https:\\evil.com`, which no campaign link contains.
    let lower_prefix = raw.get(..8).unwrap_or(raw).to_ascii_lowercase();
    if !(lower_prefix.starts_with("http://") || lower_prefix.starts_with("https://")) {
        return Err(TargetError::NotHttp);
    }
    let url = Url::parse(raw).map_err(|_| TargetError::Malformed)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::NotHttp);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::UserInfo);
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(TargetError::Malformed);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str]) -> RedirectPolicy {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        RedirectPolicy::new(&hosts, false).expect("valid rules")
    }

    #[test]
    fn targets_table() {
        let p = policy(&["example.com", "*.hotel.jp", "bücher.de"]);
        let ok = [
            ("https://example.com", "https://example.com/"),
            ("HTTPS://EXAMPLE.COM/a?b=1#c", "https://example.com/a?b=1#c"),
            ("http://example.com:8080/x", "http://example.com:8080/x"),
            (
                "https://www.hotel.jp/予約",
                "https://www.hotel.jp/%E4%BA%88%E7%B4%84",
            ),
            ("https://a.b.hotel.jp/", "https://a.b.hotel.jp/"),
            ("https://BÜCHER.de/", "https://xn--bcher-kva.de/"),
            ("https://xn--bcher-kva.de/", "https://xn--bcher-kva.de/"),
        ];
        for (raw, location) in ok {
            let t = p
                .check(raw.to_string())
                .unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(t.location, location, "{raw}");
        }
        let bad = [
            ("", TargetError::Missing),
            ("javascript:alert(1)", TargetError::NotHttp),
            ("//evil.com", TargetError::NotHttp),
            ("https:evil.com", TargetError::NotHttp),
            ("https:\\\\evil.com", TargetError::NotHttp),
            ("ftp://example.com/", TargetError::NotHttp),
            ("data:text/html,hi", TargetError::NotHttp),
            ("https://example.com@evil.com/", TargetError::UserInfo),
            ("https://user:pw@example.com/", TargetError::UserInfo),
            ("https://evil.com/example.com", TargetError::HostNotAllowed),
            ("https://example.com.evil.com/", TargetError::HostNotAllowed),
            ("https://evilexample.com/", TargetError::HostNotAllowed),
            ("https://hotel.jp/", TargetError::HostNotAllowed),
            ("https://x.nothotel.jp/", TargetError::HostNotAllowed),
            (
                "https://example.com/\r\nSet-Cookie: a=b",
                TargetError::ControlCharacter,
            ),
            ("https://example.com/\u{0}", TargetError::ControlCharacter),
            ("https://example.com/ a", TargetError::ControlCharacter),
            ("https://exa mple.com/", TargetError::ControlCharacter),
            ("https://", TargetError::Malformed),
            ("https://[::1", TargetError::Malformed),
        ];
        for (raw, want) in bad {
            assert_eq!(p.check(raw.to_string()), Err(want), "{raw:?}");
        }
        let long = format!("https://example.com/{}", "a".repeat(3000));
        assert_eq!(p.check(long), Err(TargetError::TooLong));
    }

    #[test]
    fn extra_slashes_are_checked_against_the_host_the_browser_will_use() {
        let p = policy(&["example.com"]);
        assert_eq!(
            p.check("https:///evil.com/".into()),
            Err(TargetError::HostNotAllowed)
        );
        let t = p.check("https:///example.com/".into()).expect("allowed");
        assert_eq!(t.location, "https://example.com/");
    }

    #[test]
    fn no_rules_refuses_everything_and_allow_any_allows_any_http_host() {
        let none = policy(&[]);
        assert!(none.refuses_everything());
        assert_eq!(
            none.check("https://example.com/".into()),
            Err(TargetError::HostNotAllowed)
        );
        let any = RedirectPolicy::new(&[], true).expect("no rules");
        assert!(any.check("https://anything.example/".into()).is_ok());
        assert_eq!(
            any.check("javascript:alert(1)".into()),
            Err(TargetError::NotHttp)
        );
        assert_eq!(
            any.check("https://a@b.c/".into()),
            Err(TargetError::UserInfo)
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        for rule in [
            "http://example.com",
            "example.com/x",
            "a@b.com",
            "*.",
            "*.1.2.3.4",
            "exa mple.com",
        ] {
            assert!(
                RedirectPolicy::new(&[rule.to_string()], false).is_err(),
                "{rule}"
            );
        }
        assert!(RedirectPolicy::new(&["127.0.0.1".to_string()], false).is_ok());
    }

    #[test]
    fn the_longest_location_fits_what_a_click_may_hold() {
        let p = policy(&["example.com"]);
        for filler in ["予", "\"", "<"] {
            let head = "https://example.com/";
            let n = (MAX_TARGET_BYTES - head.len()) / filler.len();
            let raw = format!("{head}{}", filler.repeat(n));
            assert!(raw.len() <= MAX_TARGET_BYTES);
            let t = p.check(raw).expect("a target at the limit");
            assert!(
                t.location.len() <= crate::domain::click::MAX_TARGET_BYTES,
                "{}",
                t.location.len()
            );
        }
    }

    #[test]
    fn wildcards_over_a_public_suffix_are_refused() {
        for rule in [
            "*.com",
            "*.COM",
            "*.co.jp",
            "*.github.io",
            "*.xn--p1ai",
            "*.рф",
        ] {
            let refused = RedirectPolicy::new(&[rule.to_string()], false);
            assert!(
                matches!(refused, Err(BadHostRule::PublicSuffix { .. })),
                "{rule}: {refused:?}"
            );
        }
        // Your own domain under those suffixes, and exact hosts, are fine.
        for rule in [
            "*.example.com",
            "*.hotel.co.jp",
            "*.hotel.example",
            "com",
            "co.jp",
        ] {
            assert!(
                RedirectPolicy::new(&[rule.to_string()], false).is_ok(),
                "{rule}"
            );
        }
    }
}
