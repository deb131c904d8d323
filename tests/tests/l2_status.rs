//! Who announces a Service, at any time: `kubectl get servicel2statuses -A`
//! names, for each announced Service, the node answering for its addresses
//! and the interface it answers on; the row follows the address when its
//! owner dies, the object is not rewritten while nothing changes, and it
//! goes when no node announces the Service.

use std::time::{Duration, Instant};

use ferrolb_e2e::cluster::{Cluster, answers};
use ferrolb_e2e::objects::LoadBalancer;
use ferrolb_e2e::{Lan, wait_for};

/// One row of `kubectl get servicel2statuses -A`, as a user reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    namespace: String,
    name: String,
    service: String,
    node: String,
    interfaces: String,
    addresses: String,
}

fn rows(cluster: &Cluster) -> (String, Vec<Row>) {
    let table = cluster.plane.kubectl(&["get", "servicel2statuses", "-A"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .map(|h| h.split_whitespace().collect())
        .unwrap_or_default();
    assert!(
        table.trim().is_empty()
            || header
                == [
                    "NAMESPACE",
                    "NAME",
                    "SERVICE",
                    "NODE",
                    "INTERFACES",
                    "ADDRESSES",
                    "AGE"
                ],
        "{table}"
    );
    let rows = lines
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cells.len(), 7, "{table}");
            Row {
                namespace: cells[0].into(),
                name: cells[1].into(),
                service: cells[2].into(),
                node: cells[3].into(),
                interfaces: cells[4].into(),
                addresses: cells[5].into(),
            }
        })
        .collect();
    (table, rows)
}

fn address_of(svc: &k8s_openapi::api::core::v1::Service) -> String {
    svc.status
        .as_ref()
        .unwrap()
        .load_balancer
        .as_ref()
        .unwrap()
        .ingress
        .as_ref()
        .unwrap()[0]
        .ip
        .clone()
        .unwrap()
}

/// The one node (1-based) answering ARP for `ip` from the client.
async fn answering(cluster: &Cluster, ip: &str, not: Option<usize>) -> usize {
    wait_for(
        &format!("exactly one node answering for {ip}"),
        Duration::from_secs(20),
        || async {
            match answers(&cluster.lan.client, ip).as_slice() {
                [mac] => match cluster.node_with_mac(mac) {
                    Some(node) if Some(node) != not => Ok(node),
                    other => Err(format!("{mac}: node {other:?}")),
                },
                other => Err(format!("answers: {other:?}")),
            }
        },
    )
    .await
}

/// Waits until the table's row for Service `name` names node `node`, on
/// `eth0`, with `ip`.
async fn shows(cluster: &Cluster, name: &str, node: usize, ip: &str) {
    let expected = Row {
        namespace: "default".into(),
        name: name.into(),
        service: name.into(),
        node: Lan::node_name(node),
        interfaces: "[\"eth0\"]".into(),
        addresses: format!("[\"{ip}\"]"),
    };
    wait_for(
        &format!("kubectl to show {name} announced by node-{node}"),
        Duration::from_secs(15),
        || async {
            let (table, rows) = rows(cluster);
            rows.contains(&expected).then_some(()).ok_or(table)
        },
    )
    .await;
}

fn resource_versions(cluster: &Cluster) -> String {
    cluster.plane.kubectl(&[
        "get",
        "servicel2statuses",
        "-A",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion} {end}",
    ])
}

/// Edits every Service (an annotation: each speaker decides again) for
/// `duration`, and asserts that no status object is written meanwhile.
async fn unwritten_while_services_are_edited(cluster: &Cluster, duration: Duration, when: &str) {
    let before = resource_versions(cluster);
    let start = Instant::now();
    let mut edit = 0;
    while start.elapsed() < duration {
        edit += 1;
        cluster.plane.kubectl(&[
            "annotate",
            "services",
            "--all",
            "-n",
            "default",
            "--overwrite",
            &format!("example.com/edit={edit}"),
        ]);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            resource_versions(cluster),
            before,
            "{when}: after {:?} and {edit} edits",
            start.elapsed()
        );
    }
}

#[tokio::test]
async fn kubectl_shows_who_announces_each_service_and_follows_a_takeover() {
    let mut cluster = Cluster::start(3).await;
    let web = cluster.expose(LoadBalancer::new("web"), &[1, 2, 3]).await;
    let api = cluster.expose(LoadBalancer::new("api"), &[1, 2, 3]).await;
    let (web_ip, api_ip) = (address_of(&web), address_of(&api));
    let web_owner = answering(&cluster, &web_ip, None).await;
    let api_owner = answering(&cluster, &api_ip, None).await;
    shows(&cluster, "web", web_owner, &web_ip).await;
    shows(&cluster, "api", api_owner, &api_ip).await;
    let (table, listed) = rows(&cluster);
    assert_eq!(listed.len(), 2, "{table}");

    // Nothing that matters changes: the Services are edited (every speaker
    // decides again) and no object is written.
    unwritten_while_services_are_edited(&cluster, Duration::from_secs(5), "idle").await;

    // The owner of web dies without a word: the node that takes its address
    // over takes the row over too.
    cluster.kill_speaker(web_owner);
    let successor = answering(&cluster, &web_ip, Some(web_owner)).await;
    shows(&cluster, "web", successor, &web_ip).await;
    let api_now = answering(&cluster, &api_ip, Some(web_owner)).await;
    shows(&cluster, "api", api_now, &api_ip).await;
    let (table, listed) = rows(&cluster);
    assert_eq!(listed.len(), 2, "{table}");
    assert!(
        listed.iter().all(|r| r.node != Lan::node_name(web_owner)),
        "{table}"
    );

    // web loses its last endpoint: nobody announces it, and its row goes;
    // api's stays.
    cluster.set_endpoints("web", &[]).await;
    wait_for(
        "web's row to go once nobody announces it",
        Duration::from_secs(15),
        || async {
            let (table, rows) = rows(&cluster);
            let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
            (names == ["api"]).then_some(()).ok_or(table)
        },
    )
    .await;
}

#[tokio::test]
async fn after_a_lan_partition_heals_the_row_names_the_rightful_owner_again() {
    let cluster = Cluster::start(3).await;
    let web = cluster.expose(LoadBalancer::new("web"), &[1, 2, 3]).await;
    let ip = address_of(&web);
    let owner = answering(&cluster, &ip, None).await;
    shows(&cluster, "web", owner, &ip).await;

    // The owner's LAN link goes down: the others take the address over and
    // say so, while the owner, alone, still believes it owns.
    cluster.lan.set_node_link(owner, false);
    let interim = wait_for(
        "another node's row while the LAN is split",
        Duration::from_secs(15),
        || async {
            let (table, rows) = rows(&cluster);
            rows.iter()
                .find(|r| r.name == "web" && r.node != Lan::node_name(owner))
                .map(|r| r.node.clone())
                .ok_or(table)
        },
    )
    .await;

    // The link comes back: the rightful owner answers again and corrects
    // the row, once; nobody fights over it afterwards.
    cluster.lan.set_node_link(owner, true);
    shows(&cluster, "web", owner, &ip).await;
    let held = format!("node-{owner} owns, {interim} held it meanwhile");
    unwritten_while_services_are_edited(&cluster, Duration::from_secs(3), &held).await;
}
