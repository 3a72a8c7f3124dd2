//! Which Services the datapath gets when not all of them fit its maps: the oldest, as many as
//! fit, so that a new Service can never take frontends away from ones that already work. The
//! rest are left out (and reported) until there is room, instead of the whole sync being refused
//! and every later change stalling behind it.

use api::types::Service;
use datapath::{LbUsage, ServiceEntry};

/// What to program, and the Services (`namespace/name`, newest last) left out.
#[derive(Debug, Default, PartialEq)]
pub struct Fitted {
    pub entries: Vec<ServiceEntry>,
    pub left_out: Vec<String>,
    /// The first map that was too small, with what the whole set needs of it and what it holds.
    pub full_map: Option<(&'static str, usize, usize)>,
}

/// The entries `build` gives for the oldest Services that fit `capacity` together. `all` is what
/// `build` gives for every Service, returned as it is when it fits.
pub fn fit(
    services: &[Service],
    all: Vec<ServiceEntry>,
    capacity: Option<&LbUsage>,
    build: impl Fn(&[Service]) -> Vec<ServiceEntry>,
) -> Fitted {
    let needs = |entries: &[ServiceEntry]| LbUsage::needed(entries).ok();
    // Invalid entries are the sync's to refuse, with its own error.
    let overflow = |entries: &[ServiceEntry]| capacity.and_then(|c| needs(entries)?.overflow(c));
    let Some(full_map) = overflow(&all) else {
        return Fitted { entries: all, left_out: Vec::new(), full_map: None };
    };
    let mut by_age: Vec<&Service> = services.iter().collect();
    by_age.sort_by(|a, b| age_key(a).cmp(&age_key(b)));
    let oldest = |n: usize| -> Vec<Service> { by_age[..n].iter().map(|s| (*s).clone()).collect() };
    // What a set of Services needs only grows with the set, so the largest prefix that fits is
    // found by bisection: O(log n) builds, on the rare path.
    let (mut fits, mut too_many) = (0, by_age.len());
    while too_many - fits > 1 {
        let mid = (fits + too_many) / 2;
        if overflow(&build(&oldest(mid))).is_none() {
            fits = mid;
        } else {
            too_many = mid;
        }
    }
    Fitted {
        entries: build(&oldest(fits)),
        left_out: by_age[fits..].iter().map(|s| name_of(s)).collect(),
        full_map: Some(full_map),
    }
}

/// Creation time, then namespace and name: RFC 3339 timestamps in UTC sort as text.
fn age_key(s: &Service) -> (Option<&str>, String) {
    (s.metadata.creation_timestamp.as_deref(), name_of(s))
}

pub fn name_of(s: &Service) -> String {
    format!("{}/{}", s.metadata.namespace.as_deref().unwrap_or("default"), s.metadata.name)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use datapath::{Backend, Protocol, ServiceKind};

    use super::*;

    /// A Service made at `minute` whose one frontend (10.96.0.`n`) has `backends` backends.
    fn service(n: u8, minute: u8, backends: u8) -> (Service, ServiceEntry) {
        let mut s = Service::default();
        s.metadata.name = format!("svc{n}");
        s.metadata.namespace = Some("default".into());
        s.metadata.creation_timestamp = Some(format!("2026-12-07T10:{minute:02}:00Z"));
        let backends = (1..=backends).map(|b| Backend::active(Ipv4Addr::new(172, 20, n, b), 80, true)).collect();
        (s, ServiceEntry::new(ServiceKind::ClusterIp, Ipv4Addr::new(10, 96, 0, n), 80, Protocol::Tcp, backends))
    }

    fn build_from(pairs: &[(Service, ServiceEntry)]) -> impl Fn(&[Service]) -> Vec<ServiceEntry> + '_ {
        move |subset: &[Service]| {
            pairs
                .iter()
                .filter(|(s, _)| subset.iter().any(|t| t.metadata.name == s.metadata.name))
                .map(|(_, e)| e.clone())
                .collect()
        }
    }

    fn rows_of(pairs: &[(Service, ServiceEntry)]) -> usize {
        LbUsage::needed(&pairs.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>()).unwrap().services
    }

    #[test]
    fn everything_goes_when_it_fits_or_nothing_is_known_of_the_maps() {
        let pairs = [service(1, 0, 2), service(2, 1, 2)];
        let services: Vec<Service> = pairs.iter().map(|p| p.0.clone()).collect();
        let all: Vec<ServiceEntry> = pairs.iter().map(|p| p.1.clone()).collect();
        let roomy = LbUsage { services: 100, backends: 100, revnat: 100, maglev: 100, affinity_match: 100 };
        for capacity in [None, Some(&roomy)] {
            let got = fit(&services, all.clone(), capacity, |_| panic!("no second build when all fit"));
            assert_eq!(got, Fitted { entries: all.clone(), left_out: vec![], full_map: None });
        }
    }

    #[test]
    fn the_newest_services_are_left_out_when_the_set_does_not_fit() {
        // Listed out of age order: svc3 is the oldest, svc1 the newest.
        let pairs = [service(1, 40, 3), service(2, 20, 3), service(3, 10, 3), service(4, 30, 3)];
        let services: Vec<Service> = pairs.iter().map(|p| p.0.clone()).collect();
        let all: Vec<ServiceEntry> = pairs.iter().map(|p| p.1.clone()).collect();
        let per_service = rows_of(&pairs[..1]);
        // Room for two and a half Services' rows: the two oldest.
        let capacity =
            LbUsage { services: per_service * 5 / 2, backends: 100, revnat: 100, maglev: 100, affinity_match: 100 };
        let got = fit(&services, all, Some(&capacity), build_from(&pairs));
        assert_eq!(got.left_out, ["default/svc4", "default/svc1"], "newest last");
        let kept: std::collections::BTreeSet<Ipv4Addr> = got.entries.iter().map(|e| e.frontend.address).collect();
        assert_eq!(kept, [Ipv4Addr::new(10, 96, 0, 2), Ipv4Addr::new(10, 96, 0, 3)].into(), "the two oldest");
        assert_eq!(got.full_map, Some((datapath::abi::MAP_SERVICES, 4 * per_service, capacity.services)));
    }

    #[test]
    fn a_full_backend_map_leaves_out_services_too() {
        let pairs = [service(1, 1, 4), service(2, 2, 4)];
        let services: Vec<Service> = pairs.iter().map(|p| p.0.clone()).collect();
        let all: Vec<ServiceEntry> = pairs.iter().map(|p| p.1.clone()).collect();
        let capacity = LbUsage { services: 100, backends: 6, revnat: 100, maglev: 100, affinity_match: 100 };
        let got = fit(&services, all, Some(&capacity), build_from(&pairs));
        assert_eq!(got.left_out, ["default/svc2"]);
        assert_eq!(got.entries.len(), 1);
        assert_eq!(got.full_map, Some((datapath::abi::MAP_BACKENDS, 8, 6)));
    }
}
