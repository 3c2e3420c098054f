//! `ADVERTISE_NETWORK`: a subnet, and this machine's own address inside it (for nodes on an
//! overlay network spanning hosts, where a container hostname resolves only on its own host).
//! `Config::registered_host` decides which address the node registers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::str::FromStr;

/// An IP subnet in CIDR form (`10.231.0.0/16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    network: IpAddr,
    prefix: u8,
}

// === impl Subnet ===

impl FromStr for Subnet {
    type Err = String;

    fn from_str(s: &str) -> Result<Subnet, String> {
        let bad = || format!("'{s}' is not a subnet in CIDR form (like 10.231.0.0/16)");
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Subnet {
            network: mask(addr, prefix),
            prefix,
        })
    }
}

impl Subnet {
    /// Returns whether `ip` lies in this subnet.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }

    /// Returns the first address after the network address (where a probe is routed to).
    fn first_host(&self) -> IpAddr {
        match self.network {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(1))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(1))),
        }
    }

    /// Returns this machine's address in the subnet: the source address the kernel picks for
    /// a destination inside it (a connected UDP socket; nothing is sent).
    pub fn local_address(&self) -> Result<IpAddr, String> {
        let any: IpAddr = if self.network.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let socket = UdpSocket::bind((any, 0)).map_err(|e| e.to_string())?;
        socket
            .connect((self.first_host(), 9))
            .map_err(|e| format!("no route into {self}: {e}"))?;
        let ip = socket.local_addr().map_err(|e| e.to_string())?.ip();
        if self.contains(ip) {
            Ok(ip)
        } else {
            Err(format!(
                "this machine has no address in {self} (the route into it leaves from {ip})"
            ))
        }
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Keeps the first `prefix` bits of `ip`.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & bits))
        }
        IpAddr::V6(a) => {
            let bits = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & bits))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_contain() {
        let net: Subnet = "10.231.7.9/16".parse().unwrap();
        assert_eq!(net.to_string(), "10.231.0.0/16");
        assert!(net.contains("10.231.255.1".parse().unwrap()));
        assert!(!net.contains("10.232.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let all: Subnet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        for bad in ["10.0.0.0", "10.0.0.0/33", "x/8", "10.0.0.0/-1", ""] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_local_address_is_found_inside_the_subnet() {
        let loopback: Subnet = "127.0.0.0/8".parse().unwrap();
        let ip = loopback.local_address().unwrap();
        assert!(ip.is_loopback(), "{ip}");
        // No interface has this one address; the probe (to the next address) leaves from
        // 127.0.0.1, outside it: an error that names the subnet.
        let elsewhere: Subnet = "127.255.255.254/32".parse().unwrap();
        let err = elsewhere.local_address().unwrap_err();
        assert!(err.contains("127.255.255.254/32"), "{err}");
    }
}
