//! Hadoop IPC's framing (RPC version 9): the connection header, request
//! frames (a big-endian u32 length, then varint-delimited protobufs) and
//! response frames.

use bytes::{Buf, Bytes};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt};

use granary_proto::hadoop::common as rpc;
use rpc::rpc_response_header_proto::{RpcErrorCodeProto, RpcStatusProto};

/// The first bytes of a Hadoop IPC connection.
pub const PREAMBLE: &[u8] = b"hrpc";
/// The IPC version Hadoop 2 and 3 speak.
pub const VERSION: u8 = 9;
/// Auth protocol byte: none (SIMPLE: the user is whom the connection
/// context names).
pub const AUTH_NONE: u8 = 0;
/// Auth protocol byte: SASL (-33).
pub const AUTH_SASL: u8 = (-33i8) as u8;
/// Call ids with a meaning of their own.
pub const CONTEXT_CALL_ID: i32 = -3;
pub const PING_CALL_ID: i32 = -4;
pub const SASL_CALL_ID: i32 = -33;

/// Why a connection ends.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a Hadoop IPC connection header (first bytes {0:02x?})")]
    NotIpc(Vec<u8>),
    #[error("IPC version {0} is not served (Granary speaks version 9, Hadoop 2 and 3)")]
    Version(u8),
    #[error("a request frame of {len} bytes is over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("a request frame does not decode: {0}")]
    Malformed(String),
}

/// What the connection header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionHeader {
    pub service_class: u8,
    pub auth: u8,
}

/// Reads the 7-byte connection header.
pub async fn read_header(r: &mut (impl AsyncRead + Unpin)) -> Result<ConnectionHeader, FrameError> {
    let mut h = [0u8; 7];
    r.read_exact(&mut h).await.map_err(eof)?;
    if &h[..4] != PREAMBLE {
        return Err(FrameError::NotIpc(h[..4].to_vec()));
    }
    if h[4] != VERSION {
        return Err(FrameError::Version(h[4]));
    }
    Ok(ConnectionHeader {
        service_class: h[5],
        auth: h[6],
    })
}

fn eof(e: std::io::Error) -> FrameError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        FrameError::Closed
    } else {
        FrameError::Io(e)
    }
}

/// Reads one request frame of at most `max` bytes. The buffer grows as
/// bytes arrive: a length that lies costs nothing until the bytes come.
pub async fn read_frame(r: &mut (impl AsyncRead + Unpin), max: usize) -> Result<Bytes, FrameError> {
    let len = r.read_u32().await.map_err(eof)? as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut buf = Vec::with_capacity(len.min(64 << 10));
    let got = r.take(len as u64).read_to_end(&mut buf).await?;
    if got < len {
        return Err(FrameError::Closed);
    }
    Ok(Bytes::from(buf))
}

/// The next varint-delimited message of a frame.
pub fn next<M: Message + Default>(frame: &mut Bytes, what: &str) -> Result<M, FrameError> {
    let len = prost::encoding::decode_varint(frame)
        .map_err(|e| FrameError::Malformed(format!("{what}: {e}")))? as usize;
    if len > frame.remaining() {
        return Err(FrameError::Malformed(format!(
            "{what}: {len} bytes announced, {} left in the frame",
            frame.remaining()
        )));
    }
    let body = frame.split_to(len);
    M::decode(body).map_err(|e| FrameError::Malformed(format!("{what}: {e}")))
}

/// A response frame: the header and, on success, the response message
/// (always there, even when empty: clients read it).
pub fn response(header: &rpc::RpcResponseHeaderProto, body: Option<&[u8]>) -> Vec<u8> {
    let mut payload = Vec::with_capacity(64 + body.map_or(0, <[u8]>::len));
    header.encode_length_delimited(&mut payload).expect("a vec grows");
    if let Some(b) = body {
        payload.extend_from_slice(b);
    }
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The response header for call `call` of the request `req`.
pub fn header(req: &rpc::RpcRequestHeaderProto, status: RpcStatusProto) -> rpc::RpcResponseHeaderProto {
    rpc::RpcResponseHeaderProto {
        call_id: req.call_id as u32,
        status: status as i32,
        server_ipc_version_num: Some(u32::from(VERSION)),
        client_id: Some(req.client_id.clone()),
        retry_count: req.retry_count,
        ..Default::default()
    }
}

/// A failed call's response: the Java exception class the client rethrows
/// and its message.
pub fn error(
    req: &rpc::RpcRequestHeaderProto,
    status: RpcStatusProto,
    detail: RpcErrorCodeProto,
    class: &str,
    message: &str,
) -> Vec<u8> {
    let mut h = header(req, status);
    h.exception_class_name = Some(class.to_string());
    h.error_msg = Some(message.to_string());
    h.error_detail = Some(detail as i32);
    response(&h, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_decode_and_lies_are_refused() {
        let hdr = rpc::RpcRequestHeaderProto {
            call_id: 7,
            client_id: vec![1; 16],
            ..Default::default()
        };
        let method = rpc::RequestHeaderProto {
            method_name: "getFileInfo".into(),
            declaring_class_protocol_name: "org.apache.hadoop.hdfs.protocol.ClientProtocol".into(),
            client_protocol_version: 1,
        };
        let mut payload = Vec::new();
        hdr.encode_length_delimited(&mut payload).unwrap();
        method.encode_length_delimited(&mut payload).unwrap();
        let mut wire = (payload.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(&payload);
        let mut frame = read_frame(&mut &wire[..], 1 << 20).await.unwrap();
        assert_eq!(
            next::<rpc::RpcRequestHeaderProto>(&mut frame, "header").unwrap(),
            hdr
        );
        assert_eq!(
            next::<rpc::RequestHeaderProto>(&mut frame, "method").unwrap(),
            method
        );
        // Nothing left: the next message is missing, not made up.
        assert!(next::<rpc::RequestHeaderProto>(&mut frame, "request").is_err());
        // A length over the limit, a frame cut short, a message longer
        // than its frame.
        let huge = [0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut &huge[..], 1 << 20).await,
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            read_frame(&mut &wire[..10], 1 << 20).await,
            Err(FrameError::Closed)
        ));
        let mut lying = Bytes::from_static(&[50, 1, 2]);
        assert!(next::<rpc::RequestHeaderProto>(&mut lying, "method").is_err());
        // Headers: Hadoop's, another version, something else.
        let ok = b"hrpc\x09\x00\x00";
        assert_eq!(
            read_header(&mut &ok[..]).await.unwrap(),
            ConnectionHeader {
                service_class: 0,
                auth: AUTH_NONE
            }
        );
        assert!(matches!(
            read_header(&mut &b"hrpc\x07\x00\x00"[..]).await,
            Err(FrameError::Version(7))
        ));
        assert!(matches!(
            read_header(&mut &b"GET / HT"[..]).await,
            Err(FrameError::NotIpc(_))
        ));
    }

    #[test]
    fn a_success_carries_its_message_even_when_empty() {
        let req = rpc::RpcRequestHeaderProto {
            call_id: 3,
            ..Default::default()
        };
        let empty = granary_proto::hadoop::hdfs::MsyncResponseProto {}.encode_length_delimited_to_vec();
        let mut out = Bytes::from(response(&header(&req, RpcStatusProto::Success), Some(&empty)));
        let len = out.get_u32() as usize;
        assert_eq!(len, out.remaining());
        let h: rpc::RpcResponseHeaderProto = next(&mut out, "header").unwrap();
        assert_eq!((h.call_id, h.status), (3, RpcStatusProto::Success as i32));
        assert_eq!(out.as_ref(), &[0u8], "one byte: the empty message's length");
    }
}
