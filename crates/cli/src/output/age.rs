//! Ages as kubectl prints them (`14s`, `2m18s`, `46m`, `5h3m`, `3d`), from `creationTimestamp`.

use chrono::{DateTime, Utc};

/// kubectl's `HumanDuration`.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 { format!("{m}m") } else { format!("{m}m{}s", s % 60) }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 { format!("{h}h") } else { format!("{h}h{}m", m % 60) }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        if h % 24 == 0 { format!("{d}d") } else { format!("{d}d{}h", h % 24) }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

/// The age of an object created at `timestamp` (RFC 3339), or `<unknown>`.
pub fn age(timestamp: Option<&str>, now: DateTime<Utc>) -> String {
    match timestamp.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) {
        Some(created) => human_duration((now - created.with_timezone(&Utc)).num_seconds()),
        None => "<unknown>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn matches_kubectl() {
        assert_eq!(human_duration(14), "14s");
        assert_eq!(human_duration(116), "116s");
        assert_eq!(human_duration(138), "2m18s");
        assert_eq!(human_duration(300), "5m");
        assert_eq!(human_duration(46 * 60), "46m");
        assert_eq!(human_duration(5 * 3600 + 180), "5h3m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400), "3d");
        assert_eq!(human_duration(800 * 86400), "2y");
    }
}
