//! Output in the shapes `hdfs dfs` prints.

use granary_client::FileStatus;

pub fn is_dir(s: &FileStatus) -> bool {
    s.is_dir
}

/// "drwxr-xr-x" / "-rw-r--r--".
pub fn permission_string(s: &FileStatus) -> String {
    let mut out = String::with_capacity(10);
    out.push(if is_dir(s) { 'd' } else { '-' });
    for shift in [6, 3, 0] {
        let t = (s.permission >> shift) & 0o7;
        out.push(if t & 4 != 0 { 'r' } else { '-' });
        out.push(if t & 2 != 0 { 'w' } else { '-' });
        out.push(if t & 1 != 0 { 'x' } else { '-' });
    }
    out
}

/// "yyyy-MM-dd HH:mm" in local time, as `hdfs dfs -ls`.
pub fn date(ms: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_millis_opt(ms) {
        chrono::LocalResult::Single(t) => t.format("%Y-%m-%d %H:%M").to_string(),
        _ => "1970-01-01 00:00".to_string(),
    }
}

pub use granary_common::format::{date_utc, human};

/// Column widths of `hdfs dfs -ls` rows.
#[derive(Debug, Default, Clone, Copy)]
pub struct LsWidths {
    repl: usize,
    owner: usize,
    group: usize,
    size: usize,
}

impl LsWidths {
    /// Widens the columns to fit `entries`; they never narrow, so a
    /// listing printed page by page stays aligned unless a later page
    /// brings a wider value.
    pub fn fit(&mut self, entries: &[(String, FileStatus)], human_sizes: bool) {
        for (_, s) in entries {
            self.repl = self.repl.max(ls_replication(s).len()).max(3);
            self.owner = self.owner.max(s.owner.len());
            self.group = self.group.max(s.group.len());
            self.size = self.size.max(ls_size(s, human_sizes).len());
        }
    }
}

fn ls_size(s: &FileStatus, human_sizes: bool) -> String {
    if human_sizes {
        human(s.length)
    } else {
        s.length.to_string()
    }
}

fn ls_replication(s: &FileStatus) -> String {
    if is_dir(s) {
        "-".to_string()
    } else {
        s.replication.to_string()
    }
}

/// `hdfs dfs -ls` rows, columns padded to the widest entry.
pub fn ls_rows(entries: &[(String, FileStatus)], human_sizes: bool) -> Vec<String> {
    let mut widths = LsWidths::default();
    widths.fit(entries, human_sizes);
    ls_rows_in(entries, human_sizes, &widths)
}

/// `hdfs dfs -ls` rows, columns padded to `w`.
pub fn ls_rows_in(entries: &[(String, FileStatus)], human_sizes: bool, w: &LsWidths) -> Vec<String> {
    entries
        .iter()
        .map(|(path, s)| {
            format!(
                "{} {:>w_repl$} {:<w_owner$} {:<w_group$} {:>w_size$} {} {}",
                permission_string(s),
                ls_replication(s),
                s.owner,
                s.group,
                ls_size(s, human_sizes),
                date(s.modification_time),
                path,
                w_repl = w.repl,
                w_owner = w.owner,
                w_group = w.group,
                w_size = w.size,
            )
        })
        .collect()
}

/// `hdfs dfs -stat FORMAT`.
pub fn stat(fmt: &str, path: &str, s: &FileStatus) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('a') => out.push_str(&format!("{:o}", s.permission)),
            Some('A') => out.push_str(&permission_string(s)[1..]),
            Some('b') => out.push_str(&s.length.to_string()),
            Some('F') => out.push_str(if is_dir(s) {
                "directory"
            } else if s.length == 0 {
                "regular empty file"
            } else {
                "regular file"
            }),
            Some('g') => out.push_str(&s.group),
            Some('n') => out.push_str(if s.name.is_empty() { path } else { &s.name }),
            Some('o') => out.push_str(&s.block_size.to_string()),
            Some('r') => out.push_str(&s.replication.to_string()),
            Some('u') => out.push_str(&s.owner),
            Some('x') => out.push_str(&date_utc(s.access_time)),
            Some('X') => out.push_str(&s.access_time.to_string()),
            Some('y') => out.push_str(&date_utc(s.modification_time)),
            Some('Y') => out.push_str(&s.modification_time.to_string()),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Applies an octal ("755") or symbolic ("u+x,go-w", "a=r") mode to `current`.
pub fn parse_mode(spec: &str, current: u32, is_dir: bool) -> Result<u32, String> {
    if !spec.is_empty() && spec.chars().all(|c| c.is_digit(8)) {
        return u32::from_str_radix(spec, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| format!("invalid mode {spec:?}"));
    }
    let mut mode = current;
    for clause in spec.split(',') {
        let op_at = clause
            .find(['+', '-', '='])
            .ok_or_else(|| format!("invalid mode {spec:?}: expected octal or [ugoa][+-=][rwxX]"))?;
        let (who, rest) = clause.split_at(op_at);
        let op = rest.as_bytes()[0];
        let perms = &rest[1..];
        let mut mask = 0u32;
        let who = if who.is_empty() { "a" } else { who };
        for w in who.chars() {
            mask |= match w {
                'u' => 0o700,
                'g' => 0o070,
                'o' => 0o007,
                'a' => 0o777,
                _ => return Err(format!("invalid mode {spec:?}: unknown class {w:?}")),
            };
        }
        let mut bits = 0u32;
        for p in perms.chars() {
            bits |= match p {
                'r' => 0o444,
                'w' => 0o222,
                'x' => 0o111,
                'X' if is_dir || current & 0o111 != 0 => 0o111,
                'X' => 0,
                _ => return Err(format!("invalid mode {spec:?}: unknown permission {p:?}")),
            };
        }
        bits &= mask;
        mode = match op {
            b'+' => mode | bits,
            b'-' => mode & !bits,
            _ => (mode & !mask) | bits,
        };
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_like_chmod() {
        assert_eq!(parse_mode("755", 0, false), Ok(0o755));
        assert_eq!(parse_mode("u+x", 0o644, false), Ok(0o744));
        assert_eq!(parse_mode("go-r,u=rw", 0o755, false), Ok(0o611));
        assert_eq!(parse_mode("a+X", 0o644, true), Ok(0o755));
        assert!(parse_mode("q+x", 0o644, false).is_err());
        assert!(parse_mode("99", 0o644, false).is_err());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(999), "999");
        assert_eq!(human(1536), "1.5 K");
        assert_eq!(human(128 << 20), "128 M");
    }
}
