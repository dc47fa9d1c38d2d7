//! Small helpers the cluster tests share: test data, whole-file writes and
//! reads, replica holders, and polling with a deadline.

use std::collections::HashSet;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use granary_client::{CreateOptions, DfsClient};
use granary_proto as pb;

/// `len` bytes from a xorshift generator: no two blocks of a file are alike,
/// so a block served at the wrong offset cannot go unnoticed, and no two
/// seeds give the same bytes.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `bytes` to a new file `path` (and its missing parents) with blocks
/// of `block_size` bytes.
pub async fn put(c: &DfsClient, path: &str, bytes: &[u8], block_size: u64) {
    let mut w = c
        .create(
            path,
            CreateOptions {
                block_size,
                create_parent: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("create {path}: {e}"));
    w.write_all(bytes)
        .await
        .unwrap_or_else(|e| panic!("write {path}: {e}"));
    w.shutdown().await.unwrap_or_else(|e| panic!("close {path}: {e}"));
}

/// Reads the whole file.
pub async fn get(c: &DfsClient, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    c.open(path)
        .await
        .unwrap_or_else(|e| panic!("open {path}: {e}"))
        .read_to_end(&mut out)
        .await
        .unwrap_or_else(|e| panic!("read {path}: {e}"));
    out
}

/// The uuids of the datanodes holding each block of `path`, in block order.
pub async fn holders(c: &DfsClient, path: &str) -> Vec<HashSet<String>> {
    c.block_locations(path, 0, 0)
        .await
        .unwrap_or_else(|e| panic!("block locations of {path}: {e}"))
        .blocks
        .iter()
        .map(|b| b.locations.iter().map(|l| l.id.uuid.clone()).collect())
        .collect()
}

/// `path`'s blocks as the wire has them, with the access tokens a reader
/// presents to datanodes: for tests that speak the protocols themselves
/// (the client's [`DfsClient::block_locations`] keeps tokens to itself).
pub async fn located_blocks(c: &DfsClient, path: &str) -> pb::LocatedBlocks {
    let req = c.request(pb::GetBlockLocationsRequest {
        path: path.into(),
        offset: 0,
        length: 0,
    });
    c.rpc()
        .get_block_locations(req)
        .await
        .unwrap_or_else(|e| panic!("block locations of {path}: {e}"))
        .into_inner()
        .blocks
        .unwrap_or_else(|| panic!("block locations of {path}: none in the answer"))
}

/// Polls `cond` every 100 ms until it holds; panics naming `what` after `secs`.
pub async fn wait_for<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to a minute) until the namenode is out of safe mode, as after
/// a restart once the datanodes have reported.
pub async fn wait_out_of_safe_mode(c: &DfsClient) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while c
        .safe_mode(granary_client::SafeModeAction::Get)
        .await
        .expect("safe mode")
        .on
    {
        assert!(
            std::time::Instant::now() < deadline,
            "still in safe mode after a minute"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}
