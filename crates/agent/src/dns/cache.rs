//! The forwarder's cache: upstream answers kept for their TTL, negative ones (NXDOMAIN and NODATA)
//! for the negative TTL of the SOA in their authority section (RFC 2308 §5: the smaller of the
//! SOA record's TTL and its minimum field). A negative answer without an SOA is not cached
//! (RFC 2308 §5), nor is a failure. Served records carry what remains of their TTL.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::ResponseCode,
    rr::{DNSClass, Name, RData, Record, RecordType},
};

/// Caps, as CoreDNS's cache plugin has them: an hour for answers, half an hour for denials.
pub const MAX_TTL: u32 = 3600;
pub const MAX_NEGATIVE_TTL: u32 = 1800;
/// Entries at most; when full, expired entries go first, then arbitrary ones.
pub const CAPACITY: usize = 10_000;

/// An upstream answer as cached and served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
}

impl Answer {
    /// How long this answer may be cached; None when it may not.
    pub fn cache_ttl(&self) -> Option<u32> {
        match self.rcode {
            ResponseCode::NoError if !self.answers.is_empty() => {
                self.answers.iter().map(|r| r.ttl).min().map(|t| t.min(MAX_TTL))
            }
            ResponseCode::NoError | ResponseCode::NXDomain => self
                .authorities
                .iter()
                .find_map(|r| match &r.data {
                    RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                    _ => None,
                })
                .map(|t| t.min(MAX_NEGATIVE_TTL)),
            _ => None,
        }
    }

    fn aged(&self, by: u32) -> Answer {
        let age = |rs: &[Record]| {
            rs.iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.ttl = r.ttl.saturating_sub(by);
                    r
                })
                .collect()
        };
        Answer { rcode: self.rcode, answers: age(&self.answers), authorities: age(&self.authorities) }
    }
}

type Key = (Name, RecordType, DNSClass);

struct Entry {
    answer: Answer,
    stored: Instant,
    ttl: u32,
}

#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<Key, Entry>>,
}

fn key(name: &Name, qtype: RecordType, class: DNSClass) -> Key {
    (name.to_lowercase(), qtype, class)
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    /// The cached answer with its TTLs lowered by its age; None when absent or expired.
    pub fn get(&self, name: &Name, qtype: RecordType, class: DNSClass) -> Option<Answer> {
        self.get_at(name, qtype, class, Instant::now())
    }

    pub fn get_at(&self, name: &Name, qtype: RecordType, class: DNSClass, now: Instant) -> Option<Answer> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = entries.get(&key(name, qtype, class))?;
        let age = u32::try_from(now.saturating_duration_since(e.stored).as_secs()).unwrap_or(u32::MAX);
        (age < e.ttl).then(|| e.answer.aged(age))
    }

    /// Keeps `answer` if it may be cached; returns the TTL it got.
    pub fn put(&self, name: &Name, qtype: RecordType, class: DNSClass, answer: &Answer) -> Option<u32> {
        self.put_at(name, qtype, class, answer, Instant::now())
    }

    pub fn put_at(
        &self,
        name: &Name,
        qtype: RecordType,
        class: DNSClass,
        answer: &Answer,
        now: Instant,
    ) -> Option<u32> {
        let ttl = answer.cache_ttl().filter(|t| *t > 0)?;
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| now.saturating_duration_since(e.stored) < Duration::from_secs(e.ttl.into()));
            if entries.len() >= CAPACITY {
                let drop: Vec<Key> = entries.keys().take(CAPACITY / 10).cloned().collect();
                for k in drop {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(key(name, qtype, class), Entry { answer: answer.clone(), stored: now, ttl });
        Some(ttl)
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::rdata::{A, SOA};

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn a(ttl: u32) -> Record {
        Record::from_rdata(name("www.example.lab."), ttl, RData::A(A::new(192, 168, 10, 200)))
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let s = SOA::new(name("ns.lab."), name("hostmaster.lab."), 1, 1200, 180, 1209600, minimum);
        Record::from_rdata(name("lab."), ttl, RData::SOA(s))
    }

    #[test]
    fn positive_answers_live_for_their_smallest_ttl_and_age() {
        let c = Cache::new();
        let t0 = Instant::now();
        let n = name("www.example.lab.");
        let ans = Answer { rcode: ResponseCode::NoError, answers: vec![a(30), a(10)], authorities: vec![] };
        assert_eq!(c.put_at(&n, RecordType::A, DNSClass::IN, &ans, t0), Some(10));
        let got =
            c.get_at(&name("WWW.Example.LAB."), RecordType::A, DNSClass::IN, t0 + Duration::from_secs(4)).unwrap();
        assert_eq!(got.answers.iter().map(|r| r.ttl).collect::<Vec<_>>(), [26, 6]);
        assert!(c.get_at(&n, RecordType::A, DNSClass::IN, t0 + Duration::from_secs(10)).is_none());
        assert!(c.get_at(&n, RecordType::AAAA, DNSClass::IN, t0).is_none());
    }

    #[test]
    fn negative_answers_use_the_soa_and_failures_are_not_kept() {
        let c = Cache::new();
        let t0 = Instant::now();
        let n = name("nothere.example.lab.");
        let nx = Answer { rcode: ResponseCode::NXDomain, answers: vec![], authorities: vec![soa(60, 7)] };
        assert_eq!(nx.cache_ttl(), Some(7), "min(SOA TTL, minimum)");
        c.put_at(&n, RecordType::A, DNSClass::IN, &nx, t0);
        assert_eq!(
            c.get_at(&n, RecordType::A, DNSClass::IN, t0 + Duration::from_secs(6)).unwrap().rcode,
            ResponseCode::NXDomain
        );
        assert!(c.get_at(&n, RecordType::A, DNSClass::IN, t0 + Duration::from_secs(7)).is_none());
        let nodata = Answer { rcode: ResponseCode::NoError, answers: vec![], authorities: vec![soa(3, 60)] };
        assert_eq!(nodata.cache_ttl(), Some(3));
        let bare_nx = Answer { rcode: ResponseCode::NXDomain, answers: vec![], authorities: vec![] };
        assert_eq!(bare_nx.cache_ttl(), None, "no SOA, no negative caching");
        let fail = Answer { rcode: ResponseCode::ServFail, answers: vec![], authorities: vec![] };
        assert_eq!(c.put_at(&n, RecordType::MX, DNSClass::IN, &fail, t0), None);
        let huge = Answer { rcode: ResponseCode::NoError, answers: vec![a(86400)], authorities: vec![] };
        assert_eq!(huge.cache_ttl(), Some(MAX_TTL));
    }

    #[test]
    fn a_full_cache_makes_room() {
        let c = Cache::new();
        let t0 = Instant::now();
        let ans = Answer { rcode: ResponseCode::NoError, answers: vec![a(1)], authorities: vec![] };
        for i in 0..CAPACITY {
            c.put_at(&name(&format!("h{i}.lab.")), RecordType::A, DNSClass::IN, &ans, t0);
        }
        assert_eq!(c.len(), CAPACITY);
        // All expired a second later: the next insert clears them.
        c.put_at(&name("new.lab."), RecordType::A, DNSClass::IN, &ans, t0 + Duration::from_secs(2));
        assert_eq!(c.len(), 1);
    }
}
