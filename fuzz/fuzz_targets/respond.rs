//! Any bytes as a frame received on an interface announcing the addresses of
//! the kernel captures: the responder never panics, answers only for an
//! address it owns, from its own MAC, with a frame that parses, and reports
//! a conflict only for an owned address claimed by another MAC.

#![no_main]

use std::net::IpAddr;

use ferrolb_speaker::respond::{Interface, OwnedAddresses, Verdict, respond};
use ferrolb_speaker::wire::{Frame, MacAddr};
use libfuzzer_sys::fuzz_target;

/// The responder's MAC in the captures (speaker/tests/fixtures).
const MAC: [u8; 6] = [0x02, 0xf1, 0xb0, 0x00, 0x00, 0x0b];

fuzz_target!(|frame: &[u8]| {
    let iface = Interface {
        name: "eth0".into(),
        mac: MacAddr::new(MAC[0], MAC[1], MAC[2], MAC[3], MAC[4], MAC[5]),
    };
    let mut owned = OwnedAddresses::new();
    for ip in ["198.51.100.2", "2001:db8:100::2", "2001:db8:100::a"] {
        owned.insert(ip.parse::<IpAddr>().unwrap());
    }
    match respond(frame, &iface, &owned) {
        Verdict::Reply(reply) => {
            assert!(owned.contains(reply.address()), "{reply:?} for {frame:?}");
            let bytes = reply.to_vec();
            assert_eq!(bytes[6..12], MAC, "{reply:?}");
            assert_eq!(Frame::parse(&bytes), Ok(reply));
        }
        Verdict::Conflict(conflict) => {
            assert!(owned.contains(conflict.address), "{conflict:?}");
            assert_ne!(conflict.mac, iface.mac, "{conflict:?}");
        }
        Verdict::Drop(_) => {}
    }
});
