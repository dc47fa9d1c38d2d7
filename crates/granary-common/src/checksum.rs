//! CRC32C per chunk (512 bytes by default), as HDFS: the unit in which block
//! data is verified on write, on read and by the block scanner.

/// Bytes of one stored checksum.
pub const CHECKSUM_SIZE: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChecksumError {
    #[error("checksum mismatch in the chunk at offset {offset}")]
    Mismatch { offset: u64 },
    #[error("{got} checksum bytes for {len} data bytes (chunk {bpc}), expected {want}")]
    WrongCount {
        got: usize,
        want: usize,
        len: usize,
        bpc: usize,
    },
}

/// Number of chunks covering `len` bytes.
pub fn chunks(len: usize, bpc: usize) -> usize {
    len.div_ceil(bpc)
}

/// Big-endian CRC32C of each `bpc`-byte chunk of `data` (the last may be short).
pub fn compute(data: &[u8], bpc: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunks(data.len(), bpc) * CHECKSUM_SIZE);
    for chunk in data.chunks(bpc) {
        out.extend_from_slice(&crc32c::crc32c(chunk).to_be_bytes());
    }
    out
}

/// Checks `data` against `sums`; `offset` (of data's first byte) names the bad chunk.
pub fn verify(data: &[u8], sums: &[u8], bpc: usize, offset: u64) -> Result<(), ChecksumError> {
    let want = chunks(data.len(), bpc) * CHECKSUM_SIZE;
    if sums.len() != want {
        return Err(ChecksumError::WrongCount {
            got: sums.len(),
            want,
            len: data.len(),
            bpc,
        });
    }
    for (i, (chunk, sum)) in data.chunks(bpc).zip(sums.chunks_exact(CHECKSUM_SIZE)).enumerate() {
        let expect = u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]);
        if crc32c::crc32c(chunk) != expect {
            return Err(ChecksumError::Mismatch {
                offset: offset + (i * bpc) as u64,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_a_flipped_bit_and_names_its_chunk() {
        let mut data: Vec<u8> = (0..1300u32).map(|i| (i * 7) as u8).collect();
        let sums = compute(&data, 512);
        assert_eq!(sums.len(), 12);
        assert_eq!(verify(&data, &sums, 512, 1024), Ok(()));
        data[700] ^= 0x10;
        assert_eq!(
            verify(&data, &sums, 512, 1024),
            Err(ChecksumError::Mismatch { offset: 1536 })
        );
        assert!(matches!(
            verify(&data, &sums[..8], 512, 0),
            Err(ChecksumError::WrongCount { .. })
        ));
        assert!(compute(&[], 512).is_empty());
    }
}
