//! API server connect targets as kernel map keys.

use std::net::{IpAddr, SocketAddr};

use probe_common::targets::{AF_INET, AF_INET6, TargetKey};

/// The keys that match connects to `addr`: the address itself and, for IPv4, its IPv4-mapped
/// IPv6 form (`::ffff:a.b.c.d`), which dual-stack sockets use.
#[must_use]
pub fn keys_for(addr: SocketAddr) -> Vec<TargetKey> {
    match addr.ip() {
        IpAddr::V4(v4) => {
            let mut plain = TargetKey { family: AF_INET, port: addr.port(), addr: [0; 16] };
            plain.addr[..4].copy_from_slice(&v4.octets());
            let mapped = TargetKey { family: AF_INET6, port: addr.port(), addr: v4.to_ipv6_mapped().octets() };
            vec![plain, mapped]
        }
        IpAddr::V6(v6) => {
            let mut keys = vec![TargetKey { family: AF_INET6, port: addr.port(), addr: v6.octets() }];
            // An IPv4-mapped target also matches plain IPv4 connects to the same address.
            if let Some(v4) = v6.to_ipv4_mapped() {
                keys.extend(keys_for(SocketAddr::new(IpAddr::V4(v4), addr.port())).into_iter().take(1));
            }
            keys
        }
    }
}

/// Renders a key back as `ADDR:PORT` (for logs and evidence).
#[must_use]
pub fn render(key: &TargetKey) -> String {
    if key.family == AF_INET {
        let ip = std::net::Ipv4Addr::new(key.addr[0], key.addr[1], key.addr[2], key.addr[3]);
        SocketAddr::new(ip.into(), key.port).to_string()
    } else {
        SocketAddr::new(std::net::Ipv6Addr::from(key.addr).into(), key.port).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_targets_get_their_mapped_form() {
        let keys = keys_for("10.0.0.1:443".parse().unwrap());
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].family, AF_INET);
        assert_eq!(&keys[0].addr[..4], &[10, 0, 0, 1]);
        assert_eq!(&keys[0].addr[4..], &[0; 12]);
        assert_eq!(keys[0].port, 443);
        assert_eq!(keys[1].family, AF_INET6);
        assert_eq!(render(&keys[1]), "[::ffff:10.0.0.1]:443");
        assert_eq!(render(&keys[0]), "10.0.0.1:443");
    }

    #[test]
    fn ipv6_targets() {
        let keys = keys_for("[::1]:6443".parse().unwrap());
        assert_eq!(keys.len(), 1);
        assert_eq!(render(&keys[0]), "[::1]:6443");
        let keys = keys_for("[::ffff:127.0.0.1]:6443".parse().unwrap());
        assert_eq!(keys.iter().map(render).collect::<Vec<_>>(), vec!["[::ffff:127.0.0.1]:6443", "127.0.0.1:6443"]);
    }
}
