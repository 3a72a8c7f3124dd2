//! Metric families whose values are read when scraped: entries of BPF maps, counters the
//! datapath keeps in its maps, pool usage. Registered as a prometheus-client [`Collector`], so
//! they sit in the same exposition as the process's own counters and histograms.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScrapedKind {
    /// Only grows (the exposition adds `_total`).
    Counter,
    Gauge,
}

/// One family: its name without the registry's prefix, and a sample per label set.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrapedFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: ScrapedKind,
    pub samples: Vec<(Vec<(String, String)>, f64)>,
}

impl ScrapedFamily {
    pub fn new(name: &'static str, help: &'static str, kind: ScrapedKind) -> Self {
        ScrapedFamily { name, help, kind, samples: Vec::new() }
    }

    /// With one unlabelled sample.
    pub fn single(name: &'static str, help: &'static str, kind: ScrapedKind, value: f64) -> Self {
        ScrapedFamily { name, help, kind, samples: vec![(Vec::new(), value)] }
    }

    pub fn sample(mut self, labels: &[(&str, &str)], value: f64) -> Self {
        self.samples.push((labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), value));
        self
    }
}

/// `datastore_unreadable_objects` and `datastore_unreadable_values_total`: stored values the process
/// skipped because they are not objects, which nothing else shows. `objects` are the keys whose
/// last value did not read, `values_seen` every such value read (the store's counters).
pub fn unreadable_families(objects: usize, values_seen: u64) -> Vec<ScrapedFamily> {
    vec![
        ScrapedFamily::single(
            "datastore_unreadable_objects",
            "Stored objects whose value could not be read as this process last read them (their last readable version is kept).",
            ScrapedKind::Gauge,
            objects as f64,
        ),
        ScrapedFamily::single(
            "datastore_unreadable_values",
            "Stored values read that could not be read as objects.",
            ScrapedKind::Counter,
            values_seen as f64,
        ),
    ]
}

/// Calls `read` on every scrape and encodes what it returns.
pub struct ScrapeCollector {
    read: Box<dyn Fn() -> Vec<ScrapedFamily> + Send + Sync>,
}

impl ScrapeCollector {
    pub fn new(read: impl Fn() -> Vec<ScrapedFamily> + Send + Sync + 'static) -> Self {
        ScrapeCollector { read: Box::new(read) }
    }
}

impl fmt::Debug for ScrapeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScrapeCollector")
    }
}

impl Collector for ScrapeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        for family in (self.read)() {
            let metric_type = match family.kind {
                ScrapedKind::Counter => MetricType::Counter,
                ScrapedKind::Gauge => MetricType::Gauge,
            };
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, metric_type)?;
            for (labels, value) in &family.samples {
                let mut sample = metric.encode_family(labels)?;
                match family.kind {
                    // Counters the datapath keeps are whole numbers; encode them as such.
                    ScrapedKind::Counter => sample.encode_counter::<NoLabelSet, u64, u64>(&(*value as u64), None)?,
                    ScrapedKind::Gauge => sample.encode_gauge(value)?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn scraped_families_encode_as_openmetrics_with_the_prefix() {
        let mut registry = Registry::with_prefix("cilia");
        registry.register_collector(Box::new(ScrapeCollector::new(|| {
            vec![
                ScrapedFamily::new("bpf_map_pressure", "Fill ratio of a BPF map.", ScrapedKind::Gauge)
                    .sample(&[("map_name", "cilia_ct4_global")], 0.25),
                ScrapedFamily::single("l2_arp_replies", "ARP replies sent.", ScrapedKind::Counter, 7.0),
            ]
        })));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("# TYPE cilia_bpf_map_pressure gauge\n"), "{text}");
        assert!(text.contains("cilia_bpf_map_pressure{map_name=\"cilia_ct4_global\"} 0.25\n"), "{text}");
        assert!(text.contains("# TYPE cilia_l2_arp_replies counter\n"), "{text}");
        assert!(text.contains("cilia_l2_arp_replies_total 7\n"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
