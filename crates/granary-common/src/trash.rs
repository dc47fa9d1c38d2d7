//! HDFS's trash, laid out as Hadoop's default trash policy lays it out, so
//! operators' habits carry over: a deleted path moves to
//! `/user/USER/.Trash/Current/PATH`; a checkpoint renames `Current` to the
//! time it was taken (`yyMMddHHmmss`, UTC here); checkpoints older than the
//! trash interval are deleted. Clients (rm, expunge) and the namenode's
//! emptier share these rules.

use chrono::{DateTime, NaiveDateTime, Utc};

/// A user's trash directory's name, in their home directory.
pub const TRASH: &str = ".Trash";
/// Where deleted paths go until the next checkpoint.
pub const CURRENT: &str = "Current";
/// HDFS's checkpoint name format.
const CHECKPOINT_FORMAT: &str = "%y%m%d%H%M%S";

/// `user`'s trash directory: `/user/USER/.Trash`.
pub fn root(user: &str) -> String {
    format!("/user/{user}/{TRASH}")
}

/// Where `path` (absolute) goes in `user`'s trash.
pub fn destination(user: &str, path: &str) -> String {
    format!("{}/{CURRENT}{path}", root(user))
}

/// Whether `path` (absolute, normalized) is in `user`'s trash.
pub fn is_in(user: &str, path: &str) -> bool {
    let r = root(user);
    path == r || path.strip_prefix(&r).is_some_and(|rest| rest.starts_with('/'))
}

/// Whether `path` holds `user`'s trash (deleting it into the trash would
/// move the trash into itself).
pub fn contains(user: &str, path: &str) -> bool {
    path == "/"
        || root(user)
            .strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// A checkpoint's name for `at`; `n` > 0 tells apart checkpoints taken in
/// the same second.
pub fn checkpoint_name(at: DateTime<Utc>, n: u32) -> String {
    let base = at.format(CHECKPOINT_FORMAT).to_string();
    if n == 0 { base } else { format!("{base}-{n}") }
}

/// When the checkpoint named `name` was taken; None for any other name
/// (Current, or what a user put there), which expiry leaves alone.
pub fn checkpoint_time(name: &str) -> Option<DateTime<Utc>> {
    let stamp = match name.split_once('-') {
        Some((s, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => s,
        Some(_) => return None,
        None => name,
    };
    if stamp.len() != 12 || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDateTime::parse_from_str(stamp, CHECKPOINT_FORMAT)
        .ok()
        .map(|t| t.and_utc())
}

/// Whether a checkpoint named `name` is past `interval` at `now`.
pub fn expired(name: &str, now: DateTime<Utc>, interval: std::time::Duration) -> bool {
    let Some(t) = checkpoint_time(name) else {
        return false;
    };
    let age = now.signed_duration_since(t);
    age.to_std().is_ok_and(|a| a >= interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn checkpoints_are_named_and_read_back_as_hdfs_names_them() {
        let at = DateTime::parse_from_rfc3339("2026-12-02T17:05:09Z")
            .unwrap()
            .to_utc();
        assert_eq!(checkpoint_name(at, 0), "261202170509");
        assert_eq!(checkpoint_name(at, 2), "261202170509-2");
        assert_eq!(checkpoint_time("261202170509"), Some(at));
        assert_eq!(checkpoint_time("261202170509-2"), Some(at));
        for other in [
            "Current",
            "2612021705",
            "26120217050x",
            "261202170509-",
            "261202170509-a",
            "x-1",
        ] {
            assert_eq!(checkpoint_time(other), None, "{other}");
        }
        let later = at + chrono::Duration::seconds(60);
        assert!(expired("261202170509", later, Duration::from_secs(60)));
        assert!(!expired("261202170509", later, Duration::from_secs(61)));
        assert!(!expired("Current", later, Duration::ZERO));
    }

    #[test]
    fn paths_in_and_around_the_trash() {
        assert_eq!(destination("bob", "/data/f"), "/user/bob/.Trash/Current/data/f");
        assert!(is_in("bob", "/user/bob/.Trash"));
        assert!(is_in("bob", "/user/bob/.Trash/Current/x"));
        assert!(!is_in("bob", "/user/bob/.Trashcan"));
        assert!(!is_in("bob", "/user/bob"));
        assert!(contains("bob", "/user/bob"));
        assert!(contains("bob", "/user"));
        assert!(contains("bob", "/"));
        assert!(!contains("bob", "/user/bo"));
        assert!(!contains("bob", "/user/bob/.Trash/Current"));
    }
}
