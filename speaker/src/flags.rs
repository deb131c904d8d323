//! Reads the values of the speaker's flags that a person types: durations
//! like `4s`, `500ms` or `1m 30s`, read by `humantime` and held within
//! bounds the speaker can run with, so that a typo ends in a usage error
//! naming the flag rather than in a panic deep inside a timer.

use std::net::IpAddr;
use std::time::Duration;

/// The shortest duration a flag takes: shorter ones would spin a timer.
pub const SHORTEST: Duration = Duration::from_millis(10);

/// The longest duration a flag takes: every speaker duration is a period or
/// a timeout of the failover path, where an hour is already absurd.
pub const LONGEST: Duration = Duration::from_secs(3600);

/// Reads a duration flag's value: `4s`, `500ms`, `1m 30s`; a bare number
/// is refused, since it could mean seconds or milliseconds.
pub fn duration(text: &str) -> Result<Duration, String> {
    let value = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e}; write a duration like 4s or 500ms"))?;
    if value < SHORTEST {
        return Err(format!(
            "{} is too short; the shortest is {}",
            humantime::format_duration(value),
            humantime::format_duration(SHORTEST)
        ));
    }
    if value > LONGEST {
        return Err(format!(
            "{} is too long; the longest is {}",
            humantime::format_duration(value),
            humantime::format_duration(LONGEST)
        ));
    }
    Ok(value)
}

/// Reads the membership's address: a unicast address a peer can reach,
/// so not unspecified, multicast or the IPv4 broadcast address.
pub fn member_address(text: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = text.trim().parse().map_err(|e| format!("{text:?}: {e}"))?;
    let unicast = match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    };
    if unicast {
        Ok(ip)
    } else {
        Err(format!(
            "{ip} is not an address peers can send to; give the node's unicast address on the LAN"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_member_address_must_be_unicast() {
        assert_eq!(
            member_address("198.51.100.7"),
            Ok("198.51.100.7".parse().unwrap())
        );
        assert_eq!(
            member_address("2001:db8::7"),
            Ok("2001:db8::7".parse().unwrap())
        );
        for bad in ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"] {
            let error = member_address(bad).unwrap_err();
            assert!(
                error.contains("not an address peers can send to"),
                "{bad}: {error}"
            );
        }
        assert!(member_address("node-1").is_err());
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration("4s"), Ok(Duration::from_secs(4)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration(" 1h "), Ok(LONGEST));
        assert_eq!(duration("10ms"), Ok(SHORTEST));
    }

    #[test]
    fn zero_absurd_and_unreadable_durations_are_refused_with_a_reason() {
        assert_eq!(
            duration("0s"),
            Err("0s is too short; the shortest is 10ms".into())
        );
        assert_eq!(
            duration("9ms"),
            Err("9ms is too short; the shortest is 10ms".into())
        );
        assert_eq!(
            duration("1h 1s"),
            Err("1h 1s is too long; the longest is 1h".into())
        );
        // The reader's own words come first; ours say what to write.
        for (text, reader_says) in [
            ("100000000000000000000s", "number is too large"),
            ("4", "time unit needed"),
            ("-1s", "expected number"),
        ] {
            let error = duration(text).unwrap_err();
            assert!(error.starts_with(reader_says), "{text}: {error}");
            assert!(
                error.ends_with("; write a duration like 4s or 500ms"),
                "{text}: {error}"
            );
        }
    }
}
