//! What applying a new config would do to the Services that exist now: which
//! would move to another address, which would lose theirs, and which pending
//! ones would get one. Pure: the same start-up rebuild and reconcile the
//! controller runs, on a scratch allocator.

use std::fmt;
use std::net::IpAddr;

use ferrolb_config::{Pool, ServiceKey};

use crate::allocator::Allocator;
use crate::plan::{Desire, Notice, plan};

/// The effect of a config on one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impact {
    /// The Service.
    pub service: ServiceKey,
    /// What its status shows now.
    pub now: Vec<IpAddr>,
    /// What it would hold (empty: pending).
    pub then: Vec<IpAddr>,
    /// Why it would hold nothing, if it would not.
    pub reason: Option<String>,
}

impl fmt::Display for Impact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |ips: &[IpAddr]| {
            ips.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (self.now.is_empty(), self.then.is_empty()) {
            (true, false) => write!(f, "{}: pending -> gets {}", self.service, show(&self.then)),
            (false, false) => write!(
                f,
                "{}: moves {} -> {}",
                self.service,
                show(&self.now),
                show(&self.then)
            ),
            (_, true) => write!(
                f,
                "{}: {} -> pending ({})",
                self.service,
                if self.now.is_empty() {
                    "pending".to_owned()
                } else {
                    show(&self.now)
                },
                self.reason.as_deref().unwrap_or("no address")
            ),
        }
    }
}

/// The Services whose addresses `pools` would change, given each Service's
/// desire and current status, oldest Service first as the controller
/// restores them. Services that keep what they have are not listed.
pub fn preview(pools: &[Pool], services: &[(Desire, Vec<IpAddr>)]) -> Vec<Impact> {
    let mut allocator = Allocator::new(pools);
    for (desire, observed) in services {
        if let (Desire::Serve(request), false) = (desire, observed.is_empty()) {
            let _ = allocator.restore(request, observed);
        }
    }
    services
        .iter()
        .filter(|(desire, _)| !matches!(desire, Desire::NotServed(_)))
        .filter_map(|(desire, observed)| {
            let planned = plan(desire, observed, &mut allocator);
            (planned.addresses != *observed
                || (observed.is_empty() && planned.addresses.is_empty()))
            .then(|| Impact {
                service: desire.key().clone(),
                now: observed.clone(),
                reason: match planned.notice {
                    Some(Notice::Failed { message, .. }) => Some(message),
                    _ => None,
                },
                then: planned.addresses,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixtures;
    use ferrolb_config::Config;

    fn lb(name: &str) -> Desire {
        Desire::Serve(fixtures::lb(name))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn shrinking_a_pool_moves_the_services_outside_it_and_keeps_the_rest() {
        let pools = Config::from_yaml(
            "address-pools:\n- name: a\n  protocol: layer2\n  addresses: [198.51.100.10-198.51.100.12]\n",
        )
        .expect("valid")
        .config
        .pools;
        let services = vec![
            (lb("kept"), vec![ip("198.51.100.10")]),
            (lb("moved"), vec![ip("198.51.100.20")]),
            (lb("pending"), vec![]),
        ];
        let impacts = preview(&pools, &services);
        let lines: Vec<String> = impacts.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec![
                "default/moved: moves 198.51.100.20 -> 198.51.100.11",
                "default/pending: pending -> gets 198.51.100.12",
            ]
        );
    }

    #[test]
    fn a_service_that_would_lose_its_address_is_listed_with_the_reason() {
        let pools = Config::from_yaml(
            "address-pools:\n- name: a\n  protocol: layer2\n  addresses: [198.51.100.10/32]\n",
        )
        .expect("valid")
        .config
        .pools;
        let services = vec![
            (lb("first"), vec![ip("198.51.100.10")]),
            (lb("second"), vec![ip("198.51.100.30")]),
        ];
        let impacts = preview(&pools, &services);
        assert_eq!(impacts.len(), 1);
        assert_eq!(impacts[0].service, ServiceKey::new("default", "second"));
        assert!(impacts[0].then.is_empty());
        assert!(
            impacts[0]
                .to_string()
                .starts_with("default/second: 198.51.100.30 -> pending (")
        );
    }
}
