//! HDFS's whole-file checksum (`MD5-of-xMD5-of-yCRC32C`): an MD5 over each
//! block's MD5 of its chunk CRCs. Equal files with equal block and chunk
//! sizes have equal checksums, here and on HDFS (`hadoop fs -checksum`).

use md5::{Digest, Md5};
use tokio::io::AsyncReadExt;

use crate::{DfsClient, Result};

/// A file checksum as HDFS's `MD5MD5CRC32FileChecksum` serializes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChecksum {
    /// e.g. `MD5-of-262144MD5-of-512CRC32C`.
    pub algorithm: String,
    /// bytes-per-CRC (4 bytes), CRCs per block (8), MD5 (16), big-endian.
    pub bytes: Vec<u8>,
}

impl FileChecksum {
    pub fn hex(&self) -> String {
        self.bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The block MD5s as HDFS's client hashes them: it writes them into a
/// Java `DataOutputBuffer` and hashes that buffer's whole backing array,
/// which starts at 32 bytes and doubles as it fills, so the bytes past the
/// last MD5 are zeros up to that capacity. Hashing the same bytes gives
/// the same file checksum as `hadoop fs -checksum`.
fn java_buffer(mut md5s: Vec<u8>) -> Vec<u8> {
    let mut capacity = 32;
    while capacity < md5s.len() {
        capacity *= 2;
    }
    md5s.resize(capacity, 0);
    md5s
}

/// Data read per step: whole chunks, so CRCs never straddle two reads.
const READ_CHUNKS: usize = 2048;

impl DfsClient {
    /// Reads `path` once (verifying every chunk as any read does) and
    /// computes its HDFS-compatible checksum.
    pub async fn file_checksum(&self, path: &str) -> Result<FileChecksum> {
        let bpc = self.server_defaults().await?.bytes_per_checksum.max(1) as usize;
        let located = self.located_blocks(path, 0, 0).await?;
        let mut r = self.open(path).await?;
        let mut block_md5s = Vec::with_capacity(16 * located.blocks.len());
        let mut crc_per_block = 0u64;
        let mut buf = vec![0u8; bpc * READ_CHUNKS];
        for b in &located.blocks {
            let mut left = b.block.as_ref().map_or(0, |x| x.num_bytes) as usize;
            let mut block_md5 = Md5::new();
            let mut crcs = 0u64;
            while left > 0 {
                let n = left.min(buf.len());
                r.read_exact(&mut buf[..n]).await?;
                let sums = granary_common::checksum::compute(&buf[..n], bpc);
                crcs += (sums.len() / granary_common::checksum::CHECKSUM_SIZE) as u64;
                block_md5.update(&sums);
                left -= n;
            }
            block_md5s.extend_from_slice(&block_md5.finalize());
            if located.blocks.len() > 1 {
                crc_per_block = crc_per_block.max(crcs);
            }
        }
        let mut bytes = Vec::with_capacity(28);
        bytes.extend_from_slice(&(bpc as u32).to_be_bytes());
        bytes.extend_from_slice(&crc_per_block.to_be_bytes());
        bytes.extend_from_slice(&Md5::digest(java_buffer(block_md5s)));
        Ok(FileChecksum {
            algorithm: format!("MD5-of-{crc_per_block}MD5-of-{bpc}CRC32C"),
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::java_buffer;

    #[test]
    fn block_md5s_are_padded_as_a_java_buffer_grows() {
        assert_eq!(java_buffer(vec![1; 16]).len(), 32);
        assert_eq!(java_buffer(vec![1; 32]).len(), 32);
        assert_eq!(java_buffer(vec![1; 48]).len(), 64);
        assert_eq!(java_buffer(vec![1; 16 * 9]).len(), 256);
        let b = java_buffer(vec![7; 16]);
        assert!(b[..16].iter().all(|x| *x == 7) && b[16..].iter().all(|x| *x == 0));
    }
}
