//! How sizes and times are shown to people (CLI, web UI), as Hadoop shows them.

/// "yyyy-MM-dd HH:mm:ss" in UTC, as `hdfs dfs -stat %y`.
pub fn date_utc(ms: i64) -> String {
    use chrono::TimeZone;
    match chrono::Utc.timestamp_millis_opt(ms) {
        chrono::LocalResult::Single(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        _ => "1970-01-01 00:00:00".to_string(),
    }
}

/// 1.5 K, 128 M, ... as Hadoop's `-h`.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if n < 1024 {
        return n.to_string();
    }
    let mut v = n as f64;
    let mut unit = "";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    let s = format!("{v:.1}");
    let s = s.strip_suffix(".0").unwrap_or(&s).to_string();
    format!("{s} {unit}")
}

/// A datanode's state as people read it ("live", "decommissioning", ...).
pub fn datanode_state(s: i32) -> &'static str {
    use granary_proto::DatanodeState;
    match DatanodeState::try_from(s) {
        Ok(DatanodeState::Live) => "live",
        Ok(DatanodeState::Stale) => "stale",
        Ok(DatanodeState::Dead) => "dead",
        Ok(DatanodeState::Decommissioning) => "decommissioning",
        Ok(DatanodeState::Decommissioned) => "decommissioned",
        _ => "unknown",
    }
}
