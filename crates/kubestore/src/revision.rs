//! resourceVersions as the seam's revisions.
//!
//! The seam orders changes by an integer revision (etcd's). kube-apiserver's resourceVersions are
//! those same etcd revisions, written as decimal strings; Kubernetes documents them as opaque, so
//! this is the one place that reads them, and anything else is an error that names it.

use store::{Error, Result};

pub fn parse_revision(resource_version: Option<&str>) -> Result<i64> {
    let rv = resource_version.unwrap_or_default();
    rv.parse::<i64>().ok().filter(|r| *r >= 0).ok_or_else(|| {
        Error::Backend(format!(
            "resourceVersion {rv:?} from kube-apiserver is not an etcd revision; this store needs one to order changes"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_versions_read_and_others_are_named() {
        assert_eq!(parse_revision(Some("12345")), Ok(12345));
        let err = parse_revision(Some("abc/1")).unwrap_err().to_string();
        assert!(err.contains("\"abc/1\""), "{err}");
        assert!(parse_revision(None).is_err());
        assert!(parse_revision(Some("-1")).is_err());
    }
}
