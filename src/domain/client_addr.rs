//! The client's address, for de-duplicating anonymous clicks: the TCP peer, unless the peer
//! is one of our own proxies (`--trusted-proxy CIDR`), in which case `X-Forwarded-For` says
//! who it spoke for.
//!
//! Anyone can send `X-Forwarded-For`, so it is read right to left and only through trusted
//! hops: the first address that is not a trusted proxy is the client. Whatever a client put
//! further left is ignored.

use std::net::IpAddr;

use ipnet::IpNet;

pub fn client_addr<'h>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'h str>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer;
    if !is_trusted(&peer) {
        return client;
    }
    // Header lines in order, each a comma-separated list: the right end is the nearest hop.
    for hop in forwarded_for.rev().flat_map(|h| h.rsplit(',')) {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // Garbage where an address should be: trust nothing beyond it.
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return client;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("cidr")).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_addr(ip("203.0.113.9"), ["1.2.3.4"].into_iter(), &trusted);
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn trusted_hops_are_skipped_from_the_right() {
        let trusted = nets(&["10.0.0.0/8", "fd00::/8"]);
        // The client forged 6.6.6.6; the proxy appended the real one.
        let got = client_addr(
            ip("10.0.0.2"),
            ["6.6.6.6, 198.51.100.7", "10.1.1.1"].into_iter(),
            &trusted,
        );
        assert_eq!(got, ip("198.51.100.7"));
        let v6 = client_addr(ip("fd00::1"), ["2001:db8::5"].into_iter(), &trusted);
        assert_eq!(v6, ip("2001:db8::5"));
    }

    #[test]
    fn garbage_or_nothing_stops_at_the_last_trusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_addr(ip("10.0.0.2"), std::iter::empty(), &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_addr(
                ip("10.0.0.2"),
                ["1.2.3.4, nonsense, 10.0.0.9"].into_iter(),
                &trusted
            ),
            ip("10.0.0.9")
        );
        // Only proxies in the chain: the farthest one is all we know.
        assert_eq!(
            client_addr(ip("10.0.0.2"), ["10.0.0.7"].into_iter(), &trusted),
            ip("10.0.0.7")
        );
    }
}
