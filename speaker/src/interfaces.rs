//! Which network interfaces the speaker answers and announces on. The pure
//! part — [`eligibility`] and [`permits`] — decides from facts about each
//! link, as MetalLB does: up, broadcast-capable, ARP-enabled, not loopback,
//! not enslaved to a bond or bridge. [`scan`] reads those facts from sysfs and
//! procfs; opening sockets on the result is the announcer's job.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

use crate::wire::MacAddr;

/// `IFF_UP`, `IFF_BROADCAST`, `IFF_LOOPBACK`, `IFF_NOARP` from `<linux/if.h>`.
const IFF_UP: u32 = 0x1;
const IFF_BROADCAST: u32 = 0x2;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_NOARP: u32 = 0x80;

/// Name prefixes of interfaces that exist for containers, tunnels or local
/// plumbing rather than for the LAN (MetalLB's default `excludel2` list).
/// They are used only when an announcement names them explicitly.
pub const EXCLUDED_BY_DEFAULT: &[&str] = &[
    "docker",
    "cbr",
    "dummy",
    "virbr",
    "lxcbr",
    "veth",
    "cali",
    "tunl",
    "flannel",
    "kube-ipvs",
    "cni",
    "nodelocaldns",
    "lxc",
];

/// What the kernel says about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceFacts {
    /// Interface name (`eth0`).
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Its Ethernet address; `None` for links without one (tunnels,
    /// InfiniBand) or with the all-zero address.
    pub mac: Option<MacAddr>,
    /// `IFF_*` flags.
    pub flags: u32,
    /// The bond, bridge or VRF this interface is enslaved to.
    pub master: Option<String>,
    /// A usable (not tentative, not DAD-failed) IPv6 link-local address: the
    /// source of unsolicited Neighbor Advertisements.
    pub ipv6_link_local: Option<Ipv6Addr>,
}

/// Why an interface is never used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsuitable {
    /// Administratively down (`IFF_UP` clear).
    Down,
    /// The loopback interface.
    Loopback,
    /// ARP is disabled on it (`IFF_NOARP`, e.g. `kube-ipvs0`).
    NoArp,
    /// Not broadcast-capable (point-to-point links).
    NoBroadcast,
    /// A port of a bond, bridge or VRF: the master answers for it.
    Enslaved {
        /// The master interface.
        master: String,
    },
    /// It has no Ethernet address to answer with.
    NoMacAddress,
}

impl fmt::Display for Unsuitable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsuitable::Down => f.write_str("it is down"),
            Unsuitable::Loopback => f.write_str("it is the loopback"),
            Unsuitable::NoArp => f.write_str("ARP is disabled on it"),
            Unsuitable::NoBroadcast => f.write_str("it is not broadcast-capable"),
            Unsuitable::Enslaved { master } => write!(f, "it is enslaved to {master}"),
            Unsuitable::NoMacAddress => f.write_str("it has no Ethernet address"),
        }
    }
}

/// Whether addresses may be announced on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eligibility {
    /// Used for every address, unless an address's pool names other
    /// interfaces.
    Default,
    /// Used only for addresses whose pool names it: its name is on
    /// [`EXCLUDED_BY_DEFAULT`].
    OnlyWhenNamed,
    /// Never used.
    Unsuitable(Unsuitable),
}

/// Decides whether an interface qualifies. The order of the checks only
/// changes which reason is reported.
pub fn eligibility(facts: &InterfaceFacts) -> Eligibility {
    let unsuitable = if facts.flags & IFF_LOOPBACK != 0 {
        Some(Unsuitable::Loopback)
    } else if facts.flags & IFF_UP == 0 {
        Some(Unsuitable::Down)
    } else if let Some(master) = &facts.master {
        Some(Unsuitable::Enslaved {
            master: master.clone(),
        })
    } else if facts.flags & IFF_NOARP != 0 {
        Some(Unsuitable::NoArp)
    } else if facts.flags & IFF_BROADCAST == 0 {
        Some(Unsuitable::NoBroadcast)
    } else if facts.mac.is_none() {
        Some(Unsuitable::NoMacAddress)
    } else {
        None
    };
    match unsuitable {
        Some(reason) => Eligibility::Unsuitable(reason),
        None if EXCLUDED_BY_DEFAULT
            .iter()
            .any(|prefix| facts.name.starts_with(prefix)) =>
        {
            Eligibility::OnlyWhenNamed
        }
        None => Eligibility::Default,
    }
}

/// Whether an address whose pool lists `named` interfaces (empty: no list)
/// may be answered and announced on interface `name`.
pub fn permits(eligibility: &Eligibility, name: &str, named: &BTreeSet<String>) -> bool {
    match eligibility {
        Eligibility::Unsuitable(_) => false,
        Eligibility::Default => named.is_empty() || named.contains(name),
        Eligibility::OnlyWhenNamed => named.contains(name),
    }
}

/// Reading the interface list failed; the previous list should stay in use.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    /// A sysfs or procfs file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The kernel's answer.
        source: io::Error,
    },
    /// A sysfs file held something other than what the kernel writes there.
    #[error("unexpected contents in {path}: {contents:?}")]
    Unparsable {
        /// The file.
        path: PathBuf,
        /// What it held.
        contents: String,
    },
}

/// Reads every interface of the current network namespace from
/// `/sys/class/net` and `/proc/net/if_inet6`, ordered by index. An
/// interface that disappears while being read is left out.
pub fn scan() -> Result<Vec<InterfaceFacts>, InterfaceError> {
    scan_at(Path::new("/sys/class/net"), Path::new("/proc/net/if_inet6"))
}

fn scan_at(sys_class_net: &Path, if_inet6: &Path) -> Result<Vec<InterfaceFacts>, InterfaceError> {
    let read_failed = |path: &Path| {
        let path = path.to_owned();
        move |source| InterfaceError::Read { path, source }
    };
    let link_locals = match std::fs::read_to_string(if_inet6) {
        Ok(text) => link_locals(&text),
        // IPv6 disabled on the node: no link-local addresses anywhere.
        Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(read_failed(if_inet6)(e)),
    };
    let entries = std::fs::read_dir(sys_class_net).map_err(read_failed(sys_class_net))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_failed(sys_class_net))?;
        let Ok(name) = entry.file_name().into_string() else {
            // Linux allows any bytes in a name, but such a name cannot be
            // listed in a pool either.
            continue;
        };
        match read_interface(&entry.path(), name, &link_locals) {
            Ok(Some(facts)) => found.push(facts),
            Ok(None) => {}
            Err(e) => return Err(e),
        }
    }
    found.sort_by_key(|facts| facts.index);
    Ok(found)
}

/// Reads one `/sys/class/net/<name>` directory; `None` if the interface
/// vanished meanwhile.
fn read_interface(
    dir: &Path,
    name: String,
    link_locals: &BTreeMap<String, Ipv6Addr>,
) -> Result<Option<InterfaceFacts>, InterfaceError> {
    let Some(index) = read_attribute(dir, "ifindex")? else {
        return Ok(None);
    };
    let Some(flags) = read_attribute(dir, "flags")? else {
        return Ok(None);
    };
    let Some(address) = read_attribute(dir, "address")? else {
        return Ok(None);
    };
    let unparsable = |file: &str, contents: &str| InterfaceError::Unparsable {
        path: dir.join(file),
        contents: contents.to_owned(),
    };
    let index = index
        .parse::<u32>()
        .map_err(|_| unparsable("ifindex", &index))?;
    let flags = parse_flags(&flags).ok_or_else(|| unparsable("flags", &flags))?;
    let master = match std::fs::read_link(dir.join("master")) {
        Ok(target) => Some(
            target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(InterfaceError::Read {
                path: dir.join("master"),
                source: e,
            });
        }
    };
    Ok(Some(InterfaceFacts {
        ipv6_link_local: link_locals.get(&name).copied(),
        name,
        index,
        mac: parse_mac(&address),
        flags,
        master,
    }))
}

/// One sysfs attribute, trimmed; `None` if the file (or its interface) is
/// gone.
fn read_attribute(dir: &Path, file: &str) -> Result<Option<String>, InterfaceError> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(InterfaceError::Read { path, source }),
    }
}

/// Parses sysfs `flags` (`0x1003`).
fn parse_flags(text: &str) -> Option<u32> {
    u32::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

/// Parses sysfs `address` as an Ethernet address; anything else (longer
/// hardware addresses, none at all, all zeros) is `None`.
fn parse_mac(text: &str) -> Option<MacAddr> {
    let mut octets = [0u8; 6];
    let mut parts = text.split(':');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *octet = u8::from_str_radix(part, 16).ok()?;
    }
    if parts.next().is_some() || octets == [0; 6] {
        return None;
    }
    let [a, b, c, d, e, f] = octets;
    Some(MacAddr::new(a, b, c, d, e, f))
}

/// The first usable link-local address per interface name from
/// `/proc/net/if_inet6` (`address index prefix scope flags name`, hex).
fn link_locals(text: &str) -> BTreeMap<String, Ipv6Addr> {
    const SCOPE_LINK: u32 = 0x20;
    const IFA_F_DADFAILED: u32 = 0x08;
    const IFA_F_TENTATIVE: u32 = 0x40;
    let mut found = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [address, _index, _prefix, scope, flags, name] = fields[..] else {
            continue;
        };
        let (Ok(scope), Ok(flags), Ok(bits)) = (
            u32::from_str_radix(scope, 16),
            u32::from_str_radix(flags, 16),
            u128::from_str_radix(address, 16),
        ) else {
            continue;
        };
        if address.len() != 32
            || scope != SCOPE_LINK
            || flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) != 0
        {
            continue;
        }
        found
            .entry(name.to_owned())
            .or_insert_with(|| Ipv6Addr::from(bits));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ethernet(name: &str) -> InterfaceFacts {
        InterfaceFacts {
            name: name.to_owned(),
            index: 2,
            mac: Some(MacAddr::new(0x02, 0, 0, 0, 0, 1)),
            // UP | BROADCAST | MULTICAST, what `ip link` shows for a NIC.
            flags: 0x1003,
            master: None,
            ipv6_link_local: None,
        }
    }

    fn named(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn an_up_broadcast_ethernet_interface_is_used_by_default() {
        assert_eq!(eligibility(&ethernet("eth0")), Eligibility::Default);
        assert!(permits(&Eligibility::Default, "eth0", &named(&[])));
    }

    #[test]
    fn interfaces_the_kernel_cannot_announce_on_are_never_used() {
        let cases = [
            (
                InterfaceFacts {
                    flags: 0x1002,
                    ..ethernet("eth0")
                },
                Unsuitable::Down,
            ),
            (
                InterfaceFacts {
                    flags: 0x49,
                    ..ethernet("lo")
                },
                Unsuitable::Loopback,
            ),
            (
                InterfaceFacts {
                    flags: 0x1083,
                    ..ethernet("ipvs0")
                },
                Unsuitable::NoArp,
            ),
            (
                InterfaceFacts {
                    // UP | POINTOPOINT | MULTICAST: a link with one peer.
                    flags: 0x1011,
                    ..ethernet("ptp0")
                },
                Unsuitable::NoBroadcast,
            ),
            (
                InterfaceFacts {
                    master: Some("bond0".into()),
                    ..ethernet("eth1")
                },
                Unsuitable::Enslaved {
                    master: "bond0".into(),
                },
            ),
            (
                InterfaceFacts {
                    mac: None,
                    ..ethernet("ib0")
                },
                Unsuitable::NoMacAddress,
            ),
        ];
        for (facts, reason) in cases {
            let verdict = eligibility(&facts);
            assert_eq!(verdict, Eligibility::Unsuitable(reason), "{}", facts.name);
            assert!(!permits(&verdict, &facts.name, &named(&[&facts.name])));
        }
    }

    #[test]
    fn container_plumbing_is_used_only_when_a_pool_names_it() {
        for name in ["docker0", "cni0", "veth1234", "cali9f", "kube-ipvs0"] {
            let verdict = eligibility(&ethernet(name));
            assert_eq!(verdict, Eligibility::OnlyWhenNamed, "{name}");
            assert!(!permits(&verdict, name, &named(&[])), "{name}");
            assert!(permits(&verdict, name, &named(&[name])), "{name}");
        }
    }

    #[test]
    fn a_pool_interface_list_restricts_announcements() {
        let list = named(&["eth1"]);
        assert!(permits(&Eligibility::Default, "eth1", &list));
        assert!(!permits(&Eligibility::Default, "eth0", &list));
    }

    #[test]
    fn sysfs_values_parse() {
        assert_eq!(parse_flags("0x1003"), Some(0x1003));
        assert_eq!(parse_flags("4099"), None);
        assert_eq!(
            parse_mac("02:00:5e:10:00:0a"),
            Some(MacAddr::new(0x02, 0, 0x5e, 0x10, 0, 0x0a))
        );
        assert_eq!(parse_mac("00:00:00:00:00:00"), None, "all zeros");
        assert_eq!(parse_mac(""), None, "no address");
        assert_eq!(
            parse_mac("80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0f:c1:91"),
            None,
            "InfiniBand"
        );
    }

    #[test]
    fn link_local_addresses_skip_tentative_and_global_ones() {
        let text = "\
20010db8010000000000000000000001 02 40 00 80     eth0
fe800000000000000000000000000001 03 40 20 c0     eth1
fe80000000000000000000fffe000002 03 40 20 80     eth1
fe800000000000000000000000000003 02 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
";
        let found = link_locals(text);
        assert_eq!(
            found.get("eth0"),
            Some(&"fe80::3".parse::<Ipv6Addr>().unwrap())
        );
        assert_eq!(
            found.get("eth1"),
            Some(&"fe80::ff:fe00:2".parse::<Ipv6Addr>().unwrap()),
            "the tentative fe80::1 is skipped"
        );
        assert_eq!(found.get("lo"), None);
    }

    #[test]
    fn scanning_this_namespace_finds_the_loopback() {
        let found = scan().expect("sysfs is readable");
        let lo = found
            .iter()
            .find(|f| f.name == "lo")
            .expect("every namespace has lo");
        assert_eq!(
            eligibility(lo),
            Eligibility::Unsuitable(Unsuitable::Loopback)
        );
    }
}
