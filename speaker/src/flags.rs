//! Reads the values of the speaker's flags that a person types: durations
//! like `4s`, `500ms` or `1m 30s`, read by `humantime`, and rates like
//! `100/s` or `20/500ms`, all held within bounds the speaker can run with,
//! so that a typo ends in a usage error naming the flag rather than in a
//! panic deep inside a timer.

use std::net::IpAddr;
use std::time::Duration;

use crate::rate_limit::Rate;

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

/// The largest count a rate flag takes: a million frames at once is more
/// than any LAN needs answered.
pub const MOST_AT_ONCE: u32 = 1_000_000;

/// Reads a rate flag's value: `COUNT/PERIOD`, at most COUNT events per
/// PERIOD and COUNT of them at once — `100/s`, `20/500ms`, `600/1m`. The
/// period is a duration as [`duration`] reads it; a bare unit means one of
/// it.
pub fn rate(text: &str) -> Result<Rate, String> {
    let usage = "write a rate like 100/s or 20/500ms";
    let (count, period) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("no '/' between a count and a period; {usage}"))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|e| format!("{count:?} is no count: {e}; {usage}"))?;
    if !(1..=MOST_AT_ONCE).contains(&count) {
        return Err(format!(
            "the count must be between 1 and {MOST_AT_ONCE}; {usage}"
        ));
    }
    let period = period.trim();
    let period = if period.starts_with(|c: char| c.is_ascii_alphabetic()) {
        duration(&format!("1{period}"))
    } else {
        duration(period)
    }
    .map_err(|e| format!("the period: {e}"))?;
    Rate::new(count, period).ok_or_else(|| format!("a zero rate; {usage}"))
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
    fn rates_read_as_people_write_them() {
        let rate = |text| super::rate(text).map(|r| (r.burst(), r.period()));
        assert_eq!(rate("100/s"), Ok((100, Duration::from_secs(1))));
        assert_eq!(rate(" 20 / 500ms "), Ok((20, Duration::from_millis(500))));
        assert_eq!(rate("600/1m"), Ok((600, Duration::from_secs(60))));
        assert_eq!(
            rate("100"),
            Err("no '/' between a count and a period; write a rate like 100/s or 20/500ms".into())
        );
        assert_eq!(
            rate("0/s"),
            Err(
                "the count must be between 1 and 1000000; write a rate like 100/s or 20/500ms"
                    .into()
            )
        );
        assert_eq!(
            rate("5/0s"),
            Err("the period: 0s is too short; the shortest is 10ms".into())
        );
        assert!(rate("x/s").unwrap_err().starts_with("\"x\" is no count"));
        assert!(rate("5/fortnight").unwrap_err().starts_with("the period: "));
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
