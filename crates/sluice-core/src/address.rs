//! Which destination addresses a webhook may reach (SPEC §6).
//!
//! Pure functions over addresses; the delivery crate applies them to URLs at
//! configuration time and to every resolved address at connect time.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DestinationError {
    #[error("URL is not valid: {0}")]
    BadUrl(String),
    #[error("URL scheme must be http or https, not {0:?}")]
    Scheme(String),
    #[error("URL must not carry user:password credentials; use custom headers")]
    Credentials,
    #[error(
        "destination address {0} is not a public address (loopback, private, link-local, CGNAT, multicast, documentation or reserved); allow it with --allow-private-destinations or the allow-list"
    )]
    NonGlobal(IpAddr),
    #[error("host {0} did not resolve to any address")]
    NoAddress(String),
}

/// The operator's rule for destinations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// `--allow-private-destinations`: every address is allowed.
    pub allow_private: bool,
    /// Networks allowed even though they are not global (an operator's allow-list).
    pub allow: Vec<IpNet>,
}

impl AddressPolicy {
    pub fn permissive() -> Self {
        AddressPolicy {
            allow_private: true,
            allow: Vec::new(),
        }
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), DestinationError> {
        if self.allow_private || is_global(ip) || self.allow.iter().any(|n| n.contains(&ip)) {
            Ok(())
        } else {
            Err(DestinationError::NonGlobal(ip))
        }
    }

    /// Checks the parts of a URL that need no DNS: scheme, credentials, and the host when it
    /// is an IP literal. Returns the host name to resolve, or `None` for an IP literal.
    pub fn check_url(&self, raw: &str) -> Result<Option<String>, DestinationError> {
        let url = url::Url::parse(raw).map_err(|e| DestinationError::BadUrl(e.to_string()))?;
        match url.scheme() {
            "http" | "https" => {}
            other => return Err(DestinationError::Scheme(other.to_owned())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DestinationError::Credentials);
        }
        match url.host() {
            None => Err(DestinationError::BadUrl("URL has no host".into())),
            Some(url::Host::Ipv4(v4)) => self.check(IpAddr::V4(v4)).map(|_| None),
            Some(url::Host::Ipv6(v6)) => self.check(IpAddr::V6(v6)).map(|_| None),
            Some(url::Host::Domain(d)) => {
                // "localhost" and its subdomains always mean loopback (RFC 6761).
                let lower = d.to_ascii_lowercase();
                if lower == "localhost" || lower.ends_with(".localhost") {
                    self.check(IpAddr::V4(Ipv4Addr::LOCALHOST))?;
                }
                Ok(Some(d.to_owned()))
            }
        }
    }
}

/// True when `ip` is a globally routable unicast address.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    const NON_GLOBAL: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network"
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // CGNAT
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local (cloud metadata lives here)
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation TEST-NET-1
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast (deprecated)
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation TEST-NET-2
        ([203, 0, 113, 0], 24),  // documentation TEST-NET-3
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, and broadcast
    ];
    !NON_GLOBAL.iter().any(|&(net, p)| in_v4(ip, net, p))
}

fn embedded_v4(ip: Ipv6Addr, at: usize) -> Ipv4Addr {
    let o = ip.octets();
    Ipv4Addr::new(o[at], o[at + 1], o[at + 2], o[at + 3])
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if ip.is_unspecified() || ip.is_loopback() {
        return false;
    }
    // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d): judge the IPv4 address.
    if s[0..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || s[5] == 0) {
        return is_global_v4(embedded_v4(ip, 12));
    }
    // NAT64 well-known prefix 64:ff9b::/96 reaches the embedded IPv4 address.
    if s[0..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_global_v4(embedded_v4(ip, 12));
    }
    // 6to4 2002::/16 embeds an IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return is_global_v4(embedded_v4(ip, 2));
    }
    let non_global = (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // 64:ff9b:1::/48 local NAT64
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
        || (s[0] == 0x2001 && s[1] < 0x200) // 2001::/23 IETF (Teredo, ORCHID, …)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x3fff && s[1] < 0x1000) // 3fff::/20 documentation
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00; // multicast
    !non_global
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_global_addresses_are_refused() {
        for a in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "239.1.1.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "192.0.0.8",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:c0a8:0101::1",
            "fec0::1",
            "100::1",
            "2001::1",
            "3fff::1",
            "64:ff9b:1::1",
        ] {
            assert!(!is_global(ip(a)), "{a} should be non-global");
            assert!(AddressPolicy::default().check(ip(a)).is_err(), "{a}");
            assert!(AddressPolicy::permissive().check(ip(a)).is_ok(), "{a}");
        }
    }

    #[test]
    fn global_addresses_are_allowed() {
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.3.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
            "2a00:1450::1",
        ] {
            assert!(is_global(ip(a)), "{a} should be global");
        }
    }

    #[test]
    fn allow_list_admits_named_networks_only() {
        let p = AddressPolicy {
            allow_private: false,
            allow: vec!["10.1.0.0/16".parse().unwrap()],
        };
        assert!(p.check(ip("10.1.2.3")).is_ok());
        assert!(p.check(ip("10.2.0.1")).is_err());
    }

    #[test]
    fn urls_are_checked_without_dns() {
        let p = AddressPolicy::default();
        assert_eq!(
            p.check_url("https://example.com/hook").unwrap(),
            Some("example.com".into())
        );
        assert!(matches!(
            p.check_url("http://127.0.0.1:9/x"),
            Err(DestinationError::NonGlobal(_))
        ));
        assert!(matches!(
            p.check_url("http://[::1]/x"),
            Err(DestinationError::NonGlobal(_))
        ));
        assert!(matches!(
            p.check_url("http://2130706433/"),
            Err(DestinationError::NonGlobal(_))
        )); // 127.0.0.1 as an integer
        assert!(matches!(
            p.check_url("http://0x7f.1/"),
            Err(DestinationError::NonGlobal(_))
        ));
        assert!(matches!(
            p.check_url("http://localhost:8080/"),
            Err(DestinationError::NonGlobal(_))
        ));
        assert!(matches!(
            p.check_url("http://a.localhost/"),
            Err(DestinationError::NonGlobal(_))
        ));
        assert!(matches!(
            p.check_url("ftp://example.com/"),
            Err(DestinationError::Scheme(_))
        ));
        assert!(matches!(
            p.check_url("https://u:p@example.com/"),
            Err(DestinationError::Credentials)
        ));
        assert!(matches!(
            p.check_url("not a url"),
            Err(DestinationError::BadUrl(_))
        ));
        assert!(
            AddressPolicy::permissive()
                .check_url("http://127.0.0.1:9/x")
                .is_ok()
        );
    }
}
