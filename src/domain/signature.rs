//! Signed links (docs/link-contract.md): `sig` proves clicktrack minted the link, so a signed link may point
//! at any http(s) target, and nobody can forge one (no open redirect, no invented members).
//!
//! `sig = KID "." base64url(HMAC-SHA256(secret, canonical)[..16])`, where `canonical` is every
//! other parameter of the query (including `to`, `uid` and `exp`), decoded, sorted, and
//! re-encoded one fixed way. So the signature survives what a messaging app may do to a URL
//! (reorder parameters, change the case of a percent escape, `+` for a space) and breaks on
//! any change of meaning, including an added parameter. The MAC is compared in constant time.
//! Keys rotate: the first `--signing-key` signs, every one verifies.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the MAC kept in the link: 128 bits.
const MAC_BYTES: usize = 16;
/// Domain separation: a MAC made for anything else can never pass as a link signature.
const CONTEXT: &[u8] = b"clicktrack link v1\n";
const MIN_SECRET_BYTES: usize = 16;
const MAX_KEY_ID_BYTES: usize = 16;

/// Everything but the unreserved characters is escaped in the canonical form.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Clone)]
pub struct SigningKey {
    id: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSigningKey {
    #[error("a signing key is KID:SECRET")]
    Format,
    #[error("key id {0:?}: 1 to 16 letters, digits, '-' or '_'")]
    KeyId(String),
    #[error("key {0}: the secret must be at least 16 bytes")]
    ShortSecret(String),
    #[error("key id {0} is given twice")]
    DuplicateId(String),
}

impl std::str::FromStr for SigningKey {
    type Err = BadSigningKey;

    fn from_str(value: &str) -> Result<SigningKey, BadSigningKey> {
        let (id, secret) = value.split_once(':').ok_or(BadSigningKey::Format)?;
        let id_ok = !id.is_empty()
            && id.len() <= MAX_KEY_ID_BYTES
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(BadSigningKey::KeyId(id.to_owned()));
        }
        if secret.len() < MIN_SECRET_BYTES {
            return Err(BadSigningKey::ShortSecret(id.to_owned()));
        }
        Ok(SigningKey {
            id: id.to_owned(),
            secret: secret.as_bytes().to_vec(),
        })
    }
}

impl SigningKey {
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self, canonical: &str) -> HmacSha256 {
        // HMAC's key-length error exists only for MACs with fixed key sizes: HMAC hashes or
        // pads any key, so this cannot fail.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret)
            .expect("HMAC accepts keys of any length");
        mac.update(CONTEXT);
        mac.update(canonical.as_bytes());
        mac
    }
}

/// The configured keys: the first signs, all verify.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<SigningKey>,
}

/// What a link's signature says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// No `sig` parameter.
    Unsigned,
    /// Minted by one of our keys, not expired.
    Valid,
    Invalid(SignatureError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the link's signature is malformed")]
    Malformed,
    #[error("the link was signed with a key this service does not have")]
    UnknownKey,
    #[error("the link's signature does not match its contents")]
    Mismatch,
    #[error("the link's expiry time is not a number")]
    BadExpiry,
    #[error("the link has expired")]
    Expired,
}

impl SignatureError {
    pub const ALL: [SignatureError; 5] = [
        SignatureError::Malformed,
        SignatureError::UnknownKey,
        SignatureError::Mismatch,
        SignatureError::BadExpiry,
        SignatureError::Expired,
    ];

    /// A short stable code, used as a metric label.
    pub fn code(self) -> &'static str {
        match self {
            SignatureError::Malformed => "malformed",
            SignatureError::UnknownKey => "unknown_key",
            SignatureError::Mismatch => "mismatch",
            SignatureError::BadExpiry => "bad_expiry",
            SignatureError::Expired => "expired",
        }
    }
}

impl Keyring {
    pub fn new(keys: Vec<SigningKey>) -> Result<Keyring, BadSigningKey> {
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|k| k.id == key.id) {
                return Err(BadSigningKey::DuplicateId(key.id.clone()));
            }
        }
        Ok(Keyring { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key links are signed with: the first one.
    pub fn signing_key(&self) -> Option<&SigningKey> {
        self.keys.first()
    }

    /// The `sig` value for a query string (which must not contain `sig`), or `None` without
    /// keys.
    pub fn sign(&self, query: &str) -> Option<String> {
        let key = self.signing_key()?;
        let tag = key.mac(&canonical(query)).finalize().into_bytes();
        Some(format!(
            "{}.{}",
            key.id,
            URL_SAFE_NO_PAD.encode(&tag[..MAC_BYTES])
        ))
    }

    /// Check the signature of a raw query string at `now` (Unix seconds).
    pub fn verify(&self, raw_query: &str, now: i64) -> Signature {
        let mut sigs = raw_values(raw_query, "sig");
        let Some(sig) = sigs.next() else {
            return Signature::Unsigned;
        };
        if sigs.next().is_some() {
            return Signature::Invalid(SignatureError::Malformed);
        }
        match self.check(sig, raw_query, now) {
            Ok(()) => Signature::Valid,
            Err(e) => Signature::Invalid(e),
        }
    }

    fn check(&self, sig: &str, raw_query: &str, now: i64) -> Result<(), SignatureError> {
        // `KID.base64url`: nothing in it is ever escaped.
        let (id, tag) = sig.split_once('.').ok_or(SignatureError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| SignatureError::Malformed)?;
        if tag.len() != MAC_BYTES {
            return Err(SignatureError::Malformed);
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(SignatureError::UnknownKey)?;
        key.mac(&canonical(raw_query))
            .verify_truncated_left(&tag)
            .map_err(|_| SignatureError::Mismatch)?;
        // Only a link we signed gets this far: its `exp` is ours.
        let mut exps = raw_values(raw_query, "exp");
        if let Some(exp) = exps.next() {
            let exp: i64 = exp.parse().map_err(|_| SignatureError::BadExpiry)?;
            if exps.next().is_some() {
                return Err(SignatureError::BadExpiry);
            }
            if now > exp {
                return Err(SignatureError::Expired);
            }
        }
        Ok(())
    }
}

/// The (name, decoded value) pairs of a query, `+` as space, in order. Names are taken
/// literally, as `/__track` reads them (`%75id` is not `uid`): otherwise a signed link could be
/// rewritten into one the endpoint reads differently but that still verifies.
fn pairs(raw_query: &str) -> impl Iterator<Item = (&str, Vec<u8>)> + '_ {
    raw_query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let spaced = v.replace('+', " ");
        (k, percent_decode(spaced.as_bytes()).collect())
    })
}

/// The raw values of parameter `name` (no decoding: for finding `sig` cheaply).
fn raw_values<'q>(raw_query: &'q str, name: &'q str) -> impl Iterator<Item = &'q str> + 'q {
    raw_query.split('&').filter_map(move |pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Every parameter but `sig`, decoded, sorted, re-encoded: what the MAC covers.
fn canonical(raw_query: &str) -> String {
    let mut pairs: Vec<_> = pairs(raw_query).filter(|(k, _)| *k != "sig").collect();
    pairs.sort();
    let mut out = String::with_capacity(raw_query.len());
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.extend(percent_encode(k.as_bytes(), ESCAPED));
        out.push('=');
        out.extend(percent_encode(v, ESCAPED));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(specs: &[&str]) -> Keyring {
        Keyring::new(specs.iter().map(|s| s.parse().expect("key")).collect()).expect("ring")
    }

    const Q: &str =
        "cid=123&uid=U1&type=button_url&to=https%3A%2F%2Fpartner.test%2Fa%3Fb%3D1&tag=A%2CB";

    fn signed(ring: &Keyring, q: &str) -> String {
        format!("{q}&sig={}", ring.sign(q).expect("a key"))
    }

    #[test]
    fn a_signed_link_verifies_and_survives_harmless_rewrites() {
        let r = ring(&["k1:0123456789abcdef0123"]);
        let link = signed(&r, Q);
        assert_eq!(r.verify(&link, 0), Signature::Valid);
        // Reordered parameters, lower-case escapes, an escaped unreserved character in a value.
        let sig = link.rsplit_once("&sig=").map(|(_, s)| s).unwrap_or("");
        let rewritten = format!(
            "sig={sig}&tag=A%2cB&to=https%3a%2f%2fpartner.test%2Fa%3Fb%3D1&type=button%5Furl&uid=U1&cid=123"
        );
        assert_eq!(r.verify(&rewritten, 0), Signature::Valid);
        assert_eq!(r.verify(Q, 0), Signature::Unsigned);
    }

    #[test]
    fn any_change_of_meaning_breaks_it() {
        let r = ring(&["k1:0123456789abcdef0123"]);
        let link = signed(&r, Q);
        for tampered in [
            link.replace("uid=U1", "uid=U2"),
            link.replace("partner.test", "partner.tesT"),
            link.replace("cid=123", "cid=124"),
            link.replace("tag=A%2CB", "tag=A%2CC"),
            format!("{link}&utm_source=x"),
            link.replace("&type=button_url", ""),
            format!("{link}&uid=U1"),
        ] {
            assert_eq!(
                r.verify(&tampered, 0),
                Signature::Invalid(SignatureError::Mismatch),
                "{tampered}"
            );
        }
        // An escaped name is not the parameter /__track reads: `%75id` is not `uid`.
        assert_eq!(
            r.verify(&link.replace("uid=U1", "%75id=U1"), 0),
            Signature::Invalid(SignatureError::Mismatch)
        );
        assert_eq!(
            r.verify(&format!("{link}&sig=k1.AAAA"), 0),
            Signature::Invalid(SignatureError::Malformed)
        );
        let forged = link.replace("sig=k1.", "sig=k2.");
        assert_eq!(
            r.verify(&forged, 0),
            Signature::Invalid(SignatureError::UnknownKey)
        );
    }

    #[test]
    fn keys_rotate_the_first_signs_all_verify() {
        let old = ring(&["old:0123456789abcdef0123"]);
        let rotated = ring(&["new:fedcba9876543210fedc", "old:0123456789abcdef0123"]);
        let old_link = signed(&old, Q);
        let new_link = signed(&rotated, Q);
        assert!(new_link.contains("sig=new."));
        assert_eq!(rotated.verify(&old_link, 0), Signature::Valid);
        assert_eq!(rotated.verify(&new_link, 0), Signature::Valid);
        // Retired: the old key is gone.
        let retired = ring(&["new:fedcba9876543210fedc"]);
        assert_eq!(
            retired.verify(&old_link, 0),
            Signature::Invalid(SignatureError::UnknownKey)
        );
        // Same id, other secret: a forgery.
        let impostor = ring(&["old:this-is-not-the-secret"]);
        assert_eq!(
            impostor.verify(&old_link, 0),
            Signature::Invalid(SignatureError::Mismatch)
        );
    }

    #[test]
    fn expiry_is_signed_and_enforced() {
        let r = ring(&["k1:0123456789abcdef0123"]);
        let link = signed(&r, &format!("{Q}&exp=1000"));
        assert_eq!(r.verify(&link, 1000), Signature::Valid);
        assert_eq!(
            r.verify(&link, 1001),
            Signature::Invalid(SignatureError::Expired)
        );
        let extended = link.replace("exp=1000", "exp=9999");
        assert_eq!(
            r.verify(&extended, 1001),
            Signature::Invalid(SignatureError::Mismatch)
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        for bad in [
            "nocolon",
            ":0123456789abcdef",
            "k1:short",
            "k 1:0123456789abcdef",
        ] {
            assert!(bad.parse::<SigningKey>().is_err(), "{bad}");
        }
        let dup = Keyring::new(vec![
            "a:0123456789abcdef".parse().expect("key"),
            "a:fedcba9876543210".parse().expect("key"),
        ]);
        assert!(dup.is_err());
        let key: SigningKey = "a:0123456789abcdef".parse().expect("key");
        assert!(
            !format!("{key:?}").contains("0123"),
            "the secret is not printed"
        );
    }
}
