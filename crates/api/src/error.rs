//! The error every validation step returns: which file, which object, which field, and why; and
//! [`Chain`], how every error of the tree is printed with its causes.

use std::fmt;

/// A user-facing validation error. Displayed as
/// `webpod.yaml: Service default/webpod: spec.ports[0].port: must be between 1 and 65535, got 0`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// The file (or `-` for stdin) the object came from.
    pub origin: Option<String>,
    /// The object: `Service default/webpod`, or `document 2` when it has no usable identity yet.
    pub object: Option<String>,
    /// Dotted path of the offending field, `spec.ports[0].port`.
    pub field: Option<String>,
    pub reason: String,
}

impl ValidationError {
    pub fn new(reason: impl Into<String>) -> Self {
        ValidationError { origin: None, object: None, field: None, reason: reason.into() }
    }

    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError { field: Some(field.into()), ..Self::new(reason) }
    }

    pub fn with_object(mut self, object: impl Into<String>) -> Self {
        if self.object.is_none() {
            self.object = Some(object.into());
        }
        self
    }

    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        if self.origin.is_none() {
            self.origin = Some(source.into());
        }
        self
    }

    /// Prefixes the field path (`ports[0]` inside `spec` becomes `spec.ports[0]`).
    pub fn under(mut self, parent: &str) -> Self {
        self.field = Some(match self.field.take() {
            Some(f) if f.starts_with('[') => format!("{parent}{f}"),
            Some(f) => format!("{parent}.{f}"),
            None => parent.to_string(),
        });
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in [&self.origin, &self.object, &self.field].into_iter().flatten() {
            write!(f, "{part}: ")?;
        }
        f.write_str(&self.reason)
    }
}

/// An error followed by its causes, outermost first (`a: b: c`), for log lines and messages that
/// print a typed error (the CLI prints the same chain through anyhow's `{:#}`). Error types say
/// only their own layer in their message and give the cause as their `source()`, so walking the
/// chain repeats nothing.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}
