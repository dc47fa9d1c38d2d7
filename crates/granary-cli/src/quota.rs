//! `granary admin set-quota | clr-quota | set-space-quota | clr-space-quota`
//! (HDFS's `dfsadmin -setQuota ...`) and the quota columns of `fs count -q`.

use granary_client::{ContentSummary, DfsClient, QuotaSetting};

use crate::error::CliResult;
use crate::format;

/// Which quota a command changes, and how.
#[derive(Debug, Clone, Copy)]
pub enum QuotaChange {
    Names(QuotaSetting),
    Space(QuotaSetting),
}

/// Applies `change` to every directory of `dirs`; the first that fails
/// ends the command with its error (its name says which).
pub async fn set(c: &DfsClient, change: QuotaChange, dirs: &[String]) -> CliResult {
    for dir in dirs {
        let (names, space) = match change {
            QuotaChange::Names(s) => (s, QuotaSetting::Keep),
            QuotaChange::Space(s) => (QuotaSetting::Keep, s),
        };
        c.set_quota(dir, names, space).await?;
    }
    Ok(())
}

/// A name quota as given: a whole number of at least 1.
pub fn parse_names(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "{s:?} is not a valid name quota: give a whole number of at least 1"
        )),
    }
}

/// A size as HDFS takes it: bytes, or a number with a binary suffix
/// (k, m, g, t, p, e; either case), e.g. `10g`, `1.5t`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a size: give bytes, or a number with k, m, g, t, p or e (e.g. 10g)");
    let t = s.trim();
    let (num, shift) = match t.chars().last().map(|c| c.to_ascii_lowercase()) {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p' | 'e')) => {
            let shift = 10 * (1 + "kmgtpe".find(c).unwrap_or(0) as u32);
            (&t[..t.len() - 1], shift)
        }
        _ => (t, 0),
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(1u64 << shift).ok_or_else(bad);
    }
    let f: f64 = num.parse().map_err(|_| bad())?;
    let bytes = f * (1u64 << shift) as f64;
    if !f.is_finite() || f < 0.0 || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// `QUOTA REM_QUOTA SPACE_QUOTA REM_SPACE_QUOTA ` as `hdfs dfs -count -q`
/// prints them: "none" and "inf" where a directory has no quota.
pub fn columns(cs: &ContentSummary, human: bool) -> String {
    let (quota, rem) = match cs.name_quota {
        Some(q) => {
            let used = cs.directory_count + cs.file_count;
            (q.to_string(), (q as i128 - used as i128).to_string())
        }
        None => ("none".to_string(), "inf".to_string()),
    };
    let (space, space_rem) = match cs.space_quota {
        Some(q) => {
            let rem = q as i128 - cs.space_consumed as i128;
            let shown = |n: i128| {
                if human && n >= 0 {
                    format::human(n as u64)
                } else {
                    n.to_string()
                }
            };
            (shown(q as i128), shown(rem))
        }
        None => ("none".to_string(), "inf".to_string()),
    };
    format!("{quota:>12} {rem:>15} {space:>15} {space_rem:>15} ")
}

/// The header `hdfs dfs -count -q -v` prints.
pub const HEADER: &str = "       QUOTA       REM_QUOTA     SPACE_QUOTA REM_SPACE_QUOTA    DIR_COUNT   FILE_COUNT       CONTENT_SIZE PATHNAME";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_hdfs_takes_them() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("10g"), Ok(10 << 30));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert_eq!(parse_size("2t"), Ok(2 << 40));
        for bad in ["", "g", "-1", "ten", "1x", "nan", "99999999999e"] {
            assert!(parse_size(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(parse_names("3"), Ok(3));
        assert!(parse_names("0").is_err());
        assert!(parse_names("-2").is_err());
    }

    #[test]
    fn count_q_columns_say_none_and_inf_without_a_quota() {
        let mut cs = ContentSummary {
            directory_count: 2,
            file_count: 3,
            space_consumed: 3 << 20,
            ..Default::default()
        };
        assert_eq!(
            columns(&cs, false).split_whitespace().collect::<Vec<_>>(),
            ["none", "inf", "none", "inf"]
        );
        cs.name_quota = Some(10);
        cs.space_quota = Some(10 << 20);
        assert_eq!(
            columns(&cs, true).split_whitespace().collect::<Vec<_>>(),
            ["10", "5", "10", "M", "7", "M"]
        );
        assert_eq!(
            columns(&cs, false).split_whitespace().collect::<Vec<_>>(),
            ["10", "5", "10485760", "7340032"]
        );
    }
}
