//! The rules a namespace path must follow (HDFS `DFSUtil.isValidName`, and
//! the namenode's length and depth limits).

use std::fmt;

use crate::defaults::{MAX_COMPONENT_LENGTH, MAX_PATH_DEPTH, MAX_PATH_LENGTH};
use crate::{ErrorCode, HasErrorCode};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid path {}: {reason}", Shown(path))]
pub struct PathError {
    pub path: String,
    pub reason: String,
}

impl HasErrorCode for PathError {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidPath
    }
}

/// A path as an error message quotes it: whole when short, else its
/// beginning (the reason must stay readable, and error messages are bounded).
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        const WHOLE: usize = 256;
        match self.0.char_indices().nth(WHOLE) {
            None => write!(f, "{:?}", self.0),
            Some(_) => {
                let end = self.0.char_indices().nth(SHOWN).map_or(self.0.len(), |(i, _)| i);
                write!(f, "{:?}...", &self.0[..end])
            }
        }
    }
}

/// Splits an absolute, normalized path into its components ("/" gives none).
/// The length and depth limits are checked before anything is split, so a
/// huge path costs one pass over its bytes.
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
    // Characters, as HDFS counts them; a path within the limit in bytes is
    // within it in characters too.
    if path.len() > MAX_PATH_LENGTH {
        let chars = path.chars().count();
        if chars > MAX_PATH_LENGTH {
            return Err(err(&format!(
                "path is {chars} characters long, over the limit of {MAX_PATH_LENGTH}"
            )));
        }
    }
    let depth = path.bytes().filter(|&b| b == b'/').count();
    if depth > MAX_PATH_DEPTH {
        return Err(err(&format!(
            "path is {depth} components deep, over the limit of {MAX_PATH_DEPTH}"
        )));
    }
    let mut out = Vec::with_capacity(depth);
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
            "component is {} bytes, over the limit of {MAX_COMPONENT_LENGTH}",
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

    /// A path of `depth` components, `len` characters long, none of them
    /// longer than a component may be.
    fn path_of(depth: usize, len: usize) -> String {
        let mut p = "/a".repeat(depth);
        while p.len() + 100 < len {
            p.push('/');
            p.push_str(&"b".repeat(99));
        }
        p.push('/');
        p.push_str(&"c".repeat(len - p.len()));
        p
    }

    #[test]
    fn the_length_limit_holds_up_to_and_including_8000_characters() {
        let at = path_of(10, MAX_PATH_LENGTH);
        assert_eq!(at.len(), MAX_PATH_LENGTH);
        assert!(components(&at).is_ok());
        let e = components(&format!("{at}c")).unwrap_err();
        assert_eq!(e.reason, "path is 8001 characters long, over the limit of 8000");
        // Characters, not bytes: 8000 two-byte characters pass.
        let wide = format!("/{}", "\u{e9}".repeat(99)).repeat(MAX_PATH_LENGTH / 100);
        assert_eq!(wide.chars().count(), MAX_PATH_LENGTH);
        assert!(components(&wide).is_ok());
        let e = components(&format!("{wide}\u{e9}")).unwrap_err();
        assert!(e.reason.contains("8001 characters"), "{e}");
    }

    #[test]
    fn the_depth_limit_holds_up_to_and_including_1000_components() {
        let at = "/d".repeat(MAX_PATH_DEPTH);
        assert_eq!(components(&at).unwrap().len(), MAX_PATH_DEPTH);
        let e = components(&format!("{at}/d")).unwrap_err();
        assert_eq!(e.reason, "path is 1001 components deep, over the limit of 1000");
        assert!(e.to_string().contains("invalid path"), "{e}");
    }

    #[test]
    fn the_component_limit_holds_up_to_and_including_255_bytes() {
        let at = format!("/a/{}", "x".repeat(MAX_COMPONENT_LENGTH));
        assert!(components(&at).is_ok());
        let e = components(&format!("{at}x")).unwrap_err();
        assert_eq!(e.reason, "component is 256 bytes, over the limit of 255");
        // Bytes, not characters: 128 two-byte characters are 256 bytes.
        assert!(components(&format!("/{}", "\u{e9}".repeat(128))).is_err());
    }

    #[test]
    fn a_huge_path_is_refused_without_quoting_all_of_it() {
        let deep = "/a".repeat(60_000);
        let e = components(&deep).unwrap_err();
        assert_eq!(e.path, deep);
        assert!(e.reason.contains("120000 characters"), "{e}");
        let msg = e.to_string();
        assert!(msg.len() < 200, "{msg}");
        assert!(msg.starts_with("invalid path \"/a/a/"), "{msg}");
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
