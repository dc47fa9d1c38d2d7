//! Every namespace operation against an in-process namenode, through the
//! real client and gRPC, including the errors users see.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use granary_client::{ClientError, DfsClient, SafeModeAction};
use granary_common::{ErrorCode, HasErrorCode};
use granary_proto as pb;
use granary_testkit::MiniCluster;

fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (ErrorCode, String) {
    let e = r.expect_err("expected an error");
    (e.code(), e.to_string())
}

async fn touch(c: &DfsClient, p: &str) {
    c.create_empty(p, None)
        .await
        .unwrap_or_else(|e| panic!("touchz {p}: {e}"));
}

async fn names(c: &DfsClient, p: &str) -> Vec<String> {
    c.list(p).await.unwrap().into_iter().map(|s| s.name).collect()
}

#[tokio::test]
async fn mkdirs_with_and_without_parents() {
    let cl = MiniCluster::start().await.unwrap();
    let c = cl.client().await.unwrap();
    c.mkdirs("/a/b/c", None, true).await.unwrap();
    // -p on an existing directory is fine.
    c.mkdirs("/a/b/c", None, true).await.unwrap();
    let st = c.stat("/a/b/c").await.unwrap();
    assert!(st.is_dir);
    assert_eq!(st.permission, 0o755);
    assert_eq!(st.owner, "hdfs");
    assert_eq!(st.group, "supergroup", "new inodes take the parent's group");
    let (k, m) = code(c.mkdirs("/x/y", None, false).await);
    assert_eq!(k, ErrorCode::FileNotFound);
    assert!(m.contains("/x: No such file or directory"), "{m}");
    touch(&c, "/a/file").await;
    let (k, m) = code(c.mkdirs("/a/file/sub", None, true).await);
    assert_eq!(k, ErrorCode::ParentNotDirectory, "{m}");
    assert!(m.contains("/a/file"), "{m}");
    let (k, _) = code(c.mkdirs("/a/file", None, true).await);
    assert_eq!(k, ErrorCode::FileAlreadyExists);
    assert_eq!(c.stat("/a").await.unwrap().children_num, 2);
}

#[tokio::test]
async fn bad_paths_are_invalid_arguments_naming_the_path() {
    let cl = MiniCluster::start().await.unwrap();
    let c = cl.client().await.unwrap();
    let long = format!("/{}", "n".repeat(256));
    for bad in [
        "relative/p",
        "/a/../b",
        "/a/./b",
        "/a//b",
        "/a/",
        "/nul\0x",
        long.as_str(),
    ] {
        let (k, m) = code(c.mkdirs(bad, None, true).await);
        assert_eq!(k, ErrorCode::InvalidPath, "{bad:?}: {m}");
        assert!(m.contains("invalid path"), "{m}");
        let (k, _) = code(c.stat(bad).await);
        assert_eq!(k, ErrorCode::InvalidPath);
    }
    c.mkdirs(&format!("/{}", "n".repeat(255)), None, false)
        .await
        .unwrap();
}

#[tokio::test]
async fn listing_pages_in_name_order() {
    let cl = MiniCluster::start().await.unwrap();
    let c = cl.client().await.unwrap();
    c.mkdirs("/big", None, false).await.unwrap();
    let mut want = Vec::new();
    for i in 0..2100 {
        let p = format!("/big/f{i:05}");
        if i % 2 == 0 {
            c.mkdirs(&p, None, false).await.unwrap();
        } else {
            touch(&c, &p).await;
        }
        want.push(format!("f{i:05}"));
    }
    let p1 = c.list_page("/big", "", 0).await.unwrap();
    assert_eq!(p1.entries.len(), 1000);
    assert!(p1.has_more);
    assert_eq!(p1.entries[0].name, "f00000");
    let p2 = c.list_page("/big", "f00999", 0).await.unwrap();
    assert_eq!(p2.entries[0].name, "f01000");
    let small = c.list_page("/big", "f02097", 5).await.unwrap();
    assert_eq!(
        small.entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["f02098", "f02099"]
    );
    assert!(!small.has_more);
    assert_eq!(names(&c, "/big").await, want);
    // A file lists as itself.
    let one = c.list("/big/f00001").await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].name, "f00001");
    let (k, _) = code(c.list("/nope").await);
    assert_eq!(k, ErrorCode::FileNotFound);
}

#[tokio::test]
async fn rename_files_and_directories() {
    let cl = MiniCluster::start().await.unwrap();
    let c = cl.client().await.unwrap();
    c.mkdirs("/src/sub", None, true).await.unwrap();
    touch(&c, "/src/sub/f").await;
    c.mkdirs("/dst", None, false).await.unwrap();
    // File rename within a directory.
    c.rename("/src/sub/f", "/src/sub/g", false).await.unwrap();
    assert_eq!(names(&c, "/src/sub").await, ["g"]);
    // Into an existing directory keeps the name.
    c.rename("/src", "/dst", false).await.unwrap();
    assert!(c.get_file_info("/src").await.unwrap().is_none());
    assert_eq!(c.stat("/dst/src/sub/g").await.unwrap().length, 0);
    // Into its own subtree is refused, the tree untouched.
    let (k, m) = code(c.rename("/dst", "/dst/src/sub/inner", false).await);
    assert_eq!(k, ErrorCode::InvalidArgument, "{m}");
    assert!(m.contains("own subtree"), "{m}");
    let (k, _) = code(c.rename("/dst/src", "/dst/src/sub", false).await);
    assert_eq!(k, ErrorCode::InvalidArgument);
    // Onto an existing file: refused without overwrite, replaced with it.
    touch(&c, "/dst/other").await;
    let (k, _) = code(c.rename("/dst/src/sub/g", "/dst/other", false).await);
    assert_eq!(k, ErrorCode::FileAlreadyExists);
    c.rename("/dst/src/sub/g", "/dst/other", true).await.unwrap();
    assert_eq!(names(&c, "/dst/src/sub").await, Vec::<String>::new());
    // Missing source or destination parent.
    let (k, _) = code(c.rename("/nope", "/x", false).await);
    assert_eq!(k, ErrorCode::FileNotFound);
    let (k, _) = code(c.rename("/dst/other", "/no/such/dir/x", false).await);
    assert_eq!(k, ErrorCode::FileNotFound);
    let (k, _) = code(c.rename("/dst/src", "/dst/other/x", false).await);
    assert_eq!(k, ErrorCode::ParentNotDirectory);
    let (k, _) = code(c.rename("/", "/x", false).await);
    assert_eq!(k, ErrorCode::InvalidArgument);
    assert_eq!(c.stat("/dst").await.unwrap().children_num, 2);
    cl.namenode().state.ns().check_consistency().unwrap();
}

#[tokio::test]
async fn delete_refuses_non_empty_directories_without_recursive() {
    let cl = MiniCluster::start().await.unwrap();
    let c = cl.client().await.unwrap();
    c.mkdirs("/d/e/f", None, true).await.unwrap();
    touch(&c, "/d/e/f/x").await;
    let (k, m) = code(c.delete("/d", false).await);
    assert_eq!(k, ErrorCode::PathIsNotEmptyDirectory);
    assert!(m.contains("/d") && m.contains("not empty"), "{m}");
    assert!(c.get_file_info("/d/e/f/x").await.unwrap().is_some());
    c.delete("/d/e/f/x", false).await.unwrap();
    c.delete("/d/e/f", false).await.unwrap();
    c.delete("/d", true).await.unwrap();
    assert!(c.get_file_info("/d").await.unwrap().is_none());
    let (k, _) = code(c.delete("/d", true).await);
    assert_eq!(k, ErrorCode::FileNotFound);
    let (k, _) = code(c.delete("/", true).await);
    assert_eq!(k, ErrorCode::InvalidArgument);
    assert_eq!(c.stat("/").await.unwrap().children_num, 0);
    cl.namenode().state.ns().check_consistency().unwrap();
}

#[tokio::test]
async fn attributes_and_content_summary() {
    let cl = MiniCluster::start().await.unwrap();
    let c = cl.client().await.unwrap();
    c.mkdirs("/p/q", None, true).await.unwrap();
    touch(&c, "/p/q/f").await;
    touch(&c, "/p/g").await;
    c.set_replication("/p/g", 2).await.unwrap();
    assert_eq!(c.stat("/p/g").await.unwrap().replication, 2);
    let (k, _) = code(c.set_replication("/p", 2).await);
    assert_eq!(k, ErrorCode::PathIsDirectory);
    let (k, m) = code(c.set_replication("/p/g", 1000).await);
    assert_eq!(k, ErrorCode::InvalidArgument, "{m}");
    c.set_permission("/p/g", 0o600).await.unwrap();
    assert_eq!(c.stat("/p/g").await.unwrap().permission, 0o600);
    c.set_owner("/p/g", Some("alice"), Some("eng")).await.unwrap();
    let st = c.stat("/p/g").await.unwrap();
    assert_eq!((st.owner.as_str(), st.group.as_str()), ("alice", "eng"));
    c.set_times("/p/g", Some(1_000_000), None).await.unwrap();
    let st2 = c.stat("/p/g").await.unwrap();
    assert_eq!(st2.modification_time, 1_000_000);
    assert_eq!(st2.access_time, st.access_time);
    let cs = c.content_summary("/p").await.unwrap();
    assert_eq!((cs.directory_count, cs.file_count, cs.length), (2, 2, 0));
}

#[tokio::test]
async fn permissions_are_enforced() {
    // Groups come from the namenode's mapping, never from clients.
    let cl = MiniCluster::builder()
        .groups("alice", &["eng"])
        .groups("bob", &["eng"])
        .groups("carol", &["supergroup"])
        .start()
        .await
        .unwrap();
    let admin = cl.client().await.unwrap();
    admin.mkdirs("/user/alice", None, true).await.unwrap();
    admin
        .set_owner("/user/alice", Some("alice"), Some("eng"))
        .await
        .unwrap();
    admin.set_permission("/user/alice", 0o750).await.unwrap();
    let alice = cl.client_as("alice").await.unwrap();
    let bob = cl.client_as("bob").await.unwrap();
    let eve = cl.client_as("eve").await.unwrap();

    alice.mkdirs("/user/alice/data", None, false).await.unwrap();
    touch(&alice, "/user/alice/data/f").await;
    // Group members read but do not write.
    assert_eq!(names(&bob, "/user/alice/data").await, ["f"]);
    let (k, m) = code(bob.create_empty("/user/alice/data/g", None).await);
    assert_eq!(k, ErrorCode::AccessControl);
    assert!(
        m.contains("user=bob") && m.contains("WRITE") && m.contains("/user/alice/data"),
        "{m}"
    );
    let (k, _) = code(bob.delete("/user/alice/data/f", false).await);
    assert_eq!(k, ErrorCode::AccessControl);
    let (k, _) = code(bob.rename("/user/alice/data/f", "/tmpf", false).await);
    assert_eq!(k, ErrorCode::AccessControl);
    // Others cannot even traverse.
    let (k, m) = code(eve.stat("/user/alice/data/f").await);
    assert_eq!(k, ErrorCode::AccessControl);
    assert!(m.contains("EXECUTE"), "{m}");
    // Only the owner changes mode; only the superuser changes owner.
    let (k, _) = code(bob.set_permission("/user/alice/data/f", 0o777).await);
    assert_eq!(k, ErrorCode::AccessControl);
    let (k, _) = code(alice.set_owner("/user/alice/data/f", Some("bob"), None).await);
    assert_eq!(k, ErrorCode::AccessControl);
    alice
        .set_owner("/user/alice/data/f", None, Some("eng"))
        .await
        .unwrap();
    let (k, _) = code(alice.set_owner("/user/alice/data/f", None, Some("ops")).await);
    assert_eq!(k, ErrorCode::AccessControl);
    // Recursive delete needs access to the whole subtree.
    alice
        .mkdirs("/user/alice/data/locked/inner", None, true)
        .await
        .unwrap();
    admin
        .set_permission("/user/alice/data/locked", 0o500)
        .await
        .unwrap();
    let (k, _) = code(alice.delete("/user/alice/data", true).await);
    assert_eq!(k, ErrorCode::AccessControl);
    assert!(
        alice
            .get_file_info("/user/alice/data/locked/inner")
            .await
            .unwrap()
            .is_some()
    );
    // The superuser passes every check.
    admin.delete("/user/alice/data", true).await.unwrap();
    // A member of the supergroup is a superuser too.
    let ops = cl.client_as("carol").await.unwrap();
    ops.set_owner("/user/alice", Some("carol"), None).await.unwrap();
}

/// `r` claiming the supergroup in its metadata, as `--groups supergroup`
/// once made the CLI do.
fn claiming_supergroup<T>(mut r: tonic::Request<T>) -> tonic::Request<T> {
    r.metadata_mut().insert(
        "x-granary-groups",
        tonic::metadata::MetadataValue::from_static("supergroup"),
    );
    r
}

/// Groups are the namenode's to decide: a client claiming the supergroup
/// is not a superuser, nor in any group it names.
#[tokio::test]
async fn groups_a_client_claims_are_not_believed() {
    let cl = MiniCluster::start().await.unwrap();
    let admin = cl.client().await.unwrap();
    admin.mkdirs("/secret", Some(0o700), true).await.unwrap();
    let mallory = cl.client_as("mallory").await.unwrap();
    let listing = pb::GetListingRequest {
        path: "/secret".into(),
        ..Default::default()
    };
    let e = mallory
        .rpc()
        .get_listing(claiming_supergroup(mallory.request(listing)))
        .await
        .unwrap_err();
    assert_eq!(ErrorCode::from_status(&e), ErrorCode::AccessControl, "{e:?}");
    let enter = pb::SetSafeModeRequest {
        action: pb::SafeModeAction::Enter as i32,
    };
    let e = mallory
        .rpc()
        .set_safe_mode(claiming_supergroup(mallory.request(enter)))
        .await
        .unwrap_err();
    assert!(e.message().contains("Superuser privilege is required"), "{e:?}");
    assert!(!admin.safe_mode(SafeModeAction::Get).await.unwrap().on);
}

/// One user, one access, whichever door: gRPC and WebHDFS give a user the
/// groups the namenode's mapping says, so they agree on a 0750 directory
/// of group `eng`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_webhdfs_agree_on_a_users_groups() {
    let cl = MiniCluster::builder()
        .groups("bob", &["eng"])
        .start()
        .await
        .unwrap();
    let admin = cl.client().await.unwrap();
    admin.mkdirs("/proj", None, true).await.unwrap();
    touch(&admin, "/proj/f").await;
    admin
        .set_owner("/proj", Some("alice"), Some("eng"))
        .await
        .unwrap();
    admin.set_permission("/proj", 0o750).await.unwrap();
    let http = cl.namenode_http_addr().to_string();
    let web_list = |user: &str| {
        let (http, path) = (
            http.clone(),
            format!("/webhdfs/v1/proj?op=LISTSTATUS&user.name={user}"),
        );
        tokio::task::spawn_blocking(move || granary_testkit::binaries::http_get(&http, &path))
    };
    // bob, in eng by the mapping: both doors let him read.
    let bob = cl.client_as("bob").await.unwrap();
    assert_eq!(names(&bob, "/proj").await, ["f"]);
    let body = web_list("bob")
        .await
        .unwrap()
        .expect("WebHDFS lets bob list /proj");
    assert!(body.contains("\"pathSuffix\":\"f\""), "{body}");
    // eve, in no group: neither does.
    let eve = cl.client_as("eve").await.unwrap();
    let (k, _) = code(eve.list("/proj").await);
    assert_eq!(k, ErrorCode::AccessControl);
    assert!(web_list("eve").await.unwrap().is_none());
}

/// HDFS's path limits reach users as InvalidPath naming the limit, also
/// for a path far too long to quote back whole.
#[tokio::test]
async fn paths_over_the_limits_are_refused_naming_the_limit() {
    let cl = MiniCluster::start().await.unwrap();
    let c = cl.client().await.unwrap();
    let deepest = "/d".repeat(1000);
    c.mkdirs(&deepest, None, true).await.unwrap();
    assert!(c.get_file_info(&deepest).await.unwrap().is_some());
    let (k, m) = code(c.mkdirs(&format!("{deepest}/d"), None, true).await);
    assert_eq!(k, ErrorCode::InvalidPath, "{m}");
    assert!(
        m.contains("path is 1001 components deep, over the limit of 1000"),
        "{m}"
    );
    let huge = "/a".repeat(60_001);
    for r in [
        c.stat(&huge).await.map(|_| ()),
        c.mkdirs(&huge, None, true).await,
        c.rename(&deepest, &huge, false).await,
    ] {
        let (k, m) = code(r);
        assert_eq!(k, ErrorCode::InvalidPath, "{m}");
        assert!(
            m.contains("path is 120002 characters long, over the limit of 8000") && m.len() < 500,
            "{m}"
        );
    }
}

/// The sticky bit of a 1777 /tmp: everybody creates there, but only an
/// entry's owner, the directory's owner or the superuser removes it.
#[tokio::test]
async fn a_sticky_tmp_keeps_entries_to_their_owners() {
    let cl = MiniCluster::start().await.unwrap();
    let admin = cl.client().await.unwrap();
    admin.mkdirs("/tmp", Some(0o1777), false).await.unwrap();
    assert_eq!(admin.stat("/tmp").await.unwrap().permission, 0o1777);
    let alice = cl.client_as("alice").await.unwrap();
    let bob = cl.client_as("bob").await.unwrap();
    touch(&alice, "/tmp/a").await;
    touch(&bob, "/tmp/b").await;
    let (k, m) = code(bob.delete("/tmp/a", false).await);
    assert_eq!(k, ErrorCode::AccessControl, "{m}");
    assert!(
        m.contains(
            "Permission denied by sticky bit: user=bob, \
             path=\"/tmp/a\":alice:supergroup:-rw-r--r--, \
             parent=\"/tmp\":hdfs:supergroup:drwxrwxrwt"
        ),
        "{m}"
    );
    let (k, _) = code(bob.rename("/tmp/a", "/tmp/mine", false).await);
    assert_eq!(k, ErrorCode::AccessControl);
    let (k, _) = code(bob.rename("/tmp/b", "/tmp/a", true).await);
    assert_eq!(k, ErrorCode::AccessControl);
    bob.rename("/tmp/b", "/tmp/b2", false).await.unwrap();
    bob.delete("/tmp/b2", false).await.unwrap();
    alice.rename("/tmp/a", "/tmp/a2", false).await.unwrap();
    admin.delete("/tmp/a2", false).await.unwrap();
}

/// A content summary needs read and execute on every directory below, as
/// in HDFS: bob's private directory in alice's tree stops her summary.
#[tokio::test]
async fn a_content_summary_needs_access_to_the_whole_subtree() {
    let cl = MiniCluster::start().await.unwrap();
    let admin = cl.client().await.unwrap();
    admin.mkdirs("/a/pub", None, true).await.unwrap();
    admin.set_owner("/a", Some("alice"), None).await.unwrap();
    admin.mkdirs("/a/pub/secret", None, false).await.unwrap();
    admin.set_owner("/a/pub/secret", Some("bob"), None).await.unwrap();
    admin.set_permission("/a/pub/secret", 0o700).await.unwrap();
    let alice = cl.client_as("alice").await.unwrap();
    let (k, m) = code(alice.content_summary("/a").await);
    assert_eq!(k, ErrorCode::AccessControl, "{m}");
    assert!(
        m.contains("user=alice, access=READ_EXECUTE, inode=\"/a/pub/secret\":bob:"),
        "{m}"
    );
    let cs = admin.content_summary("/a").await.unwrap();
    assert_eq!(cs.directory_count, 3);
}

#[tokio::test]
async fn blocks_are_allocated_committed_and_located() {
    let cl = MiniCluster::start().await.unwrap();
    let c = cl.client().await.unwrap();
    let mut nn = c.rpc();
    let create = |path: &str| {
        c.request(pb::CreateRequest {
            path: path.into(),
            client_name: c.client_name().into(),
            replication: 1,
            block_size: 1024,
            ..Default::default()
        })
    };
    // No datanodes: a clear error, nothing allocated.
    let f = nn
        .create(create("/f"))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    let add = |prev: Option<pb::ExtendedBlock>| {
        c.request(pb::AddBlockRequest {
            path: "/f".into(),
            file_id: f.file_id,
            client_name: c.client_name().into(),
            previous: prev,
            excluded_nodes: vec![],
        })
    };
    let e = nn.add_block(add(None)).await.unwrap_err();
    assert_eq!(ErrorCode::from_status(&e), ErrorCode::NotEnoughReplicas);
    assert!(
        e.message().contains("could only be written to 0"),
        "{}",
        e.message()
    );

    let mut dn = granary_testkit::fake_datanode::FakeDatanode::register(&cl, "dn-1", "127.0.0.1:40004")
        .await
        .unwrap();
    let b1 = nn.add_block(add(None)).await.unwrap().into_inner().block.unwrap();
    assert_eq!(b1.offset, 0);
    assert_eq!(b1.locations.len(), 1);
    let mut blk1 = b1.block.unwrap();
    blk1.num_bytes = 1024;
    // A block nobody holds yet keeps the file open.
    let b2 = nn
        .add_block(add(Some(blk1)))
        .await
        .unwrap()
        .into_inner()
        .block
        .unwrap();
    assert_eq!(b2.offset, 1024);
    let mut blk2 = b2.block.unwrap();
    // A retried addBlock gets the same block back.
    let again = nn
        .add_block(add(Some(blk1)))
        .await
        .unwrap()
        .into_inner()
        .block
        .unwrap();
    assert_eq!(again.block.unwrap().block_id, blk2.block_id);
    blk2.num_bytes = 100;
    let complete = || {
        c.request(pb::CompleteRequest {
            path: "/f".into(),
            file_id: f.file_id,
            client_name: c.client_name().into(),
            last: Some(blk2),
        })
    };
    assert!(!nn.complete(complete()).await.unwrap().into_inner().completed);
    // Another client cannot take over the open file.
    let other = cl.client().await.unwrap();
    let e = other
        .rpc()
        .create(other.request(pb::CreateRequest {
            path: "/f".into(),
            client_name: other.client_name().into(),
            overwrite: true,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(ErrorCode::from_status(&e), ErrorCode::LeaseConflict);
    dn.received(vec![blk1, blk2]).await.unwrap();
    assert!(nn.complete(complete()).await.unwrap().into_inner().completed);
    // Idempotent on retry.
    assert!(nn.complete(complete()).await.unwrap().into_inner().completed);
    let st = c.stat("/f").await.unwrap();
    assert_eq!(st.length, 1124);
    assert!(!st.under_construction);
    let located = c.block_locations("/f", 1000, 50).await.unwrap();
    assert_eq!(located.blocks.len(), 2);
    assert_eq!(located.file_length, 1124);
    assert_eq!(located.blocks[0].locations[0].id.uuid, "dn-1");
    let tail = c.block_locations("/f", 1024, 0).await.unwrap();
    assert_eq!(tail.blocks.len(), 1);
    assert_eq!(tail.blocks[0].offset, 1024);

    // Deleting the file tells the datanode to drop the replicas.
    c.delete("/f", false).await.unwrap();
    let commands = dn.heartbeat().await.unwrap();
    let deleted: Vec<u64> = commands
        .iter()
        .filter_map(|c| match &c.command {
            Some(pb::datanode_command::Command::Invalidate(i)) => Some(i.blocks.iter().map(|b| b.block_id)),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(deleted.len(), 2);
    assert!(deleted.contains(&blk1.block_id) && deleted.contains(&blk2.block_id));
    // A replica of a block that no longer exists is invalidated when reported.
    dn.full_report(vec![blk1]).await.unwrap();
    assert_eq!(cl.namenode().state.blocks().node_block_count("dn-1"), 0);
}

#[tokio::test]
async fn everything_survives_a_namenode_restart() {
    let mut cl = MiniCluster::start().await.unwrap();
    let c = cl.client().await.unwrap();
    c.mkdirs("/keep/a", None, true).await.unwrap();
    touch(&c, "/keep/a/f").await;
    c.set_permission("/keep/a/f", 0o640).await.unwrap();
    c.rename("/keep/a", "/keep/b", false).await.unwrap();
    c.mkdirs("/gone", None, false).await.unwrap();
    c.delete("/gone", false).await.unwrap();
    cl.restart_namenode().await.unwrap();
    let c = cl.client().await.unwrap();
    assert_eq!(names(&c, "/keep").await, ["b"]);
    assert_eq!(c.stat("/keep/b/f").await.unwrap().permission, 0o640);
    assert!(c.get_file_info("/gone").await.unwrap().is_none());
    // Ids keep rising after a restart: a new file gets a fresh id.
    touch(&c, "/keep/new").await;
    let a = c.stat("/keep/b/f").await.unwrap().file_id;
    let b = c.stat("/keep/new").await.unwrap().file_id;
    assert!(b > a);
    cl.namenode().state.ns().check_consistency().unwrap();
}

#[tokio::test]
async fn concurrent_renames_and_deletes_keep_the_tree_consistent() {
    let cl = MiniCluster::start().await.unwrap();
    let c = cl.client().await.unwrap();
    for d in ["/t/a", "/t/b", "/t/c", "/t/a/x", "/t/b/y"] {
        c.mkdirs(d, None, true).await.unwrap();
    }
    let dirs = ["/t/a", "/t/b", "/t/c", "/t/a/x", "/t/b/y", "/t/c/z"];
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let c = cl.client().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut seed = w * 7919 + 1;
            let mut next = move || {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) as usize
            };
            for _ in 0..150 {
                let s = dirs[next() % dirs.len()];
                let d = dirs[next() % dirs.len()];
                // Errors (cycles, missing paths, races) are expected; corruption is not.
                match next() % 4 {
                    0 => drop(c.rename(s, d, false).await),
                    1 => drop(c.mkdirs(s, None, true).await),
                    2 => drop(c.delete(s, true).await),
                    _ => drop(c.create_empty(&format!("{s}/f{}", next() % 5), None).await),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    cl.namenode().state.ns().check_consistency().unwrap();
}
