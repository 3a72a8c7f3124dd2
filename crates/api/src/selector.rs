//! Label selectors (`-l app=webpod,tier in (a,b),!canary`, and `LabelSelector` objects) and field
//! selectors (`--field-selector spec.nodeName=k8s-w0`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::{
    error::ValidationError,
    meta::{LabelSelector, LabelSelectorRequirement},
    object::Object,
    validate,
};

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector: all requirements must hold. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

impl fmt::Display for Requirement {
    /// kubectl's `-l` syntax, which [`Selector::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |vs: &BTreeSet<String>| vs.iter().map(String::as_str).collect::<Vec<_>>().join(",");
        match self {
            Requirement::Equals(k, v) => write!(f, "{k}={v}"),
            Requirement::NotEquals(k, v) => write!(f, "{k}!={v}"),
            Requirement::In(k, vs) => write!(f, "{k} in ({})", set(vs)),
            Requirement::NotIn(k, vs) => write!(f, "{k} notin ({})", set(vs)),
            Requirement::Exists(k) => write!(f, "{k}"),
            Requirement::DoesNotExist(k) => write!(f, "!{k}"),
        }
    }
}

impl fmt::Display for Selector {
    /// The selector as an API server's `labelSelector` query parameter takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl Selector {
    /// Selects everything.
    pub fn everything() -> Self {
        Selector::default()
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Parses kubectl's `-l` syntax: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`,
    /// joined by commas.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let err = |reason: String| ValidationError::new(format!("invalid label selector {text:?}: {reason}"));
        let mut requirements = Vec::new();
        for clause in split_top_level(text).map_err(err)? {
            let clause = clause.trim();
            if clause.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(err("empty requirement".into()));
            }
            requirements.push(parse_clause(clause).map_err(err)?);
        }
        Ok(Selector { requirements })
    }

    /// Converts a `LabelSelector` object, checking its operators and values as Kubernetes does.
    /// Errors name the field (`matchExpressions[0].operator`).
    pub fn from_label_selector(sel: &LabelSelector) -> Result<Self, ValidationError> {
        let mut requirements = Vec::new();
        for (k, v) in &sel.match_labels {
            validate::label_key(k).map_err(|e| e.under(&format!("matchLabels.{k}")))?;
            validate::label_value(v).map_err(|e| e.under(&format!("matchLabels.{k}")))?;
            requirements.push(Requirement::Equals(k.clone(), v.clone()));
        }
        for (i, expr) in sel.match_expressions.iter().enumerate() {
            let at = format!("matchExpressions[{i}]");
            requirements.push(requirement_from_expression(expr).map_err(|e| e.under(&at))?);
        }
        Ok(Selector { requirements })
    }

    /// An absent selector: `None` selects nothing, unlike an empty selector which selects all.
    pub fn from_optional(sel: Option<&LabelSelector>) -> Result<Option<Self>, ValidationError> {
        sel.map(Self::from_label_selector).transpose()
    }
}

fn requirement_from_expression(expr: &LabelSelectorRequirement) -> Result<Requirement, ValidationError> {
    validate::label_key(&expr.key).map_err(|e| e.under("key"))?;
    let values: BTreeSet<String> = expr.values.iter().cloned().collect();
    for (i, v) in expr.values.iter().enumerate() {
        validate::label_value(v).map_err(|e| e.under(&format!("values[{i}]")))?;
    }
    let key = expr.key.clone();
    match expr.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => {
            Err(ValidationError::field("values", format!("must be non-empty when operator is {}", expr.operator)))
        }
        "In" => Ok(Requirement::In(key, values)),
        "NotIn" => Ok(Requirement::NotIn(key, values)),
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            Err(ValidationError::field("values", format!("must be empty when operator is {}", expr.operator)))
        }
        "Exists" => Ok(Requirement::Exists(key)),
        "DoesNotExist" => Ok(Requirement::DoesNotExist(key)),
        other => Err(ValidationError::field(
            "operator",
            format!("{other:?} is not a valid operator; valid operators: In, NotIn, Exists, DoesNotExist"),
        )),
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ')'".into());
                }
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn parse_clause(clause: &str) -> Result<Requirement, String> {
    let key_ok = |k: &str| validate::label_key(k).map(|()| k.to_string()).map_err(|e| e.reason);
    let value_ok = |v: &str| validate::label_value(v).map(|()| v.to_string()).map_err(|e| e.reason);
    if let Some(key) = clause.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key_ok(key.trim())?));
    }
    if let Some((k, v)) = clause.split_once("!=") {
        return Ok(Requirement::NotEquals(key_ok(k.trim())?, value_ok(v.trim())?));
    }
    if let Some((k, v)) = clause.split_once("==").or_else(|| clause.split_once('=')) {
        return Ok(Requirement::Equals(key_ok(k.trim())?, value_ok(v.trim())?));
    }
    for (op, notin) in [(" notin ", true), (" in ", false)] {
        if let Some((k, rest)) = clause.split_once(op) {
            let rest = rest.trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("values of {:?} must be in parentheses", op.trim()))?;
            let values = inner.split(',').map(|v| value_ok(v.trim())).collect::<Result<BTreeSet<_>, _>>()?;
            if values.is_empty() || inner.trim().is_empty() {
                return Err(format!("{:?} needs at least one value", op.trim()));
            }
            let key = key_ok(k.trim())?;
            return Ok(if notin { Requirement::NotIn(key, values) } else { Requirement::In(key, values) });
        }
    }
    if clause.contains(' ') || clause.contains('(') {
        return Err(format!("cannot parse requirement {clause:?}"));
    }
    Ok(Requirement::Exists(key_ok(clause)?))
}

/// A field selector: `spec.nodeName=k8s-w0,status.phase!=Running`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let mut terms = Vec::new();
        for clause in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let (path, equal, value) = if let Some((p, v)) = clause.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = clause.split_once("==").or_else(|| clause.split_once('=')) {
                (p, true, v)
            } else {
                return Err(ValidationError::new(format!(
                    "invalid field selector {text:?}: {clause:?} is not of the form field=value or field!=value"
                )));
            };
            let path = path.trim();
            if path.is_empty() || !path.split('.').all(|p| !p.is_empty()) {
                return Err(ValidationError::new(format!(
                    "invalid field selector {text:?}: {path:?} is not a field path"
                )));
            }
            terms.push((path.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector { terms })
    }

    /// A missing field compares as the empty string, as Kubernetes does for `spec.nodeName=`.
    pub fn matches(&self, object: &Object) -> bool {
        self.terms.iter().all(|(path, equal, want)| {
            let got = match object.lookup_path(path) {
                Some(serde_json::Value::String(s)) => s,
                Some(serde_json::Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (got == *want) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn prints_what_it_parses() {
        for text in ["app=webpod", "a!=b,c in (x,y),d notin (z),e,!f", ""] {
            let sel = Selector::parse(text).unwrap();
            assert_eq!(sel.to_string(), text);
            assert_eq!(Selector::parse(&sel.to_string()).unwrap(), sel);
        }
    }

    #[test]
    fn parses_and_matches_kubectl_syntax() {
        let s = Selector::parse("app=webpod,tier in (web, api),!canary,env!=prod,zone").unwrap();
        assert_eq!(s.requirements().len(), 5);
        assert!(s.matches(&labels(&[("app", "webpod"), ("tier", "api"), ("zone", "a")])));
        assert!(!s.matches(&labels(&[("app", "webpod"), ("tier", "db"), ("zone", "a")])));
        assert!(!s.matches(&labels(&[("app", "webpod"), ("tier", "web"), ("zone", "a"), ("canary", "1")])));
        assert!(!s.matches(&labels(&[("app", "webpod"), ("tier", "web")])));
        let notin = Selector::parse("app notin (a,b)").unwrap();
        assert!(notin.matches(&labels(&[])));
        assert!(!notin.matches(&labels(&[("app", "a")])));
        assert!(Selector::parse("").unwrap().is_empty());
    }

    #[test]
    fn rejects_malformed_selectors() {
        for bad in ["app in a,b", "app=(", "a b", "app in ()", ",", "app=web pod", "-bad=x", "a=b=c)"] {
            let err = Selector::parse(bad).unwrap_err();
            assert!(err.reason.contains("invalid label selector"), "{bad}: {err}");
        }
    }

    #[test]
    fn label_selector_objects_are_checked() {
        let sel = LabelSelector {
            match_expressions: vec![LabelSelectorRequirement {
                key: "kubernetes.io/hostname".into(),
                operator: "In".into(),
                values: vec!["k8s-w1".into(), "k8s-ctr".into()],
            }],
            ..Default::default()
        };
        let s = Selector::from_label_selector(&sel).unwrap();
        assert!(s.matches(&labels(&[("kubernetes.io/hostname", "k8s-ctr")])));
        assert!(!s.matches(&labels(&[("kubernetes.io/hostname", "k8s-w0")])));

        let bad = LabelSelector {
            match_expressions: vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "Within".into(),
                values: vec![],
            }],
            ..Default::default()
        };
        let err = Selector::from_label_selector(&bad).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("matchExpressions[0].operator"));
    }

    #[test]
    fn field_selector() {
        let mut pod = Object::new(&crate::kinds::POD, Some("default"), "p");
        pod.body.insert("spec".into(), serde_json::json!({"nodeName": "k8s-w0"}));
        assert!(FieldSelector::parse("spec.nodeName=k8s-w0").unwrap().matches(&pod));
        assert!(!FieldSelector::parse("spec.nodeName=k8s-w1").unwrap().matches(&pod));
        assert!(FieldSelector::parse("spec.nodeName!=k8s-w1,metadata.name=p").unwrap().matches(&pod));
        assert!(FieldSelector::parse("status.phase=").unwrap().matches(&pod));
        assert!(FieldSelector::parse("nodeName").is_err());
    }
}
