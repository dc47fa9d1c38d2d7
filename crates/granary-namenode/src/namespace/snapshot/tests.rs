use super::*;
use crate::namespace::NamespaceConfig;
use crate::namespace::WaitDurable;
use crate::namespace::tests::namespace;
use granary_common::identity::Identity;

/// A closed file at `path` holding one block of `len` bytes (made with
/// `overwrite` when asked); its inode and block.
fn file(ns: &Namespace, su: &Caller, path: &str, len: u64, overwrite: bool) -> (Inode, u64) {
    file_of_block_size(ns, su, path, len, overwrite, 0)
}

/// Like [`file`], with the block size given (0: the default).
pub(super) fn file_of_block_size(
    ns: &Namespace,
    su: &Caller,
    path: &str,
    len: u64,
    overwrite: bool,
    block_size: u64,
) -> (Inode, u64) {
    let (f, _) = ns
        .create(su, path, 0, "w", overwrite, true, 3, block_size)
        .durably()
        .expect("create");
    let b = ns
        .add_block(su, path, f.id, "w", None)
        .durably()
        .expect("add block")
        .block;
    let last = granary_proto::ExtendedBlock {
        block_id: b.id,
        generation_stamp: b.generation_stamp,
        num_bytes: len,
    };
    assert!(
        ns.complete(su, path, f.id, "w", Some(&last), |_| true)
            .durably()
            .expect("complete")
    );
    (f, b.id)
}

fn names(ns: &Namespace, su: &Caller, path: &str) -> Vec<String> {
    ns.list(su, path, "", 0)
        .expect("list")
        .entries
        .into_iter()
        .map(|e| e.name)
        .collect()
}

fn kept(ns: &Namespace, block: u64) -> bool {
    ns.block_owner(block).expect("lookup").is_some()
}

fn kept_keys(ns: &Namespace) -> usize {
    ns.prefix_iter(CF_SNAPSHOTS, &[versions::KEPT])
        .expect("iter")
        .count()
        + ns.prefix_iter(CF_SNAPSHOTS, &[versions::KEPT_INDEX])
            .expect("iter")
            .count()
}

/// A snapshot keeps what is deleted, overwritten or moved out of its
/// directory after it was taken, readable under `.snapshot`; what is
/// outside every snapshot is freed at once; deleting the snapshot frees
/// the rest and leaves no kept value behind.
#[test]
fn a_snapshot_keeps_deleted_overwritten_and_moved_files_until_it_is_deleted() {
    let (_tmp, ns, su) = namespace();
    let (a, a_block) = file(&ns, &su, "/d/a", 100, false);
    let (_, b_old) = file(&ns, &su, "/d/sub/b", 200, false);
    let (_, c_block) = file(&ns, &su, "/d/sub/c", 300, false);
    let (_, t_block) = file(&ns, &su, "/tmp/t", 50, false);
    ns.allow_snapshot(&su, "/d").durably().expect("allow");
    let at = ns
        .create_snapshot(&su, "/d", Some("s1"))
        .durably()
        .expect("snapshot");
    assert_eq!(at, "/d/.snapshot/s1");

    let removed = ns.delete(&su, "/d/a", false).durably().expect("delete");
    assert_eq!(removed.iter().map(|b| b.id).collect::<Vec<_>>(), vec![a_block]);
    assert!(kept(&ns, a_block), "the snapshot holds a's block");
    let (_, b_new) = file(&ns, &su, "/d/sub/b", 999, true);
    assert!(kept(&ns, b_old), "the overwritten b's block is kept");
    ns.mkdirs(&su, "/elsewhere", 0, false).durably().expect("mkdir");
    ns.rename(&su, "/d/sub", "/elsewhere/sub", false)
        .durably()
        .expect("move out");
    ns.delete(&su, "/elsewhere/sub/c", false)
        .durably()
        .expect("delete c");
    assert!(
        kept(&ns, c_block),
        "c was in the snapshot before its directory moved out"
    );
    ns.delete(&su, "/tmp/t", false).durably().expect("delete t");
    assert!(!kept(&ns, t_block), "a file in no snapshot is freed at once");
    file(&ns, &su, "/d/new", 10, false);

    assert_eq!(names(&ns, &su, "/d"), vec!["new"]);
    assert_eq!(names(&ns, &su, "/d/.snapshot"), vec!["s1"]);
    assert_eq!(names(&ns, &su, "/d/.snapshot/s1"), vec!["a", "sub"]);
    assert_eq!(names(&ns, &su, "/d/.snapshot/s1/sub"), vec!["b", "c"]);
    let old_a = ns.get_file_info(&su, "/d/.snapshot/s1/a").expect("stat");
    assert_eq!((old_a.id, old_a.length()), (a.id, 100));
    let (old_b, blocks) = ns
        .block_range(&su, "/d/.snapshot/s1/sub/b", 0, 0)
        .expect("block range");
    assert_eq!((old_b.length(), blocks[0].1.id), (200, b_old));
    assert_eq!(
        ns.get_file_info(&su, "/elsewhere/sub/b").expect("stat").length(),
        999
    );
    assert!(matches!(
        ns.get_file_info(&su, "/d/.snapshot/s1/new"),
        Err(NnError::NotFound(_))
    ));
    let summary = ns.content_summary(&su, "/d/.snapshot/s1").expect("summary");
    assert_eq!((summary.file_count, summary.length), (3, 600));

    // Nothing under .snapshot can change; the directory cannot go.
    for r in [
        ns.mkdirs(&su, "/d/.snapshot/s1/x", 0, false)
            .durably()
            .map(|_| ()),
        ns.delete(&su, "/d/.snapshot/s1/a", false).durably().map(|_| ()),
        ns.mkdirs(&su, "/e/.snapshot", 0, true).durably().map(|_| ()),
    ] {
        assert!(matches!(r, Err(NnError::SnapshotReadOnly(_))), "{r:?}");
    }
    let err = ns.delete(&su, "/d", true).durably().expect_err("refused");
    assert!(
        err.to_string().contains("has snapshots") || err.to_string().contains("already has snapshots"),
        "{err}"
    );

    let diff = ns.snapshot_diff(&su, "/d", "s1", ".").expect("diff");
    let lines: Vec<(DiffKind, &str)> = diff.iter().map(|e| (e.kind, e.path.as_str())).collect();
    for want in [
        (DiffKind::Modify, ""),
        (DiffKind::Delete, "a"),
        (DiffKind::Create, "new"),
        (DiffKind::Delete, "sub"),
    ] {
        assert!(lines.contains(&want), "{want:?} missing from {lines:?}");
    }
    assert_eq!(ns.snapshot_diff(&su, "/d", "s1", "s1").expect("diff"), vec![]);

    // Safe mode waits for the blocks only the snapshot holds too: 2
    // current files' and a, the old b and c.
    assert_eq!(ns.startup_scan(&|| false).expect("scan").committed_blocks, 5);
    let freed = ns
        .delete_snapshot(&su, "/d", "s1")
        .durably()
        .expect("delete snapshot");
    let mut freed: Vec<u64> = freed.iter().map(|b| b.id).collect();
    freed.sort_unstable();
    let mut want = vec![a_block, b_old, c_block];
    want.sort_unstable();
    assert_eq!(freed, want);
    for b in want {
        assert!(!kept(&ns, b));
    }
    assert!(kept(&ns, b_new), "the current b keeps its block");
    assert_eq!(kept_keys(&ns), 0, "no kept value outlives the snapshots");
    ns.delete(&su, "/d", true)
        .durably()
        .expect("no snapshots: deletable");
    ns.check_consistency().expect("consistent");
}

/// Deleting one of two snapshots hands the kept values the other still
/// needs to it and frees only what neither holds.
#[test]
fn deleting_a_snapshot_hands_down_what_an_older_one_needs() {
    let (_tmp, ns, su) = namespace();
    let (_, v1) = file(&ns, &su, "/d/f", 1, false);
    ns.allow_snapshot(&su, "/d").durably().expect("allow");
    ns.create_snapshot(&su, "/d", Some("s1")).durably().expect("s1");
    let (_, v2) = file(&ns, &su, "/d/f", 2, true);
    ns.create_snapshot(&su, "/d", Some("s2")).durably().expect("s2");
    ns.create_snapshot(&su, "/d", Some("s3")).durably().expect("s3");
    ns.delete(&su, "/d/f", false).durably().expect("delete");
    assert!(kept(&ns, v1) && kept(&ns, v2));
    let len = |p: &str| ns.get_file_info(&su, p).map(|i| i.length());
    assert_eq!(len("/d/.snapshot/s1/f").expect("s1"), 1);
    assert_eq!(len("/d/.snapshot/s2/f").expect("s2"), 2);
    assert_eq!(len("/d/.snapshot/s3/f").expect("s3"), 2);

    // v2 was kept under s3 only; s2 needs it: handed down, nothing freed.
    let freed = ns.delete_snapshot(&su, "/d", "s3").durably().expect("delete s3");
    assert!(freed.is_empty(), "{freed:?}");
    assert_eq!(len("/d/.snapshot/s2/f").expect("s2"), 2);
    // s1 never saw v2: deleting s2 frees it, and only it.
    let freed = ns.delete_snapshot(&su, "/d", "s2").durably().expect("delete s2");
    assert_eq!(freed.iter().map(|b| b.id).collect::<Vec<_>>(), vec![v2]);
    assert!(kept(&ns, v1));
    ns.rename_snapshot(&su, "/d", "s1", "first")
        .durably()
        .expect("rename");
    assert_eq!(len("/d/.snapshot/first/f").expect("renamed"), 1);
    assert!(matches!(len("/d/.snapshot/s1/f"), Err(NnError::NotFound(_))));
    let freed = ns.delete_snapshot(&su, "/d", "first").durably().expect("delete");
    assert_eq!(freed.iter().map(|b| b.id).collect::<Vec<_>>(), vec![v1]);
    assert_eq!(kept_keys(&ns), 0);
}

/// Who may do what, names, nesting, and a reopen.
#[test]
fn snapshot_calls_check_their_callers_names_and_nesting_and_survive_a_reopen() {
    let (tmp, ns, su) = namespace();
    ns.mkdirs(&su, "/a/b/c", 0, true).durably().expect("mkdirs");
    ns.mkdirs(&su, "/home/alice", 0, true).durably().expect("mkdirs");
    ns.set_owner(&su, "/home/alice", Some("alice"), None)
        .durably()
        .expect("chown");
    let alice = ns.caller(Identity::new("alice"));
    assert!(matches!(
        ns.allow_snapshot(&alice, "/home/alice").durably(),
        Err(NnError::AccessDenied(_))
    ));
    ns.allow_snapshot(&su, "/a/b").durably().expect("allow");
    ns.allow_snapshot(&su, "/a/b")
        .durably()
        .expect("again: nothing to do");
    for p in ["/a", "/a/b/c", "/"] {
        let err = ns.allow_snapshot(&su, p).durably().expect_err("nested");
        assert!(err.to_string().contains("Nested snapshottable"), "{p}: {err}");
    }
    ns.allow_snapshot(&su, "/home/alice").durably().expect("allow");
    for (from, to) in [("/home/alice", "/a/b/c/alice"), ("/home", "/a/b/home")] {
        let err = ns
            .rename(&su, from, to, false)
            .durably()
            .expect_err("nested by a rename");
        assert!(err.to_string().contains("Nested snapshottable"), "{from}: {err}");
    }
    ns.rename(&su, "/home/alice", "/a/alice", false)
        .durably()
        .expect("not below a snapshottable directory");
    ns.rename(&su, "/a/alice", "/home/alice", false)
        .durably()
        .expect("back");
    let err = ns
        .create_snapshot(&alice, "/a/b", None)
        .durably()
        .expect_err("not hers");
    assert!(matches!(err, NnError::PermissionDenied { .. }), "{err:?}");
    let mine = ns
        .create_snapshot(&alice, "/home/alice", None)
        .durably()
        .expect("her own");
    let name = mine.strip_prefix("/home/alice/.snapshot/").expect("its path");
    assert!(
        name.len() == "s20261203-041503.123".len() && name.starts_with('s') && name.as_bytes()[9] == b'-',
        "{mine}"
    );
    let too_long = "x".repeat(256);
    for bad in [".snapshot", "a/b", "", "a:b", "nul\0", too_long.as_str()] {
        assert!(
            matches!(
                ns.create_snapshot(&su, "/a/b", Some(bad)).durably(),
                Err(NnError::Snapshot(_))
            ),
            "{bad:?}"
        );
    }
    // A diff names nothing from a directory its caller cannot list.
    ns.mkdirs(&su, "/home/alice/private", 0o700, false)
        .durably()
        .expect("mkdir");
    ns.create_snapshot(&alice, "/home/alice", Some("before"))
        .durably()
        .expect("before");
    ns.mkdirs(&su, "/home/alice/private/secret-name", 0, false)
        .durably()
        .expect("mkdir");
    ns.create_snapshot(&alice, "/home/alice", Some("after"))
        .durably()
        .expect("after");
    let err = ns
        .snapshot_diff(&alice, "/home/alice", "before", "after")
        .expect_err("not listable");
    assert!(matches!(err, NnError::PermissionDenied { .. }), "{err:?}");
    let diff = ns
        .snapshot_diff(&su, "/home/alice", "before", "after")
        .expect("diff");
    assert_eq!(
        diff.iter().map(|e| (e.kind, e.path.as_str())).collect::<Vec<_>>(),
        vec![
            (DiffKind::Modify, "private"),
            (DiffKind::Create, "private/secret-name")
        ],
        "exactly the change"
    );
    ns.create_snapshot(&su, "/a/b", Some("x")).durably().expect("x");
    let dup = ns
        .create_snapshot(&su, "/a/b", Some("x"))
        .durably()
        .expect_err("taken");
    assert!(dup.to_string().contains("same name"), "{dup}");
    assert!(matches!(
        ns.create_snapshot(&su, "/a", Some("y")).durably(),
        Err(NnError::Snapshot(_))
    ));
    let err = ns.disallow_snapshot(&su, "/a/b").durably().expect_err("has one");
    assert!(err.to_string().contains("has snapshot(s)"), "{err}");
    let listed: Vec<String> = ns
        .snapshottable_dirs(&alice)
        .expect("list")
        .into_iter()
        .map(|d| d.path)
        .collect();
    assert_eq!(listed, vec!["/home/alice"]);
    assert_eq!(ns.snapshottable_dirs(&su).expect("list").len(), 2);
    drop(ns);

    let cfg = NamespaceConfig {
        superuser: "hdfs".into(),
        ..Default::default()
    };
    let ns = Namespace::open(tmp.path(), cfg, &Default::default()).expect("reopen");
    let su = ns.caller(Identity::new("hdfs"));
    assert_eq!(names(&ns, &su, "/a/b/.snapshot/x"), vec!["c"]);
    ns.delete(&su, "/a/b/c", false).durably().expect("delete");
    assert_eq!(
        names(&ns, &su, "/a/b/.snapshot/x"),
        vec!["c"],
        "kept after a reopen"
    );
    ns.delete_snapshot(&su, "/a/b", "x")
        .durably()
        .expect("delete snapshot");
    ns.disallow_snapshot(&su, "/a/b").durably().expect("disallow");
    assert!(matches!(
        ns.create_snapshot(&su, "/a/b", Some("z")).durably(),
        Err(NnError::Snapshot(_))
    ));
}

/// Snapshots of two directories: a value is kept for the snapshots that
/// hold it, and deleting those frees it whatever the other directory's
/// snapshots are; a file moved from one tree to the other is read in each
/// at its place then.
#[test]
fn snapshots_of_two_directories_hold_only_what_they_saw() {
    let (_tmp, ns, su) = namespace();
    let (_, big) = file(&ns, &su, "/a/big", 10, false);
    let (_, moved) = file(&ns, &su, "/a/moved", 20, false);
    ns.mkdirs(&su, "/b", 0, false).durably().expect("mkdir");
    ns.allow_snapshot(&su, "/a").durably().expect("allow");
    ns.allow_snapshot(&su, "/b").durably().expect("allow");
    ns.create_snapshot(&su, "/b", Some("b1")).durably().expect("b1");
    ns.create_snapshot(&su, "/a", Some("a1")).durably().expect("a1");
    ns.create_snapshot(&su, "/b", Some("b2")).durably().expect("b2");
    ns.delete(&su, "/a/big", false).durably().expect("delete");
    ns.rename(&su, "/a/moved", "/b/moved", false)
        .durably()
        .expect("move");
    ns.create_snapshot(&su, "/b", Some("b3")).durably().expect("b3");
    ns.delete(&su, "/b/moved", false).durably().expect("delete");
    assert!(kept(&ns, big) && kept(&ns, moved));
    assert_eq!(names(&ns, &su, "/a/.snapshot/a1"), vec!["big", "moved"]);
    assert!(names(&ns, &su, "/b/.snapshot/b2").is_empty());
    assert_eq!(names(&ns, &su, "/b/.snapshot/b3"), vec!["moved"]);
    assert_eq!(
        ns.get_file_info(&su, "/b/.snapshot/b3/moved")
            .expect("stat")
            .length(),
        20
    );
    // /b's snapshots never held big: deleting them frees nothing of it.
    for s in ["b1", "b2"] {
        let freed = ns.delete_snapshot(&su, "/b", s).durably().expect("delete");
        assert!(freed.is_empty(), "{s}: {freed:?}");
    }
    let freed = ns.delete_snapshot(&su, "/a", "a1").durably().expect("delete a1");
    assert_eq!(freed.iter().map(|b| b.id).collect::<Vec<_>>(), vec![big]);
    assert!(kept(&ns, moved), "b3 still holds the moved file");
    assert_eq!(names(&ns, &su, "/b/.snapshot/b3"), vec!["moved"]);
    let freed = ns.delete_snapshot(&su, "/b", "b3").durably().expect("delete b3");
    assert_eq!(freed.iter().map(|b| b.id).collect::<Vec<_>>(), vec![moved]);
    assert_eq!(kept_keys(&ns), 0);
}

/// A snapshot's directory lists page by page as it was, whatever was
/// deleted from it or added to it since.
#[test]
fn a_snapshot_lists_in_pages_as_it_was() {
    let (_tmp, ns, su) = namespace();
    let before: Vec<String> = (0..30).map(|i| format!("f{i:02}")).collect();
    ns.mkdirs(&su, "/d", 0, false).durably().expect("mkdir");
    for n in &before {
        crate::namespace::tests::closed_file(&ns, &su, &format!("/d/{n}"));
    }
    ns.allow_snapshot(&su, "/d").durably().expect("allow");
    ns.create_snapshot(&su, "/d", Some("s"))
        .durably()
        .expect("snapshot");
    for i in (0..30).step_by(3) {
        ns.delete(&su, &format!("/d/f{i:02}"), false)
            .durably()
            .expect("delete");
    }
    for i in 0..10 {
        crate::namespace::tests::closed_file(&ns, &su, &format!("/d/f{i:02}x"));
    }
    let mut listed = Vec::new();
    let mut after = String::new();
    loop {
        let page = ns.list(&su, "/d/.snapshot/s", &after, 7).expect("page");
        assert!(page.entries.len() <= 7);
        listed.extend(page.entries.iter().map(|e| e.name.clone()));
        match page.entries.last() {
            Some(last) if page.has_more => after = last.name.clone(),
            _ => break,
        }
    }
    assert_eq!(listed, before);
    let summary = ns.content_summary(&su, "/d/.snapshot/s").expect("summary");
    assert_eq!((summary.file_count, summary.directory_count), (30, 1));
    assert_eq!(names(&ns, &su, "/d").len(), 30, "20 left and 10 new");
}

/// A create run for a client's call records the snapshot's id with it, so
/// a retry of the call (its answer lost) finds the snapshot it took, even
/// under a default name, instead of taking another.
#[test]
fn a_created_snapshot_is_found_again_by_its_call() {
    let (_tmp, ns, su) = namespace();
    ns.mkdirs(&su, "/d", 0, false).durably().expect("mkdirs");
    ns.allow_snapshot(&su, "/d").durably().expect("allow");
    let call = granary_common::retry::CallKey {
        client_id: "c1".into(),
        call_id: 3,
    };
    let made = crate::namespace::retry::recording(Some(&call), 0, || ns.create_snapshot(&su, "/d", None))
        .durably()
        .expect("snapshot");
    let found = ns
        .recorded(Some(&call))
        .durably()
        .expect("lookup")
        .expect("the call is recorded");
    let name = ns.snap_state().name_of(found.value).expect("exists").to_string();
    assert_eq!(snapshot_path("/d", &name), made);
    assert!(name.starts_with('s'), "{name}");
}
