//! Any bytes as a received frame: parsing never panics, and whatever parses
//! is emitted back into bytes that parse into the same message.

#![no_main]

use ferrolb_speaker::wire::{ArpRepr, Frame, NdpRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let arp = ArpRepr::parse(frame);
    let ndp = NdpRepr::parse(frame);
    if let Ok(arp) = arp {
        assert_eq!(ArpRepr::parse(&arp.to_vec()), Ok(arp));
    }
    if let Ok(ndp) = ndp {
        assert_eq!(NdpRepr::parse(&ndp.to_vec()), Ok(ndp));
    }
    if let Ok(parsed) = Frame::parse(frame) {
        let bytes = parsed.to_vec();
        assert_eq!(bytes.len(), parsed.buffer_len());
        assert_eq!(Frame::parse(&bytes), Ok(parsed));
    }
});
