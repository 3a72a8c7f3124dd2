//! Manifest files: one or more YAML (or JSON) documents, each an object or a `List` of objects.
//!
//! Parsing is all-or-nothing: every document is validated before the caller writes anything, so a bad
//! document in the middle of a file leaves the stored objects untouched.

use serde_json::Value;

use crate::{error::ValidationError, object::Object, validate};

/// Largest manifest accepted in one file: a few times the object limit, to fit many objects, yet far
/// below what would make parsing or a datastore transaction slow.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Parses and validates every object in `text`. `source` names the file (or `-` for stdin) in errors.
pub fn parse(source: &str, text: &str, default_namespace: &str) -> Result<Vec<Object>, ValidationError> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(ValidationError::new(format!(
            "manifest is {:.1} MiB; the limit is {} MiB per file (split it into several files)",
            text.len() as f64 / (1024.0 * 1024.0),
            MAX_MANIFEST_BYTES / (1024 * 1024)
        ))
        .with_source(source));
    }
    let documents: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
        ValidationError::new(format!("invalid YAML: {}", first_line(&e.to_string()))).with_source(source)
    })?;
    let mut objects = Vec::new();
    for (index, doc) in documents.into_iter().enumerate() {
        let where_ = format!("document {}", index + 1);
        if doc.is_null() {
            continue;
        }
        if doc.get("kind").and_then(Value::as_str) == Some("List") {
            let items = match doc.get("items") {
                Some(Value::Array(items)) => items.clone(),
                _ => {
                    return Err(ValidationError::field("items", "a List needs an items list")
                        .with_object(where_)
                        .with_source(source));
                }
            };
            for (i, item) in items.into_iter().enumerate() {
                let obj = validate::object(item, default_namespace)
                    .map_err(|e| e.with_object(format!("{where_} item {}", i + 1)).with_source(source))?;
                objects.push(obj);
            }
            continue;
        }
        let obj = validate::object(doc, default_namespace).map_err(|e| e.with_object(where_).with_source(source))?;
        objects.push(obj);
    }
    if objects.is_empty() {
        return Err(ValidationError::new("no objects found").with_source(source));
    }
    Ok(objects)
}

fn first_line(s: &str) -> String {
    s.lines().take(3).collect::<Vec<_>>().join(" ")
}
