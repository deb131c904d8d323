//! Who announces a Service, kept where `kubectl get servicel2statuses`
//! shows it: [`plan_statuses`] turns this node's ownership decisions into
//! the few writes of the Service's status object ([`StatusWrite`]) that
//! this node owes. Pure: decisions, interfaces and the objects as last seen
//! in, writes out; the shell (`l2_status_writer`) carries them out.
//!
//! One object per Service, written by its owner, naming the node, the
//! interfaces that carry the addresses there and the addresses. A speaker
//! writes only when what it has to say changes — it becomes the owner, or
//! the addresses or interfaces it announces on change — never because it
//! looked again: a [`StatusBook`] remembers what it last said. Two speakers
//! that both believe they own (a partitioned LAN) therefore write once each
//! and never fight; when the membership changes (the partition heals) each
//! looks at the object afresh, so the owner corrects what the other side
//! wrote. When nobody announces a Service, or its addresses are gone, the
//! first live node by name (the one that raises `NoAnnouncingNode`) removes
//! the object, since an owner that died cannot.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_config::ServiceKey;

use crate::announcer::Announcements;
use crate::interfaces::{InterfaceFacts, eligibility, permits};
use crate::ownership::Decision;

/// What a Service's status object says: who announces it, where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct L2Status {
    /// The node that announces.
    pub node: String,
    /// The node's interfaces that answer for the addresses, by name.
    pub interfaces: Vec<String>,
    /// The addresses announced, in status order.
    pub addresses: Vec<IpAddr>,
}

/// What this node last said about a Service's object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stated {
    /// That it says this.
    Present(L2Status),
    /// That there is none: nobody announces the Service.
    Absent,
}

/// One write the shell makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusWrite {
    /// Create or take over the Service's object with this content.
    Write {
        /// Which Service.
        service: ServiceKey,
        /// What the object says.
        status: L2Status,
    },
    /// Delete the Service's object.
    Remove {
        /// Which Service.
        service: ServiceKey,
    },
}

impl StatusWrite {
    /// The Service the write is about.
    pub fn service(&self) -> &ServiceKey {
        match self {
            StatusWrite::Write { service, .. } | StatusWrite::Remove { service } => service,
        }
    }
}

/// The facts one status plan is made from, as this node sees them.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// This node's name.
    pub me: &'a str,
    /// The live speakers, by name.
    pub live: &'a BTreeSet<String>,
    /// Every Service's decision (see [`crate::ownership::Plan::decisions`]).
    pub decisions: &'a [Decision],
    /// What this node announces, with the interfaces each address is
    /// limited to.
    pub announcements: &'a Announcements,
    /// This node's interfaces as last scanned.
    pub interfaces: &'a [InterfaceFacts],
}

/// The interfaces of this node that answer for any of `addresses`, by
/// name: those the announcer opens for them (see
/// [`Announcements::owned_on`]).
fn carrying(
    addresses: &[IpAddr],
    announcements: &Announcements,
    interfaces: &[InterfaceFacts],
) -> Vec<String> {
    let mut names: BTreeSet<String> = BTreeSet::new();
    for facts in interfaces {
        let judged = eligibility(facts);
        let carries = addresses.iter().any(|ip| {
            announcements
                .interfaces(*ip)
                .is_some_and(|named| permits(&judged, &facts.name, named))
        });
        if carries {
            names.insert(facts.name.clone());
        }
    }
    names.into_iter().collect()
}

/// What this node has to say about each Service it has something to say
/// about: its owner states the status, the first live node states that
/// there is none when nobody announces (or the Service holds no
/// announceable address but still has an object).
fn wanted<'a>(
    facts: &Facts<'a>,
    observed: &'a BTreeMap<ServiceKey, L2Status>,
) -> BTreeMap<&'a ServiceKey, Stated> {
    let speaks_for_nobody = facts.live.iter().next().map(String::as_str) == Some(facts.me);
    let mut wanted = BTreeMap::new();
    for decision in facts.decisions {
        if decision.election.is_me() {
            let status = L2Status {
                node: facts.me.to_owned(),
                interfaces: carrying(&decision.addresses, facts.announcements, facts.interfaces),
                addresses: decision.addresses.clone(),
            };
            wanted.insert(&decision.service, Stated::Present(status));
        } else if decision.election.owner.is_none() && speaks_for_nobody {
            wanted.insert(&decision.service, Stated::Absent);
        }
    }
    if speaks_for_nobody {
        for service in observed.keys() {
            if !facts.decisions.iter().any(|d| d.service == *service) {
                wanted.insert(service, Stated::Absent);
            }
        }
    }
    wanted
}

/// What a node said about each Service's object, and under which
/// membership it said it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusBook {
    stated: BTreeMap<ServiceKey, Stated>,
    live: BTreeSet<String>,
}

impl StatusBook {
    /// Nothing said yet.
    pub fn new() -> StatusBook {
        StatusBook::default()
    }

    /// Forgets what was said about `service`, so the next plan says it
    /// again if the object does not show it (a write that failed).
    pub fn forget(&mut self, service: &ServiceKey) {
        self.stated.remove(service);
    }
}

/// The writes this node owes, given the objects as last seen (`observed`,
/// by Service) and what it said before (`book`, updated here). A Service
/// gets a write only when what this node has to say about it differs from
/// what it said last and from what the object already says; a Service it
/// has nothing to say about is forgotten, so that saying it again later
/// (owning it again) writes again. A change of the live set forgets
/// everything said: the object is compared afresh, and written only if it
/// differs.
pub fn plan_statuses(
    facts: &Facts<'_>,
    observed: &BTreeMap<ServiceKey, L2Status>,
    book: &mut StatusBook,
) -> Vec<StatusWrite> {
    let wanted = wanted(facts, observed);
    if book.live != *facts.live {
        book.live.clone_from(facts.live);
        book.stated.clear();
    }
    let stated = &mut book.stated;
    stated.retain(|service, _| wanted.contains_key(service));
    let mut writes = Vec::new();
    for (service, want) in wanted {
        if stated.get(service) == Some(&want) {
            continue;
        }
        let already = match &want {
            Stated::Present(status) => observed.get(service) == Some(status),
            Stated::Absent => !observed.contains_key(service),
        };
        if !already {
            writes.push(match &want {
                Stated::Present(status) => StatusWrite::Write {
                    service: service.clone(),
                    status: status.clone(),
                },
                Stated::Absent => StatusWrite::Remove {
                    service: service.clone(),
                },
            });
        }
        stated.insert(service.clone(), want);
    }
    writes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::election::{Election, Outcome, Reason};
    use crate::wire::MacAddr;

    const IFF_UP_BROADCAST: u32 = 0x1 | 0x2;

    fn interface(name: &str) -> InterfaceFacts {
        InterfaceFacts {
            name: name.into(),
            index: 2,
            mac: Some(MacAddr(2, 0, 0, 0, 0, 1)),
            flags: IFF_UP_BROADCAST,
            master: None,
            ipv6_link_local: None,
        }
    }

    fn lo() -> InterfaceFacts {
        InterfaceFacts {
            flags: 0x1 | 0x8,
            mac: None,
            ..interface("lo")
        }
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn decision(service: &str, addresses: &[&str], owner: Option<&str>, me: &str) -> Decision {
        let outcome = match owner {
            Some(o) if o == me => Outcome::Owner,
            Some(_) => Outcome::NotOwner(Reason::Outranked),
            None => Outcome::NotOwner(Reason::NoServingEndpoints),
        };
        Decision {
            service: ServiceKey::new("default", service),
            addresses: ips(addresses),
            election: Election {
                owner: owner.map(str::to_owned),
                outcome,
            },
        }
    }

    fn live(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    /// What `me` announces for `decisions`, on every interface (no pool
    /// list) unless `only` names some.
    fn announced(decisions: &[Decision], only: &[&str]) -> Announcements {
        let mut announcements = Announcements::new();
        for d in decisions.iter().filter(|d| d.election.is_me()) {
            for ip in &d.addresses {
                announcements.announce(*ip, only.iter().copied());
            }
        }
        announcements
    }

    struct Node {
        me: &'static str,
        interfaces: Vec<InterfaceFacts>,
        book: StatusBook,
    }

    impl Node {
        fn new(me: &'static str) -> Node {
            Node {
                me,
                interfaces: vec![lo(), interface("eth0")],
                book: StatusBook::new(),
            }
        }

        fn plan(
            &mut self,
            live: &BTreeSet<String>,
            decisions: &[Decision],
            only: &[&str],
            observed: &BTreeMap<ServiceKey, L2Status>,
        ) -> Vec<StatusWrite> {
            let announcements = announced(decisions, only);
            plan_statuses(
                &Facts {
                    me: self.me,
                    live,
                    decisions,
                    announcements: &announcements,
                    interfaces: &self.interfaces,
                },
                observed,
                &mut self.book,
            )
        }
    }

    impl Node {
        /// Plans against `objects` and applies the writes, as the shell and
        /// the API server would.
        fn look(
            &mut self,
            live: &BTreeSet<String>,
            decisions: &[Decision],
            objects: &mut BTreeMap<ServiceKey, L2Status>,
        ) -> Vec<StatusWrite> {
            let writes = self.plan(live, decisions, &[], objects);
            apply(objects, &writes);
            writes
        }
    }

    /// Applies `writes` to the objects, as the API server would.
    fn apply(objects: &mut BTreeMap<ServiceKey, L2Status>, writes: &[StatusWrite]) {
        for write in writes {
            match write {
                StatusWrite::Write { service, status } => {
                    objects.insert(service.clone(), status.clone());
                }
                StatusWrite::Remove { service } => {
                    objects.remove(service);
                }
            }
        }
    }

    fn web() -> ServiceKey {
        ServiceKey::new("default", "web")
    }

    #[test]
    fn the_owner_writes_node_interfaces_and_addresses_once() {
        let all = live(&["node-1", "node-2"]);
        let decided = [decision(
            "web",
            &["198.51.100.10", "2001:db8::10"],
            Some("node-2"),
            "node-2",
        )];
        let mut owner = Node::new("node-2");
        let mut objects = BTreeMap::new();
        let writes = owner.plan(&all, &decided, &[], &objects);
        assert_eq!(
            writes,
            vec![StatusWrite::Write {
                service: web(),
                status: L2Status {
                    node: "node-2".into(),
                    interfaces: vec!["eth0".into()],
                    addresses: ips(&["198.51.100.10", "2001:db8::10"]),
                },
            }]
        );
        apply(&mut objects, &writes);
        // Looking again, with or without the object's echo, writes nothing.
        for _ in 0..3 {
            assert!(owner.plan(&all, &decided, &[], &objects).is_empty());
            assert!(owner.plan(&all, &decided, &[], &BTreeMap::new()).is_empty());
        }
        // Non-owners never write while an owner announces.
        let mut other = Node::new("node-1");
        let seen = [decision(
            "web",
            &["198.51.100.10", "2001:db8::10"],
            Some("node-2"),
            "node-1",
        )];
        assert!(other.plan(&all, &seen, &[], &objects).is_empty());
    }

    #[test]
    fn a_new_owner_takes_the_object_over_from_a_dead_one() {
        let mut objects = BTreeMap::from([(
            web(),
            L2Status {
                node: "node-1".into(),
                interfaces: vec!["eth0".into()],
                addresses: ips(&["198.51.100.10"]),
            },
        )]);
        let mut survivor = Node::new("node-2");
        let decided = [decision(
            "web",
            &["198.51.100.10"],
            Some("node-2"),
            "node-2",
        )];
        let writes = survivor.plan(&live(&["node-2"]), &decided, &[], &objects);
        apply(&mut objects, &writes);
        assert_eq!(objects[&web()].node, "node-2");
        assert_eq!(writes.len(), 1);
    }

    #[test]
    fn a_restarted_owner_whose_object_is_right_writes_nothing() {
        let objects = BTreeMap::from([(
            web(),
            L2Status {
                node: "node-1".into(),
                interfaces: vec!["eth0".into()],
                addresses: ips(&["198.51.100.10"]),
            },
        )]);
        let decided = [decision(
            "web",
            &["198.51.100.10"],
            Some("node-1"),
            "node-1",
        )];
        let mut restarted = Node::new("node-1");
        assert!(
            restarted
                .plan(&live(&["node-1"]), &decided, &[], &objects)
                .is_empty()
        );
    }

    #[test]
    fn only_the_interfaces_that_carry_the_address_are_named() {
        let decided = [decision(
            "web",
            &["198.51.100.10"],
            Some("node-1"),
            "node-1",
        )];
        let mut node = Node::new("node-1");
        // A container bridge is used only when named; a port of a bond never.
        node.interfaces.push(interface("eth1"));
        node.interfaces.push(interface("cni0"));
        node.interfaces.push(InterfaceFacts {
            master: Some("bond0".into()),
            ..interface("eth2")
        });
        let name = |writes: Vec<StatusWrite>| match &writes[..] {
            [StatusWrite::Write { status, .. }] => status.interfaces.clone(),
            other => panic!("{other:?}"),
        };
        let all = name(node.plan(&live(&["node-1"]), &decided, &[], &BTreeMap::new()));
        assert_eq!(all, vec!["eth0", "eth1"]);
        node.book = StatusBook::new();
        let limited = name(node.plan(
            &live(&["node-1"]),
            &decided,
            &["eth1", "cni0", "eth2"],
            &BTreeMap::new(),
        ));
        assert_eq!(limited, vec!["cni0", "eth1"]);
    }

    #[test]
    fn an_interface_that_appears_under_an_owned_address_is_written() {
        let decided = [decision(
            "web",
            &["198.51.100.10"],
            Some("node-1"),
            "node-1",
        )];
        let all = live(&["node-1"]);
        let mut node = Node::new("node-1");
        let mut objects = BTreeMap::new();
        node.look(&all, &decided, &mut objects);
        node.interfaces.push(interface("eth1"));
        let writes = node.plan(&all, &decided, &[], &objects);
        apply(&mut objects, &writes);
        assert_eq!(writes.len(), 1);
        assert_eq!(objects[&web()].interfaces, vec!["eth0", "eth1"]);
    }

    #[test]
    fn with_nobody_announcing_the_first_live_node_alone_removes_the_object() {
        let all = live(&["node-1", "node-2", "node-3"]);
        let mut objects = BTreeMap::from([(
            web(),
            L2Status {
                node: "node-3".into(),
                interfaces: vec!["eth0".into()],
                addresses: ips(&["198.51.100.10"]),
            },
        )]);
        let mut removers = Vec::new();
        for me in ["node-1", "node-2", "node-3"] {
            let decided = [decision("web", &["198.51.100.10"], None, me)];
            let writes = Node::new(me).plan(&all, &decided, &[], &objects);
            if !writes.is_empty() {
                assert_eq!(writes, vec![StatusWrite::Remove { service: web() }]);
                removers.push(me);
            }
        }
        assert_eq!(removers, vec!["node-1"]);
        apply(
            &mut objects,
            &[StatusWrite::Remove {
                service: web().clone(),
            }],
        );
        assert!(objects.is_empty());
    }

    #[test]
    fn an_object_of_a_service_that_lost_its_addresses_is_removed() {
        let objects = BTreeMap::from([(
            web(),
            L2Status {
                node: "node-2".into(),
                interfaces: vec!["eth0".into()],
                addresses: ips(&["198.51.100.10"]),
            },
        )]);
        let mut first = Node::new("node-1");
        let all = live(&["node-1", "node-2"]);
        assert_eq!(
            first.plan(&all, &[], &[], &objects),
            vec![StatusWrite::Remove { service: web() }]
        );
        // Said once: the object's late echo does not repeat it.
        assert!(first.plan(&all, &[], &[], &objects).is_empty());
        assert!(
            Node::new("node-2")
                .plan(&all, &[], &[], &objects)
                .is_empty()
        );
    }

    #[test]
    fn two_nodes_that_both_believe_they_own_write_once_each_and_stop() {
        // A partitioned LAN: each side elects itself.
        let mut a = Node::new("node-1");
        let mut b = Node::new("node-2");
        let mut objects = BTreeMap::new();
        let mut writes = 0;
        for _ in 0..10 {
            for node in [&mut a, &mut b] {
                let me = node.me;
                let decided = [decision("web", &["198.51.100.10"], Some(me), me)];
                let planned = node.plan(&live(&[me]), &decided, &[], &objects);
                writes += planned.len();
                apply(&mut objects, &planned);
            }
        }
        assert_eq!(writes, 2);
    }

    #[test]
    fn owning_again_after_losing_writes_again() {
        let all = live(&["node-1", "node-2"]);
        let mut a = Node::new("node-1");
        let mut objects = BTreeMap::new();
        let mine = [decision(
            "web",
            &["198.51.100.10"],
            Some("node-1"),
            "node-1",
        )];
        a.look(&all, &mine, &mut objects);
        // node-2 takes over and writes.
        let theirs = [decision(
            "web",
            &["198.51.100.10"],
            Some("node-2"),
            "node-1",
        )];
        assert!(a.plan(&all, &theirs, &[], &objects).is_empty());
        Node::new("node-2").look(
            &all,
            &[decision(
                "web",
                &["198.51.100.10"],
                Some("node-2"),
                "node-2",
            )],
            &mut objects,
        );
        assert_eq!(objects[&web()].node, "node-2");
        // Back to node-1.
        let writes = a.plan(&all, &mine, &[], &objects);
        apply(&mut objects, &writes);
        assert_eq!(writes.len(), 1);
        assert_eq!(objects[&web()].node, "node-1");
    }

    #[test]
    fn after_a_partition_heals_the_owner_corrects_what_the_other_side_wrote() {
        let address = ["198.51.100.10"];
        let mut a = Node::new("node-1");
        let mut b = Node::new("node-2");
        let mut objects = BTreeMap::new();
        let together = live(&["node-1", "node-2"]);
        let owned_by_a = |me| [decision("web", &address, Some("node-1"), me)];
        a.look(&together, &owned_by_a("node-1"), &mut objects);
        // Partitioned: each side sees the other gone; node-2, alone, elects
        // itself and writes after node-1 looked. Neither writes again.
        let alone = [decision("web", &address, Some("node-2"), "node-2")];
        assert!(
            a.look(&live(&["node-1"]), &owned_by_a("node-1"), &mut objects)
                .is_empty()
        );
        assert_eq!(b.look(&live(&["node-2"]), &alone, &mut objects).len(), 1);
        for _ in 0..3 {
            assert!(
                a.look(&live(&["node-1"]), &owned_by_a("node-1"), &mut objects)
                    .is_empty()
            );
            assert!(b.look(&live(&["node-2"]), &alone, &mut objects).is_empty());
        }
        assert_eq!(objects[&web()].node, "node-2");
        // Healed: node-1 owns again and says so, once.
        let writes = a.plan(&together, &owned_by_a("node-1"), &[], &objects);
        apply(&mut objects, &writes);
        assert_eq!(writes.len(), 1);
        assert!(
            b.plan(&together, &owned_by_a("node-2"), &[], &objects)
                .is_empty()
        );
        assert!(
            a.plan(&together, &owned_by_a("node-1"), &[], &objects)
                .is_empty()
        );
        assert_eq!(objects[&web()].node, "node-1");
    }

    proptest::proptest! {
        /// Whatever owners, addresses and partitions the nodes go through:
        /// with the views held still, a third look writes nothing (no two
        /// nodes fight over the object, partitioned or not), and once the
        /// LAN is whole the object names exactly the owner (or is gone when
        /// nobody announces).
        #[test]
        fn held_views_stop_writing_and_a_whole_lan_leaves_the_right_object(
            steps in proptest::collection::vec(
                (proptest::option::of(0..3usize), proptest::option::of(0..3usize), 10..13u8),
                1..12,
            )
        ) {
            let names = ["node-1", "node-2", "node-3"];
            let mut nodes: Vec<Node> = names.iter().map(|n| Node::new(n)).collect();
            let mut objects = BTreeMap::new();
            for (owner, cut, octet) in steps {
                let address = format!("198.51.100.{octet}");
                let owner = owner.map(|i| names[i]);
                let cut = cut.map(|i| names[i]);
                // The cut-off node sees itself alone and owns whatever has
                // an owner; the others see each other and elect among
                // themselves.
                let view = |me: &'static str| -> (BTreeSet<String>, Option<&'static str>) {
                    if Some(me) == cut {
                        (live(&[me]), owner.map(|_| me))
                    } else {
                        let rest: Vec<&str> =
                            names.iter().copied().filter(|n| Some(*n) != cut).collect();
                        let elected = owner.map(|o| if Some(o) == cut { rest[0] } else { o });
                        (live(&rest), elected)
                    }
                };
                let mut writes = Vec::new();
                for _ in 0..3 {
                    let mut round = 0;
                    for node in &mut nodes {
                        let (alive, elected) = view(node.me);
                        let decided = [decision("web", &[&address], elected, node.me)];
                        let planned = node.plan(&alive, &decided, &[], &objects);
                        round += planned.len();
                        apply(&mut objects, &planned);
                    }
                    writes.push(round);
                }
                proptest::prop_assert_eq!(writes[2], 0, "writes per look: {:?}", writes);
                if cut.is_none() {
                    let shown = objects.get(&web()).map(|s| (s.node.clone(), s.addresses.clone()));
                    let expected = owner.map(|o| (o.to_owned(), ips(&[&address])));
                    proptest::prop_assert_eq!(shown, expected);
                }
            }
        }
    }
}
