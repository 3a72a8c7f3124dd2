//! Pod conditions (`PodScheduled`, `Initialized`, `ContainersReady`, `Ready`) with Kubernetes'
//! transition semantics, shared by the scheduler and the pod runtime, which write different ones
//! on the same pod.

use api::types::{PodCondition, PodStatus};

/// Sets one condition. The transition time moves only when the status flips; returns whether
/// anything changed, so callers skip writes that would change nothing.
pub fn set(status: &mut PodStatus, type_: &str, value: bool, reason: Option<&str>, message: Option<&str>) -> bool {
    let value = if value { "True" } else { "False" };
    let now = api::meta::now_rfc3339();
    match status.conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == value && c.reason.as_deref() == reason && c.message.as_deref() == message => false,
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(now);
            }
            c.status = value.into();
            c.reason = reason.map(str::to_string);
            c.message = message.map(str::to_string);
            true
        }
        None => {
            status.conditions.push(PodCondition {
                type_: type_.into(),
                status: value.into(),
                last_transition_time: Some(now),
                reason: reason.map(str::to_string),
                message: message.map(str::to_string),
            });
            true
        }
    }
}

/// When the condition last turned to its current status.
pub fn since(status: &PodStatus, type_: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let c = status.conditions.iter().find(|c| c.type_ == type_)?;
    chrono::DateTime::parse_from_rfc3339(c.last_transition_time.as_deref()?).ok().map(|t| t.to_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_flips() {
        let mut s = PodStatus::default();
        assert!(set(&mut s, "Ready", false, Some("ContainersNotReady"), None));
        assert!(!set(&mut s, "Ready", false, Some("ContainersNotReady"), None));
        s.conditions[0].last_transition_time = Some("2020-01-01T00:00:00Z".into());
        assert!(set(&mut s, "Ready", false, Some("Other"), None));
        assert_eq!(s.conditions[0].last_transition_time.as_deref(), Some("2020-01-01T00:00:00Z"));
        assert!(set(&mut s, "Ready", true, None, None));
        assert_ne!(s.conditions[0].last_transition_time.as_deref(), Some("2020-01-01T00:00:00Z"));
        assert!(since(&s, "Ready").is_some());
        assert_eq!(s.conditions.len(), 1);
    }
}
