//! Samples read back from the OpenMetrics/Prometheus text format, for `cilia status` and the
//! tests: `name{label="value",...} 12.5`.

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Every sample of `text`; comment lines and lines that do not parse are skipped.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).filter_map(parse_line).collect()
}

/// The families declared with `# TYPE name kind`, as (name, kind).
pub fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.trim().to_string()))
        .collect()
}

/// The sum of every sample named `name` (over all label sets); None if there is none.
pub fn sum(samples: &[Sample], name: &str) -> Option<f64> {
    let mut found = samples.iter().filter(|s| s.name == name).peekable();
    found.peek()?;
    Some(found.map(|s| s.value).sum())
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(inner) => parse_labels(inner)?,
        None => (Vec::new(), rest),
    };
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample { name: name.to_string(), labels, value })
}

/// `a="x",b="y\"z"} rest` → the labels and what follows the brace.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches(',');
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_string(), value));
        s = &rest[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP cilia_drop_count Dropped packets.\n\
        # TYPE cilia_drop_count counter\n\
        cilia_drop_count_total{reason=\"No service backend\",direction=\"EGRESS\"} 3\n\
        cilia_drop_count_total{reason=\"quote \\\" and, comma\",direction=\"INGRESS\"} 2\n\
        cilia_ipam_ip_addresses 4\n\
        cilia_service_implementation_delay_seconds_bucket{le=\"+Inf\"} 9\n\
        # EOF\n";

    #[test]
    fn reads_samples_with_labels_and_escapes() {
        let s = samples(TEXT);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].name, "cilia_drop_count_total");
        assert_eq!(s[0].label("reason"), Some("No service backend"));
        assert_eq!(s[1].label("reason"), Some("quote \" and, comma"));
        assert_eq!(s[1].label("direction"), Some("INGRESS"));
        assert_eq!(sum(&s, "cilia_drop_count_total"), Some(5.0));
        assert_eq!(sum(&s, "cilia_ipam_ip_addresses"), Some(4.0));
        assert_eq!(sum(&s, "missing"), None);
        assert_eq!(s[3].label("le"), Some("+Inf"));
        assert_eq!(families(TEXT), [("cilia_drop_count".to_string(), "counter".to_string())]);
    }

    #[test]
    fn garbage_is_skipped() {
        assert!(samples("not a sample\nx{a=\"unterminated 1\n").is_empty());
    }
}
