//! Secure mode (issue 21) with real processes: TLS on every port and
//! connection, `auth = "tls"` and `"token"`. What crosses the data port is
//! encrypted; nothing is served to a client that does not speak TLS or has
//! no certificate (or token); a caller is who its certificate or token
//! names; every operation is audited.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod identity;
mod tokens;
mod transport;

/// Text no encrypted stream shows: every line says it is the plaintext.
const MARK: &[u8] = b"granary-plaintext";

fn plaintext(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("granary-plaintext line {i:08}\n").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}
