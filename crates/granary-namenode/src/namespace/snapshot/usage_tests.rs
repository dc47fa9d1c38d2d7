//! Quotas and content summaries count what snapshots alone hold.

use super::*;
use crate::namespace::quota::tests::assert_usage_matches_a_walk;
use crate::namespace::tests::namespace;
use crate::namespace::{NamespaceConfig, WaitDurable};

const MIB: u64 = 1 << 20;

/// A closed file at `path` of one block of `len` bytes, at replication 3
/// and a block size of 1 MiB (what a block being written charges).
fn file(ns: &Namespace, su: &Caller, path: &str, len: u64, overwrite: bool) {
    super::tests::file_of_block_size(ns, su, path, len, overwrite, MIB);
}

fn usage(ns: &Namespace, path: &str) -> (u64, u64) {
    let q = ns
        .resolve(path)
        .expect("resolve")
        .existing()
        .expect("exists")
        .quota
        .expect("a quota");
    (q.ns_used, q.ss_used)
}

/// As HDFS: a file deleted, overwritten or set to a lower replication
/// after a snapshot still uses its name and space; a call that would cross
/// the quota is refused until the snapshot is deleted, which frees it all.
#[test]
fn what_a_snapshot_holds_counts_against_quotas_until_it_is_deleted() {
    let (_tmp, ns, su) = namespace();
    file(&ns, &su, "/d/a", 100, false);
    file(&ns, &su, "/d/sub/b", 200, false);
    file(&ns, &su, "/d/sub/c", 300, false);
    ns.set_quota(&su, "/d", Some(6), Some((3 * MIB + 2000) as i64))
        .durably()
        .expect("quota");
    assert_eq!(usage(&ns, "/d"), (5, 1800), "d, a, sub, b, c at replication 3");
    ns.allow_snapshot(&su, "/d").durably().expect("allow");
    ns.create_snapshot(&su, "/d", Some("s1"))
        .durably()
        .expect("snapshot");

    ns.delete(&su, "/d/a", false).durably().expect("delete");
    assert_eq!(usage(&ns, "/d"), (5, 1800), "a is held by s1");
    file(&ns, &su, "/d/sub/b", 400, true);
    assert_eq!(
        usage(&ns, "/d"),
        (6, 1800 + 1200),
        "the overwritten b is held beside the new one"
    );
    ns.set_replication(&su, "/d/sub/c", 1)
        .durably()
        .expect("setrep down");
    assert_eq!(usage(&ns, "/d"), (6, 3000), "s1 holds c at replication 3");
    assert_usage_matches_a_walk(&ns, &["/d"]);

    // Names: 6 of 6 used, though only 5 are in the tree now.
    let e = ns.mkdirs(&su, "/d/new", 0, false).durably().expect_err("over");
    assert!(
        matches!(
            e,
            NnError::NsQuotaExceeded {
                quota: 6,
                count: 7,
                ..
            }
        ),
        "{e}"
    );
    // Space: a block being written (1 MiB at replication 3) would fit
    // beside what is current (c's 300 bytes), not beside what s1 holds too.
    ns.delete(&su, "/d/sub/b", false).durably().expect("delete b");
    assert_eq!(usage(&ns, "/d"), (5, 1800), "the new b was made after s1: freed");
    ns.set_quota(&su, "/d", Some(100), Some((3 * MIB + 1000) as i64))
        .durably()
        .expect("quotas");
    let (f, _) = ns
        .create(&su, "/d/big", 0, "w", false, false, 3, MIB)
        .durably()
        .expect("create");
    let e = ns
        .add_block(&su, "/d/big", f.id, "w", None)
        .durably()
        .expect_err("over");
    assert!(matches!(e, NnError::DsQuotaExceeded { .. }), "{e}");

    // Content summaries count what s1 holds, as `du` without -x does.
    let cs = ns.content_summary(&su, "/d").expect("summary");
    assert_eq!(
        (cs.directory_count, cs.file_count, cs.length),
        (2, 4, 100 + 200 + 300),
        "d, sub; a, the old b, c and the empty big; held bytes count at their length"
    );

    let freed = ns.delete_snapshot(&su, "/d", "s1").durably().expect("delete");
    assert_eq!(freed.len(), 2, "a's and the old b's blocks");
    // What is left: d, sub, c (300 B at replication 1) and big (empty).
    assert_eq!(usage(&ns, "/d"), (4, 300));
    assert_usage_matches_a_walk(&ns, &["/d"]);
    ns.add_block(&su, "/d/big", f.id, "w", None)
        .durably()
        .expect("fits now");
}

/// What a snapshottable directory's snapshots hold counts on quota'd
/// directories above it, moves with it when it is renamed, and is set when
/// a quota is set on an ancestor later; a reopen keeps it.
#[test]
fn held_space_counts_on_ancestors_and_moves_with_the_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = NamespaceConfig {
        superuser: "hdfs".into(),
        ..Default::default()
    };
    {
        let ns = Namespace::create_new(tmp.path(), cfg.clone(), &Default::default()).expect("ns");
        let su = ns.caller(granary_common::identity::Identity::new("hdfs"));
        file(&ns, &su, "/p/d/a", 1000, false);
        file(&ns, &su, "/p/d/x/b", 10, false);
        ns.mkdirs(&su, "/q", 0, false).durably().expect("mkdir");
        ns.set_quota(&su, "/p", Some(100), Some(1_000_000))
            .durably()
            .expect("quota");
        ns.allow_snapshot(&su, "/p/d").durably().expect("allow");
        ns.create_snapshot(&su, "/p/d", Some("s1"))
            .durably()
            .expect("snapshot");
        ns.delete(&su, "/p/d/x", true).durably().expect("delete x");
        ns.delete(&su, "/p/d/a", false).durably().expect("delete a");
        assert_eq!(usage(&ns, "/p"), (5, 3030), "p, d and the held x, b and a");
        // A quota set later on an ancestor counts the hold from the start.
        ns.set_quota(&su, "/q", Some(100), Some(1_000_000))
            .durably()
            .expect("quota");
        ns.rename(&su, "/p/d", "/q/d", false).durably().expect("move");
        assert_eq!(usage(&ns, "/p"), (1, 0));
        assert_eq!(usage(&ns, "/q"), (5, 3030), "the hold moved with d");
        ns.set_quota(&su, "/", Some(1_000), None)
            .durably()
            .expect("root quota");
        assert_usage_matches_a_walk(&ns, &["/", "/p", "/q"]);
        assert_eq!(usage(&ns, "/"), (7, 3030), "/, p, q, d and the 3 held");
    }
    let ns = Namespace::open(tmp.path(), cfg.clone(), &Default::default()).expect("reopen");
    let su = ns.caller(granary_common::identity::Identity::new("hdfs"));
    assert_eq!(usage(&ns, "/q"), (5, 3030), "kept across a reopen");
    ns.delete_snapshot(&su, "/q/d", "s1").durably().expect("delete");
    assert_eq!(usage(&ns, "/q"), (2, 0));
    assert_eq!(usage(&ns, "/"), (4, 0));
    assert_usage_matches_a_walk(&ns, &["/", "/p", "/q"]);
}

/// A snapshot handed down: deleting the later of two snapshots leaves the
/// earlier one's hold counted; deleting both frees it.
#[test]
fn a_hold_handed_down_to_an_earlier_snapshot_still_counts() {
    let (_tmp, ns, su) = namespace();
    file(&ns, &su, "/d/a", 100, false);
    ns.set_quota(&su, "/d", Some(100), None).durably().expect("quota");
    ns.allow_snapshot(&su, "/d").durably().expect("allow");
    ns.create_snapshot(&su, "/d", Some("s1")).durably().expect("s1");
    ns.create_snapshot(&su, "/d", Some("s2")).durably().expect("s2");
    ns.delete(&su, "/d/a", false).durably().expect("delete");
    assert_eq!(usage(&ns, "/d"), (2, 300));
    ns.delete_snapshot(&su, "/d", "s2").durably().expect("delete s2");
    assert_eq!(usage(&ns, "/d"), (2, 300), "s1 holds a now");
    assert_usage_matches_a_walk(&ns, &["/d"]);
    ns.delete_snapshot(&su, "/d", "s1").durably().expect("delete s1");
    assert_eq!(usage(&ns, "/d"), (1, 0));
}

/// A hold that lands in another quota'd tree than the file's (the file
/// moved out of the snapshotted directory after the snapshot) is counted
/// there but never refuses the call that moves it: HDFS refuses no delete,
/// no lower replication and no snapshot deletion.
#[test]
fn a_hold_moving_between_quota_trees_refuses_nothing() {
    let (_tmp, ns, su) = namespace();
    ns.mkdirs(&su, "/A/d", 0, true).durably().expect("mkdirs");
    ns.mkdirs(&su, "/B", 0, true).durably().expect("mkdirs");
    file(&ns, &su, "/A/d/f", 100, false);
    file(&ns, &su, "/A/d/g", 10, false);
    ns.allow_snapshot(&su, "/A/d").durably().expect("allow");
    ns.create_snapshot(&su, "/A/d", Some("s1"))
        .durably()
        .expect("snapshot");
    ns.rename(&su, "/A/d/f", "/B/f", false)
        .durably()
        .expect("move out");
    // /A: A, d, g (f is current in /B, so nothing is held of it yet).
    ns.set_quota(&su, "/A", Some(3), Some(30))
        .durably()
        .expect("quota at its usage");
    assert_eq!(usage(&ns, "/A"), (3, 30));
    ns.set_replication(&su, "/B/f", 1)
        .durably()
        .expect("a lower replication is never refused");
    assert_eq!(usage(&ns, "/A"), (3, 30 + 200), "s1 holds f at replication 3");
    ns.delete(&su, "/B/f", false)
        .durably()
        .expect("a delete is never refused");
    assert_eq!(usage(&ns, "/A"), (4, 330), "over its quotas, as HDFS allows");
    assert_usage_matches_a_walk(&ns, &["/A"]);
    // Growth is still refused.
    let e = ns.mkdirs(&su, "/A/x", 0, false).durably().expect_err("over");
    assert!(matches!(e, NnError::NsQuotaExceeded { .. }), "{e}");
    ns.delete_snapshot(&su, "/A/d", "s1").durably().expect("delete");
    assert_eq!(usage(&ns, "/A"), (3, 30));
}

/// Deleting a snapshot hands a value down to an older snapshot of another
/// directory, in another quota'd tree that is full: counted there, not
/// refused.
#[test]
fn a_hold_handed_to_another_full_tree_does_not_refuse_the_snapshot_deletion() {
    let (_tmp, ns, su) = namespace();
    ns.mkdirs(&su, "/A/d1", 0, true).durably().expect("mkdirs");
    ns.mkdirs(&su, "/B/d2", 0, true).durably().expect("mkdirs");
    ns.allow_snapshot(&su, "/A/d1").durably().expect("allow");
    ns.allow_snapshot(&su, "/B/d2").durably().expect("allow");
    file(&ns, &su, "/B/d2/f", 100, false);
    ns.create_snapshot(&su, "/B/d2", Some("s2"))
        .durably()
        .expect("s2");
    ns.rename(&su, "/B/d2/f", "/A/d1/f", false)
        .durably()
        .expect("move");
    ns.create_snapshot(&su, "/A/d1", Some("s1"))
        .durably()
        .expect("s1");
    ns.set_quota(&su, "/A", Some(100), None).durably().expect("quota");
    ns.set_quota(&su, "/B", Some(2), None).durably().expect("B full");
    ns.delete(&su, "/A/d1/f", false).durably().expect("delete");
    assert_eq!(usage(&ns, "/A").0, 3, "A, d1 and the f s1 holds");
    ns.delete_snapshot(&su, "/A/d1", "s1")
        .durably()
        .expect("never refused");
    assert_eq!(usage(&ns, "/A").0, 2);
    assert_eq!(usage(&ns, "/B").0, 3, "s2 holds f now");
    assert_usage_matches_a_walk(&ns, &["/A", "/B"]);
    let names: Vec<String> = ns
        .list(&su, "/B/d2/.snapshot/s2", "", 0)
        .expect("list")
        .entries
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["f".to_string()], "s2 still reads f");
}

/// Deleting a snapshot whose hold shrinks a quota'd directory leaves no
/// value kept under the deleted snapshot's id.
#[test]
fn deleting_a_snapshot_under_a_quota_leaves_nothing_under_its_id() {
    let (_tmp, ns, su) = namespace();
    ns.mkdirs(&su, "/d/sub", 0, true).durably().expect("mkdirs");
    ns.set_quota(&su, "/d", Some(100), None).durably().expect("quota");
    ns.allow_snapshot(&su, "/d").durably().expect("allow");
    ns.create_snapshot(&su, "/d", Some("s1")).durably().expect("s1");
    file(&ns, &su, "/d/sub/f", 100, false);
    ns.create_snapshot(&su, "/d", Some("s2")).durably().expect("s2");
    let d = ns.resolve("/d").expect("resolve").existing().expect("d").id;
    let s2 = ns.record(d, "s2").expect("record").expect("s2").id;
    ns.delete(&su, "/d/sub/f", false).durably().expect("delete");
    ns.delete_snapshot(&su, "/d", "s2").durably().expect("delete s2");
    let mut index = vec![versions::KEPT_INDEX];
    index.extend_from_slice(&s2.to_be_bytes());
    assert_eq!(
        ns.prefix_iter(CF_SNAPSHOTS, &index).expect("iter").count(),
        0,
        "an index entry under the deleted snapshot"
    );
    assert_eq!(usage(&ns, "/d"), (2, 0));
    assert_usage_matches_a_walk(&ns, &["/d"]);
}
