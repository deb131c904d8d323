//! A speaker that starts against a valid ConfigMap applies it and never
//! claims to fall back to the controller's last good copy, however its
//! watches race: the fallback is only for a ConfigMap that is missing or
//! invalid after its first full list.

use std::time::Duration;

use ferrolb_config::{DEFAULT_CONFIGMAP_NAME, last_good_configmap};
use ferrolb_e2e::cluster::{Cluster, start_speaker};
use ferrolb_e2e::wait_for;

#[tokio::test]
async fn a_speaker_started_against_a_valid_configmap_never_falls_back() {
    let mut cluster = Cluster::start(1).await;
    // The controller's last good copy exists: the fallback is available,
    // so only the speaker's own judgement keeps it from being taken.
    let copy = last_good_configmap(DEFAULT_CONFIGMAP_NAME);
    wait_for(
        "the controller's last good copy",
        Duration::from_secs(20),
        || async {
            let out = cluster
                .plane
                .kubectl(&["get", "configmap", "-n", "ferrolb-system", &copy]);
            if out.contains(&copy) {
                Ok(())
            } else {
                Err(out)
            }
        },
    )
    .await;
    for start in 1..=12 {
        cluster.kill_speaker(1);
        let speaker = start_speaker(&cluster.plane, cluster.lan.node(1), 1);
        let log = wait_for(
            &format!("start {start}: config applied"),
            Duration::from_secs(20),
            || async {
                let log = speaker.output();
                if log.contains("config applied") {
                    Ok(log)
                } else {
                    Err(log)
                }
            },
        )
        .await;
        assert!(
            !log.contains("last good config"),
            "start {start} fell back:\n{log}"
        );
        assert!(
            !log.lines()
                .any(|l| l.contains("WARN") && l.contains("config")),
            "start {start} warned about the config:\n{log}"
        );
        cluster.speakers[0] = Some(speaker);
    }
}
