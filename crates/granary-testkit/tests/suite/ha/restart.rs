//! A leader killed and started again at once. openraft 0.9 restores a
//! member whose stored vote made it leader as leader, in its old term,
//! before it hears that the group moved on. Until then it must serve
//! nothing: a read from it must be what the group's new leader
//! acknowledged, or a refusal, never the namespace it died with.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_former_leader_serves_no_stale_read() {
    let mut g = Group::start(0);
    for round in 0..3 {
        let (old, _) = g.wait_leader(Duration::from_secs(30)).await;
        g.namenodes[old].as_mut().expect("running").kill9();
        g.namenodes[old] = None;
        let (new, _) = g.wait_leader(Duration::from_secs(30)).await;
        let path = format!("/moved-on-{round}");
        let c = DfsClient::connect(&g.rpcs[new], Identity::new("hdfs"))
            .await
            .expect("connect");
        c.mkdirs(&path, None, true)
            .await
            .expect("mkdirs on the new leader");
        g.namenodes[old] = Some(g.spawn_namenode(old));
        // As soon as it listens, and for three seconds: everything it
        // answers knows the new leader's directory.
        let (mut served, mut refused) = (0u32, 0u32);
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            match stat_at(&g.rpcs[old], &path).await {
                Ok(r) => {
                    assert!(
                        r.status.is_some_and(|s| s.is_dir()),
                        "round {round}: nn{} answered without the new leader's {path}",
                        old + 1
                    );
                    served += 1;
                }
                Err(s) => {
                    let code = granary_common::ErrorCode::from_status(&s);
                    assert!(
                        matches!(
                            code,
                            granary_common::ErrorCode::Standby | granary_common::ErrorCode::Unavailable
                        ),
                        "round {round}: nn{} said {code:?} of {path}: {}\n{}",
                        old + 1,
                        s.message(),
                        g.logs()
                    );
                    refused += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        eprintln!(
            "round {round}: restarted nn{}: {served} answers, {refused} refusals",
            old + 1
        );
        // Let it catch up before the next round kills whoever leads.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
