//! Which address families a Service asks for when it asks for no specific IP (spec §3.3).

use crate::addr::Family;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Families {
    pub v4: bool,
    pub v6: bool,
}

impl Families {
    pub fn has(self, family: Family) -> bool {
        match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }

    /// The requested families, IPv4 first: the order in which they are allocated.
    pub fn iter(self) -> impl Iterator<Item = Family> {
        [(Family::V4, self.v4), (Family::V6, self.v6)].into_iter().filter(|&(_, on)| on).map(|(f, _)| f)
    }
}

/// Cilium's table, verbatim:
///
/// | policy | ipFamilies | IPv4 | IPv6 |
/// |---|---|---|---|
/// | unset or SingleStack | non-empty | first is IPv4 | first is not IPv4 |
/// | unset or SingleStack | empty | ipv4 enabled | IPv6 enabled and IPv4 not |
/// | PreferDualStack | non-empty | enabled and listed | enabled and listed |
/// | PreferDualStack | empty | enabled | enabled |
/// | RequireDualStack | any | enabled | enabled |
///
/// A single-stack family is honoured even if the cluster does not enable it: the Service said so.
/// `PreferDualStack` can request nothing (IPv4 only, on an IPv6-only cluster); such a Service is
/// satisfied with no IP. An unknown policy is treated as unset.
pub fn requested_families(
    policy: Option<&str>,
    families: &[String],
    ipv4_enabled: bool,
    ipv6_enabled: bool,
) -> Families {
    let listed = |name: &str| families.iter().any(|f| f == name);
    match policy {
        Some("RequireDualStack") => Families { v4: ipv4_enabled, v6: ipv6_enabled },
        Some("PreferDualStack") if families.is_empty() => Families { v4: ipv4_enabled, v6: ipv6_enabled },
        Some("PreferDualStack") => Families { v4: ipv4_enabled && listed("IPv4"), v6: ipv6_enabled && listed("IPv6") },
        _ => match families.first() {
            Some(first) => Families { v4: first == "IPv4", v6: first != "IPv4" },
            None => Families { v4: ipv4_enabled, v6: !ipv4_enabled && ipv6_enabled },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Spec §7 TestLBIPAM_serviceIPFamilyRequest, all eleven sub-cases.
    #[test]
    fn cilium_family_table() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let both = |v4, v6| Families { v4, v6 };
        type Case<'a> = (Option<&'a str>, Vec<String>, bool, bool, Families);
        let cases: &[Case] = &[
            (None, f(&[]), true, false, both(true, false)),
            (None, f(&[]), false, true, both(false, true)),
            (None, f(&[]), true, true, both(true, false)),
            (None, f(&["IPv6"]), true, false, both(false, true)),
            (None, f(&["IPv4"]), false, true, both(true, false)),
            (None, f(&["IPv4", "IPv6"]), false, false, both(true, false)),
            (None, f(&["IPv6", "IPv4"]), false, false, both(false, true)),
            (Some("SingleStack"), f(&[]), true, true, both(true, false)),
            (Some("PreferDualStack"), f(&[]), true, true, both(true, true)),
            (Some("PreferDualStack"), f(&["IPv4"]), false, true, both(false, false)),
            (Some("RequireDualStack"), f(&["IPv4"]), false, true, both(false, true)),
        ];
        for (i, (policy, families, v4, v6, want)) in cases.iter().enumerate() {
            assert_eq!(requested_families(*policy, families, *v4, *v6), *want, "case {}", i + 1);
        }
    }

    #[test]
    fn dual_stack_order_does_not_matter() {
        let a = requested_families(Some("PreferDualStack"), &["IPv6".into(), "IPv4".into()], true, true);
        let b = requested_families(Some("PreferDualStack"), &["IPv4".into(), "IPv6".into()], true, true);
        assert_eq!(a, b);
        assert_eq!(a.iter().collect::<Vec<_>>(), [Family::V4, Family::V6]);
    }
}
