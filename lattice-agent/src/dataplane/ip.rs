//! iproute2, for the links and routes of VPC attachments. The agent shells out to `ip`
//! (a dependency `cargo xtask setup` installs) rather than speaking rtnetlink itself:
//! every change it makes is then one command an operator can read in the log and
//! repeat by hand.

use std::{net::Ipv4Addr, process::Command};

use ipnet::Ipv4Net;

use super::DataplaneError;

/// Runs `ip args...`; fails with the command line and ip's own message.
pub fn ip(args: &[&str]) -> Result<String, DataplaneError> {
    let output =
        Command::new("ip")
            .args(args)
            .output()
            .map_err(|source| DataplaneError::Command {
                command: format!("ip {}", args.join(" ")),
                message: source.to_string(),
            })?;
    if !output.status.success() {
        return Err(DataplaneError::Command {
            command: format!("ip {}", args.join(" ")),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether a network namespace of that name exists (under /run/netns).
pub fn netns_exists(name: &str) -> bool {
    netns_inode(name).is_some()
}

/// Which namespace the name stands for now: the inode of its nsfs file under
/// /run/netns (unique among live namespaces), or `None` when there is none of that name.
/// A namespace deleted and made again under the same name has another one.
pub fn netns_inode(name: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(std::path::Path::new("/run/netns").join(name))
        .ok()
        .map(|meta| meta.ino())
}

/// Whether a link exists in the host namespace.
pub fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// The MAC address of a link, in a namespace or (None) the host's.
pub fn mac_of(netns: Option<&str>, link: &str) -> Result<[u8; 6], DataplaneError> {
    let out = match netns {
        Some(ns) => ip(&["-n", ns, "-br", "link", "show", "dev", link])?,
        None => ip(&["-br", "link", "show", "dev", link])?,
    };
    // "<name>@<peer>  <STATE>  aa:bb:cc:dd:ee:ff <flags>"
    out.split_whitespace()
        .find_map(parse_mac)
        .ok_or_else(|| DataplaneError::Command {
            command: format!("ip -br link show dev {link}"),
            message: format!("no MAC address in {out:?}"),
        })
}

/// The ifindex of a host link.
pub fn ifindex_of(link: &str) -> Result<u32, DataplaneError> {
    let path = std::path::Path::new("/sys/class/net")
        .join(link)
        .join("ifindex");
    let text = std::fs::read_to_string(&path).map_err(|source| DataplaneError::Fs {
        op: "reading",
        path: path.clone(),
        source,
    })?;
    text.trim().parse().map_err(|_| DataplaneError::Command {
        command: format!("reading {}", path.display()),
        message: format!("not an ifindex: {text:?}"),
    })
}

/// The IPv4 addresses configured in a namespace (any link).
pub fn addresses_in(netns: &str) -> Result<Vec<Ipv4Addr>, DataplaneError> {
    let out = ip(&["-n", netns, "-4", "-o", "addr", "show"])?;
    Ok(parse_addresses(&out))
}

/// The name of the namespace a host veth's peer lives in (from the link's netnsid and
/// `ip netns list-id`), if it is a named namespace.
pub fn peer_netns_of(link: &str) -> Option<String> {
    let shown: serde_json::Value =
        serde_json::from_str(&ip(&["-j", "link", "show", "dev", link]).ok()?).ok()?;
    let nsid = shown.get(0)?.get("link_netnsid")?.as_i64()?;
    let ids: serde_json::Value =
        serde_json::from_str(&ip(&["-j", "netns", "list-id"]).ok()?).ok()?;
    ids.as_array()?
        .iter()
        .find(|e| e.get("nsid").and_then(|n| n.as_i64()) == Some(nsid))
        .and_then(|e| e.get("name")?.as_str().map(str::to_owned))
}

/// The first address of `addrs` inside `cidr`: the namespace's own VPC address.
pub fn vpc_address(addrs: &[Ipv4Addr], cidr: Ipv4Net) -> Option<Ipv4Addr> {
    addrs.iter().copied().find(|a| cidr.contains(a))
}

fn parse_mac(word: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = word.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    Some(mac)
}

/// Addresses from `ip -4 -o addr show`: "2: eth0    inet 10.0.0.1/24 brd ... scope global eth0".
fn parse_addresses(out: &str) -> Vec<Ipv4Addr> {
    out.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet")?;
            let cidr = words.next()?;
            cidr.split('/').next()?.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_brief_link_output() {
        let out = "lattice0@if12     UP             6a:1f:00:aa:bb:0c <BROADCAST,MULTICAST,UP,LOWER_UP>\n";
        let mac = out.split_whitespace().find_map(parse_mac);
        assert_eq!(mac, Some([0x6a, 0x1f, 0x00, 0xaa, 0xbb, 0x0c]));
    }

    #[test]
    fn parses_addresses() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
                   1: lo    inet 10.91.0.5/32 scope global lo\\       valid_lft forever\n";
        assert_eq!(
            parse_addresses(out),
            vec![Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(10, 91, 0, 5)]
        );
        let cidr: Ipv4Net = "10.91.0.0/16".parse().unwrap();
        assert_eq!(
            vpc_address(&parse_addresses(out), cidr),
            Some(Ipv4Addr::new(10, 91, 0, 5))
        );
    }
}
