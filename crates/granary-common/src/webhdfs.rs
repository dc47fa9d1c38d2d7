//! What the namenode's and datanodes' WebHDFS endpoints share: query
//! parameters as Hadoop parses them, the `RemoteException` error body, and
//! HDFS's JSON for a file status.
//!
//! Spec: hadoop-project-dist/hadoop-hdfs/WebHDFS.html.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::ErrorCode;
use granary_proto as pb;

/// Every WebHDFS URL starts with this.
pub const PREFIX: &str = "/webhdfs/v1";

/// The user of requests that name none (Hadoop's `dr.who`).
pub const ANONYMOUS: &str = "dr.who";

/// A failed WebHDFS request, answered as HDFS does: the status of the
/// error code and `{"RemoteException": {...}}`.
#[derive(Debug, Clone)]
pub struct WebError {
    pub code: ErrorCode,
    pub message: String,
}

impl WebError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A parameter that does not parse, worded as Hadoop's `Param` classes do.
    pub fn bad_param(name: &str, value: &str, why: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorCode::InvalidArgument,
            format!("Invalid value for webhdfs parameter \"{name}\": \"{value}\": {why}"),
        )
    }

    /// An `op` this method does not have (Hadoop names the enum it searched).
    pub fn unknown_op(method: &http::Method, op: &str) -> Self {
        let kind = match *method {
            http::Method::GET => "Get",
            http::Method::PUT => "Put",
            http::Method::POST => "Post",
            http::Method::DELETE => "Delete",
            _ => {
                return Self::new(
                    ErrorCode::InvalidArgument,
                    format!("WebHDFS does not take {method} requests"),
                );
            }
        };
        Self::bad_param(
            "op",
            op,
            format!("No enum constant org.apache.hadoop.hdfs.web.resources.{kind}OpParam.Op.{op}"),
        )
    }

    pub fn body(&self) -> Value {
        json!({
            "RemoteException": {
                "exception": self.code.java_exception(),
                "javaClassName": self.code.java_class_name(),
                "message": self.message,
            }
        })
    }
}

impl std::fmt::Display for WebError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl WebError {
    /// A failure reported by the namenode, worded as HDFS words it where
    /// clients parse the message (HdfsCLI looks for "does not exist").
    pub fn remote(code: ErrorCode, message: &str) -> Self {
        match (code, message.strip_suffix(": No such file or directory")) {
            (ErrorCode::FileNotFound, Some(path)) => Self::new(code, format!("File does not exist: {path}")),
            _ => Self::new(code, message),
        }
    }
}

impl From<tonic::Status> for WebError {
    fn from(st: tonic::Status) -> Self {
        Self::remote(ErrorCode::from_status(&st), st.message())
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        (self.code.http(), Json(self.body())).into_response()
    }
}

pub type WebResult<T> = Result<T, WebError>;

/// Query parameters. Names are case-insensitive, as in Hadoop; a repeated
/// name keeps its first value.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The operation, upper-cased (`op=liststatus` works, as in Hadoop).
    pub fn op(&self) -> WebResult<String> {
        match self.get("op") {
            Some(op) if !op.is_empty() => Ok(op.to_ascii_uppercase()),
            _ => Err(WebError::new(
                ErrorCode::InvalidArgument,
                "the webhdfs parameter \"op\" is missing",
            )),
        }
    }

    /// The caller: `user.name`, or `dr.who` when the request names nobody.
    pub fn user(&self) -> WebResult<String> {
        match self.get("user.name") {
            None => Ok(ANONYMOUS.to_string()),
            Some(u) if valid_user(u) => Ok(u.to_string()),
            Some(u) => Err(WebError::bad_param("user.name", u, "not a valid user name")),
        }
    }

    /// A non-negative integer parameter.
    pub fn u64(&self, name: &str) -> WebResult<Option<u64>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .map(Some)
                .map_err(|_| WebError::bad_param(name, v, "must be a non-negative integer")),
        }
    }

    /// An integer parameter where -1 means "leave unchanged" (SETTIMES).
    pub fn i64(&self, name: &str) -> WebResult<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= -1)
                .map(Some)
                .ok_or_else(|| WebError::bad_param(name, v, "must be an integer >= -1")),
        }
    }

    pub fn bool(&self, name: &str) -> WebResult<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(WebError::bad_param(name, v, "must be true or false")),
        }
    }

    /// Octal permission bits, at most 1777 (Hadoop's `PermissionParam`).
    pub fn permission(&self) -> WebResult<Option<u32>> {
        match self.get("permission") {
            None => Ok(None),
            Some(v) => u32::from_str_radix(v, 8)
                .ok()
                .filter(|m| *m <= 0o1777 && !v.is_empty() && v.len() <= 4)
                .map(Some)
                .ok_or_else(|| WebError::bad_param("permission", v, "must be octal, 0 to 1777")),
        }
    }

    /// Replication: 1 to 32767 (a Java short).
    pub fn replication(&self) -> WebResult<Option<u32>> {
        match self.u64("replication")? {
            None => Ok(None),
            Some(r) if (1..=i16::MAX as u64).contains(&r) => Ok(Some(r as u32)),
            Some(r) => Err(WebError::bad_param(
                "replication",
                &r.to_string(),
                "must be between 1 and 32767",
            )),
        }
    }

    /// Parameters that pass on to the datanode a request is redirected to.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

fn valid_user(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 256
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@$".contains(c))
}

/// The file system path a WebHDFS request URI names (percent-decoded).
pub fn path_of_uri(uri_path: &str) -> WebResult<String> {
    let raw = uri_path.strip_prefix(PREFIX).unwrap_or("");
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| WebError::new(ErrorCode::InvalidPath, "the path is not valid UTF-8"))?;
    Ok(path_of(&decoded))
}

/// Query parameters of a request, as Hadoop reads them.
pub fn params_of(query: Option<String>) -> Params {
    Params::new(
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect(),
    )
}

/// The absolute path a WebHDFS URL names (`""` is the root).
pub fn path_of(tail: &str) -> String {
    let t = tail.trim_start_matches('/');
    let mut p = format!("/{t}");
    // Hadoop accepts a trailing slash on directories.
    while p.len() > 1 && p.ends_with('/') {
        p.pop();
    }
    p
}

/// Characters left as they are in a URL path: unreserved ones and `/`.
const PATH_CHARS: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// `path` percent-encoded for a URL.
pub fn encode_path(path: &str) -> String {
    percent_encoding::utf8_percent_encode(path, PATH_CHARS).to_string()
}

/// A query string from `pairs`, percent-encoded.
pub fn query_string(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// HDFS's `FileStatus` JSON object, serialized straight from the status
/// (no intermediate `Value`: a listing page is a thousand of them). Keys
/// in alphabetical order, as HDFS writes them.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileStatusJson<'a> {
    access_time: i64,
    block_size: u64,
    children_num: u64,
    file_id: u64,
    group: &'a str,
    length: u64,
    modification_time: i64,
    owner: &'a str,
    path_suffix: &'a str,
    permission: String,
    replication: u32,
    storage_policy: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// HDFS's `FileStatus` JSON object for `st`, named `path_suffix`.
pub fn file_status<'a>(st: &'a pb::FileStatus, path_suffix: &'a str) -> FileStatusJson<'a> {
    let dir = st.is_dir();
    FileStatusJson {
        access_time: st.access_time,
        block_size: if dir { 0 } else { st.block_size },
        children_num: st.children_num,
        file_id: st.file_id,
        group: &st.group,
        length: if dir { 0 } else { st.length },
        modification_time: st.modification_time,
        owner: &st.owner,
        path_suffix,
        permission: format!("{:o}", st.permission & 0o1777),
        replication: if dir { 0 } else { st.replication },
        storage_policy: 0,
        kind: if dir { "DIRECTORY" } else { "FILE" },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &[(&str, &str)]) -> Params {
        Params::new(q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn names_are_case_insensitive_and_ops_upper_cased() {
        let p = params(&[("OP", "liststatus"), ("User.Name", "alice")]);
        assert_eq!(p.op().unwrap(), "LISTSTATUS");
        assert_eq!(p.user().unwrap(), "alice");
        assert_eq!(params(&[]).user().unwrap(), "dr.who");
        assert!(
            params(&[])
                .op()
                .unwrap_err()
                .message
                .contains("\"op\" is missing")
        );
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let e = params(&[("offset", "-5")]).u64("offset").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.contains("\"offset\": \"-5\""), "{}", e.message);
        assert!(params(&[("permission", "999")]).permission().is_err());
        assert!(params(&[("permission", "17777")]).permission().is_err());
        assert_eq!(
            params(&[("permission", "1755")]).permission().unwrap(),
            Some(0o1755)
        );
        assert!(params(&[("replication", "0")]).replication().is_err());
        assert!(params(&[("recursive", "yes")]).bool("recursive").is_err());
        assert!(params(&[("user.name", "a b")]).user().is_err());
    }

    #[test]
    fn errors_are_remote_exceptions() {
        let e = WebError::new(ErrorCode::FileNotFound, "File does not exist: /x");
        let b = e.body();
        assert_eq!(b["RemoteException"]["exception"], "FileNotFoundException");
        assert_eq!(
            b["RemoteException"]["javaClassName"],
            "java.io.FileNotFoundException"
        );
        let e = WebError::remote(ErrorCode::FileNotFound, "/a/b: No such file or directory");
        assert_eq!(e.message, "File does not exist: /a/b");
        let e = WebError::unknown_op(&http::Method::GET, "MKDIRS");
        assert!(e.message.contains("GetOpParam.Op.MKDIRS"), "{}", e.message);
    }

    #[test]
    fn paths_are_encoded_for_urls() {
        assert_eq!(encode_path("/a b/ü%"), "/a%20b/%C3%BC%25");
    }

    #[test]
    fn paths_are_absolute_without_trailing_slash() {
        assert_eq!(path_of(""), "/");
        assert_eq!(path_of("a/b/"), "/a/b");
        assert_eq!(path_of("/a"), "/a");
    }

    #[test]
    fn file_status_json_is_hdfs_s() {
        let st = pb::FileStatus {
            name: "a.csv".into(),
            file_id: 16390,
            file_type: pb::FileType::File as i32,
            length: 24930,
            replication: 3,
            block_size: 134217728,
            owner: "alice".into(),
            group: "supergroup".into(),
            permission: 0o1644,
            modification_time: 1320173277227,
            access_time: 1320171722771,
            ..Default::default()
        };
        let json = serde_json::to_string(&file_status(&st, "a.csv")).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"accessTime":1320171722771,"blockSize":134217728,"childrenNum":0,"fileId":16390,"#,
                r#""group":"supergroup","length":24930,"modificationTime":1320173277227,"owner":"alice","#,
                r#""pathSuffix":"a.csv","permission":"1644","replication":3,"storagePolicy":0,"type":"FILE"}"#
            )
        );
        let dir = pb::FileStatus {
            file_type: pb::FileType::Directory as i32,
            ..st
        };
        let v = serde_json::to_value(file_status(&dir, "")).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["length"].as_u64()),
            (Some("DIRECTORY"), Some(0))
        );
    }
}
