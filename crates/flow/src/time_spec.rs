//! The times `--since` and `--until` take, as Hubble's: an RFC 3339 time
//! (`2026-08-09T14:06:08Z`, `2026-08-09T16:06:08.5+02:00`) or a duration before now in Go's
//! notation (`5m`, `1h30m`, `90s`, `1.5h`, `300ms`).

use chrono::{DateTime, TimeDelta, Utc};

/// The time `spec` names, durations counted back from `now`.
pub fn parse_time_spec(spec: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let spec = spec.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(spec) {
        return Ok(t.with_timezone(&Utc));
    }
    match parse_go_duration(spec) {
        Ok(d) => now.checked_sub_signed(d).ok_or_else(|| format!("{spec:?} reaches before any time")),
        Err(e) => Err(format!(
            "invalid time {spec:?}: expected RFC 3339 (2026-08-09T14:06:08Z) or a duration before now (5m, 1h30m): {e}"
        )),
    }
}

/// A Go duration (`time.ParseDuration`): one or more decimal numbers, each with a unit of ns,
/// us (or µs), ms, s, m or h; no sign, since a time in the future is never meant.
pub fn parse_go_duration(s: &str) -> Result<TimeDelta, String> {
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(TimeDelta::zero());
    }
    let mut rest = s;
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let value: f64 = number.parse().map_err(|_| format!("no number before the unit in {s:?}"))?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let ns_per_unit = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("missing unit in {s:?}")),
            other => return Err(format!("unknown unit {other:?} in {s:?}")),
        };
        total_ns += value * ns_per_unit;
        rest = tail;
    }
    if total_ns > i64::MAX as f64 {
        return Err(format!("{s:?} is too long"));
    }
    Ok(TimeDelta::nanoseconds(total_ns.round() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-08-09T14:06:08Z".parse().unwrap()
    }

    #[test]
    fn rfc3339_times_in_any_offset() {
        assert_eq!(
            parse_time_spec("2026-08-09T14:00:00Z", now()).unwrap(),
            "2026-08-09T14:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parse_time_spec("2026-08-09T16:00:00.250+02:00", now()).unwrap(),
            "2026-08-09T14:00:00.250Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn durations_count_back_from_now() {
        let at = |s: &str| parse_time_spec(s, now()).unwrap().to_rfc3339();
        assert_eq!(at("5m"), "2026-08-09T14:01:08+00:00");
        assert_eq!(at("1h30m"), "2026-08-09T12:36:08+00:00");
        assert_eq!(at("1.5h"), "2026-08-09T12:36:08+00:00");
        assert_eq!(at("90s"), "2026-08-09T14:04:38+00:00");
        assert_eq!(parse_go_duration("300ms").unwrap(), TimeDelta::milliseconds(300));
        assert_eq!(parse_go_duration("2us").unwrap(), TimeDelta::microseconds(2));
        assert_eq!(parse_go_duration("0").unwrap(), TimeDelta::zero());
    }

    #[test]
    fn bad_times_are_errors() {
        for bad in ["", "5", "5x", "m", "yesterday", "2026-08-09 14:00", "-5m", "1h-5m"] {
            assert!(parse_time_spec(bad, now()).is_err(), "{bad:?} was accepted");
        }
    }
}
