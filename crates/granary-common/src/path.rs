//! The rules a namespace path must follow (HDFS `DFSUtil.isValidName`).

use crate::defaults::MAX_COMPONENT_LENGTH;
use crate::{ErrorCode, HasErrorCode};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid path {path:?}: {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: String,
}

impl HasErrorCode for PathError {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidPath
    }
}

/// Splits an absolute, normalized path into its components ("/" gives none).
pub fn components(path: &str) -> Result<Vec<&str>, PathError> {
    let err = |reason: &str| PathError {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if !path.starts_with('/') {
        return Err(err("path must be absolute"));
    }
    if path == "/" {
        return Ok(Vec::new());
    }
    if path.ends_with('/') {
        return Err(err("path must not end with '/'"));
    }
    let mut out = Vec::new();
    for c in path[1..].split('/') {
        validate_component(c).map_err(|r| err(&r))?;
        out.push(c);
    }
    Ok(out)
}

/// Checks one name as it may appear in a directory.
pub fn validate_component(c: &str) -> Result<(), String> {
    if c.is_empty() {
        return Err("empty path component".into());
    }
    if c == "." || c == ".." {
        return Err(format!("component {c:?} is not allowed"));
    }
    if c.len() > MAX_COMPONENT_LENGTH {
        return Err(format!(
            "component is {} bytes, longer than the limit of {MAX_COMPONENT_LENGTH}",
            c.len()
        ));
    }
    if c.contains('\0') {
        return Err("component contains a NUL byte".into());
    }
    if c.contains(':') {
        return Err("component contains ':'".into());
    }
    Ok(())
}

/// Joins a directory path and a child name.
pub fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The parent directory of an absolute path ("/" for top-level entries and the root).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last component, "" for the root.
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normal_paths() {
        assert_eq!(components("/").unwrap(), Vec::<&str>::new());
        assert_eq!(components("/a/b c/d.txt").unwrap(), vec!["a", "b c", "d.txt"]);
    }

    #[test]
    fn rejects_what_hdfs_rejects() {
        for bad in [
            "", "a/b", "/a/", "//a", "/a//b", "/a/./b", "/a/../b", "/a\0b", "/a:b",
        ] {
            let e = components(bad).unwrap_err();
            assert_eq!(e.path, bad);
            assert!(e.to_string().contains("invalid path"), "{e}");
        }
        let long = format!("/{}", "x".repeat(256));
        assert!(components(&long).unwrap_err().reason.contains("255"));
        assert!(components(&format!("/{}", "x".repeat(255))).is_ok());
    }

    #[test]
    fn parent_and_name() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(file_name("/a/b"), "b");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
    }
}
