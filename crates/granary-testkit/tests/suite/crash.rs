//! Crash durability of the real namenode binary: kill -9 during a stream of
//! creates, renames and deletes from 8 clients; every acknowledged operation
//! must be there after a restart and the tree must be consistent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use granary_client::{DfsClient, Identity};
use granary_namenode::{layout, namespace::Namespace};
use granary_testkit::binaries::{Daemon, free_port, wait_for_port};

const CLIENTS: usize = 8;
const ROUNDS: usize = 10;

/// The directory state one client expects: names in its own folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    names: BTreeSet<String>,
}

/// What a client knows when the namenode dies: the acknowledged state, and
/// the state if the one operation in flight took effect.
struct Outcome {
    acked: Model,
    in_flight: Option<Model>,
}

async fn client_loop(addr: String, dir: String, mut model: Model, seed: u64, counter_base: u64) -> Outcome {
    let Ok(c) = DfsClient::connect(&addr, Identity::new("hdfs")).await else {
        return Outcome {
            acked: model,
            in_flight: None,
        };
    };
    let mut rng = seed;
    let mut next = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng >> 33
    };
    // Bounded: the kill comes long before this runs out.
    for i in 0..100_000u64 {
        let n = counter_base + i;
        let pick = |m: &Model, k: u64| m.names.iter().nth((k as usize) % m.names.len().max(1)).cloned();
        let mut after = model.clone();
        let res = match next() % 5 {
            0 | 1 => {
                let name = format!("f{n}");
                after.names.insert(name.clone());
                c.create_empty(&format!("{dir}/{name}"), None).await
            }
            2 => {
                let name = format!("d{n}");
                after.names.insert(name.clone());
                c.mkdirs(&format!("{dir}/{name}"), None, false).await
            }
            3 => match pick(&model, next()) {
                Some(old) => {
                    let new = format!("r{n}");
                    after.names.remove(&old);
                    after.names.insert(new.clone());
                    c.rename(&format!("{dir}/{old}"), &format!("{dir}/{new}"), false)
                        .await
                }
                None => continue,
            },
            _ => match pick(&model, next()) {
                Some(old) => {
                    after.names.remove(&old);
                    c.delete(&format!("{dir}/{old}"), true).await
                }
                None => continue,
            },
        };
        match res {
            Ok(()) => model = after,
            Err(_) => {
                return Outcome {
                    acked: model,
                    in_flight: Some(after),
                };
            }
        }
    }
    Outcome {
        acked: model,
        in_flight: None,
    }
}

fn start(bin_args: &[&str], log: &Path) -> Daemon {
    Daemon::spawn("granary-namenode", bin_args, log).expect("spawn namenode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_operations_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("name");
    let data_s = data.to_str().unwrap().to_string();
    let st = std::process::Command::new(granary_testkit::binaries::bin_path("granary-namenode"))
        .args(["format", "--data-dir", &data_s, "--superuser", "hdfs"])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let mut models = vec![Model::default(); CLIENTS];
    let mut total_acked = 0usize;
    for round in 0..ROUNDS {
        let rpc = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let args = [
            "--data-dir",
            &data_s,
            "--rpc-addr",
            &rpc,
            "--http-addr",
            &http,
            "--superuser",
            "hdfs",
        ];
        let log = tmp.path().join(format!("nn-{round}.log"));
        let mut nn = start(&args, &log);
        assert!(
            wait_for_port(&rpc, Duration::from_secs(20)),
            "namenode did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );

        // Everything acknowledged before the last kill is here.
        let c = DfsClient::connect(&rpc, Identity::new("hdfs")).await.unwrap();
        for (i, m) in models.iter().enumerate() {
            let dir = format!("/c{i}");
            c.mkdirs(&dir, None, true).await.unwrap();
            let got: BTreeSet<String> = c.list(&dir).await.unwrap().into_iter().map(|s| s.name).collect();
            assert_eq!(
                got, m.names,
                "round {round}: client {i} lost acknowledged operations"
            );
        }

        let mut tasks = Vec::new();
        for (i, m) in models.iter().enumerate() {
            let fut = client_loop(
                rpc.clone(),
                format!("/c{i}"),
                m.clone(),
                (round * 100 + i) as u64 + 1,
                (round as u64) * 1_000_000,
            );
            tasks.push(tokio::spawn(fut));
        }
        tokio::time::sleep(Duration::from_millis(300 + (round as u64 * 97) % 500)).await;
        nn.kill9();
        for (i, t) in tasks.into_iter().enumerate() {
            let out = t.await.unwrap();
            total_acked += out.acked.names.len();
            models[i] = out.acked.clone();
            // Resolve the in-flight operation by what the store holds (checked below).
            if let Some(after) = out.in_flight {
                models[i] = reconcile(&data, i, out.acked, after);
            }
        }
        // The store itself is consistent: no orphans, no cycles, counts right.
        let ns = Namespace::open(
            &layout::namespace_dir(&data),
            Default::default(),
            &Default::default(),
        )
        .unwrap();
        ns.check_consistency()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    assert!(total_acked > 0, "no operation was acknowledged at all");
}

/// After a kill, an in-flight operation may or may not have landed: take
/// whichever of the two states the store holds, and fail on anything else.
fn reconcile(data: &Path, client: usize, acked: Model, after: Model) -> Model {
    let ns = Namespace::open(
        &layout::namespace_dir(data),
        Default::default(),
        &Default::default(),
    )
    .unwrap();
    let caller = ns.caller(Identity::new("hdfs"));
    let mut got = BTreeSet::new();
    let mut start = String::new();
    loop {
        let page = ns.list(&caller, &format!("/c{client}"), &start, 0).unwrap();
        let more = page.has_more;
        for e in page.entries {
            start = e.name.clone();
            got.insert(e.name);
        }
        if !more {
            break;
        }
    }
    if got == acked.names {
        acked
    } else if got == after.names {
        after
    } else {
        panic!(
            "client {client}: store holds {got:?}, neither acknowledged {:?} nor in-flight {:?}",
            acked.names, after.names
        );
    }
}
