//! What makes two clicks "the same click" (docs/link-contract.md): the same member (or, for an
//! anonymous click, the same client address and User-Agent), campaign, source, type, target
//! and tags. The key is a hash of those, so it has a fixed size in memory and in Redis and
//! carries no uid in clear. Its first part is a hash of the member alone (`owner`), so an
//! erasure can find and remove a member's keys (`Dedup::erase_member`).

use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::domain::Click;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DedupKey {
    /// `owner_of_member(uid)`, or zero for an anonymous click.
    owner: [u8; 8],
    click: [u8; 16],
}

/// The part of a member's keys that names the member: a hash of the uid.
pub fn owner_of_member(uid: &str) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(b"clicktrack dedup member\0")
        .chain_update(uid.as_bytes())
        .finalize();
    let mut owner = [0u8; 8];
    owner.copy_from_slice(&digest[..8]);
    owner
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl DedupKey {
    pub fn of(click: &Click, client: IpAddr) -> DedupKey {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            // Length-prefixed, so no two different field lists hash the same bytes.
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        match &click.uid {
            Some(uid) => {
                field(b"member");
                field(uid.as_bytes());
            }
            None => {
                field(b"anonymous");
                field(client.to_string().as_bytes());
                field(click.user_agent.as_deref().unwrap_or("").as_bytes());
            }
        }
        field(&click.campaign_id.get().to_le_bytes());
        field(&click.source_campaign_id.to_le_bytes());
        field(click.interaction_type.as_str().as_bytes());
        field(click.target.as_bytes());
        for tag in &click.tags {
            field(tag.as_bytes());
        }
        let digest = h.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        DedupKey {
            owner: click.uid.as_deref().map_or([0u8; 8], owner_of_member),
            click: key,
        }
    }

    /// `owner:click` in hex: a member's Redis keys share the prefix `owner_hex(uid):`.
    pub fn hex(&self) -> String {
        format!("{}:{}", hex(&self.owner), hex(&self.click))
    }

    pub fn owner(&self) -> [u8; 8] {
        self.owner
    }
}

/// The first part of the Redis keys of `uid`'s clicks.
pub fn owner_hex(uid: &str) -> String {
    hex(&owner_of_member(uid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CampaignId, InteractionType, LineUid};

    fn click(uid: Option<&str>, tags: &[&str]) -> Click {
        Click {
            click_id: uuid::Uuid::now_v7(),
            received_at: time::OffsetDateTime::now_utc(),
            uid: uid.map(|u| LineUid::parse(u).expect("valid uid")),
            campaign_id: CampaignId::new(123).expect("positive"),
            source_campaign_id: 1,
            interaction_type: InteractionType::ButtonUrl,
            target: "https://example.com/".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            user_agent: Some("Mozilla/5.0".into()),
        }
    }

    #[test]
    fn the_same_click_has_the_same_key_and_any_difference_changes_it() {
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let other_ip: IpAddr = "192.0.2.2".parse().expect("ip");
        let a = click(Some("U1"), &["A", "B"]);
        // A new click id and arrival time: still the same click.
        assert_eq!(
            DedupKey::of(&a, ip),
            DedupKey::of(&click(Some("U1"), &["A", "B"]), ip)
        );
        // A member is a member from any address.
        assert_eq!(DedupKey::of(&a, ip), DedupKey::of(&a, other_ip));
        let variants = [
            click(Some("U2"), &["A", "B"]),
            click(Some("U1"), &["A"]),
            click(Some("U1"), &["AB"]),
            click(Some("U1"), &["B", "A"]),
            Click {
                campaign_id: CampaignId::new(124).expect("positive"),
                ..click(Some("U1"), &["A", "B"])
            },
            Click {
                source_campaign_id: 2,
                ..click(Some("U1"), &["A", "B"])
            },
            Click {
                interaction_type: InteractionType::ImageClick,
                ..click(Some("U1"), &["A", "B"])
            },
            Click {
                target: "https://example.com/x".into(),
                ..click(Some("U1"), &["A", "B"])
            },
            click(None, &["A", "B"]),
        ];
        for v in &variants {
            assert_ne!(DedupKey::of(&a, ip), DedupKey::of(v, ip), "{v:?}");
        }
        // Anonymous clicks: the address and the User-Agent are the identity.
        let anon = click(None, &[]);
        assert_ne!(DedupKey::of(&anon, ip), DedupKey::of(&anon, other_ip));
        let other_ua = Click {
            user_agent: Some("Other".into()),
            ..click(None, &[])
        };
        assert_ne!(DedupKey::of(&anon, ip), DedupKey::of(&other_ua, ip));
        assert_eq!(DedupKey::of(&anon, ip).hex().len(), 16 + 1 + 32);
        assert!(
            DedupKey::of(&a, ip)
                .hex()
                .starts_with(&format!("{}:", owner_hex("U1")))
        );
    }
}
