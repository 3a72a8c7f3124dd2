//! The manifest parser against hostile input: random text, and the guide's manifests mutated byte
//! by byte. It must never panic, and every refusal must name the file it came from.
//!
//! `make test` runs a few thousand cases; a longer run (the bad-input table in docs/) sets
//! `PROPTEST_CASES`, e.g. `PROPTEST_CASES=500000 cargo test --release -p api --test manifest_fuzz`.

use api::manifest;
use proptest::prelude::*;

const GUIDE: [&str; 5] = [
    include_str!("../../../examples/guide/webpod.yaml"),
    include_str!("../../../examples/guide/curl-pod.yaml"),
    include_str!("../../../examples/guide/lb-ippool.yaml"),
    include_str!("../../../examples/guide/l2-policy.yaml"),
    include_str!("../../../examples/guide/webpod-sharing.yaml"),
];

fn config() -> ProptestConfig {
    // PROPTEST_CASES overrides this for long runs.
    ProptestConfig { cases: 2_000, ..ProptestConfig::default() }
}

fn check(text: &str) {
    if let Err(e) = manifest::parse("fuzz.yaml", text, "default") {
        assert_eq!(e.origin.as_deref(), Some("fuzz.yaml"), "a refusal without its file: {e}");
        assert!(!e.reason.is_empty(), "a refusal without a reason");
    }
}

/// One edit of a manifest: delete, insert, replace or duplicate a span.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    Replace(usize, u8),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..40usize).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), "[-:{}\\[\\]\"' \n\t#&*!|>%@`a-z0-9.]{1,12}").prop_map(|(a, s)| Edit::Insert(a, s)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::Replace(a, b)),
        (any::<usize>(), 1..200usize).prop_map(|(a, n)| Edit::Duplicate(a, n)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for e in edits {
        let len = bytes.len().max(1);
        match e {
            Edit::Delete(at, n) => {
                let at = at % len;
                let end = (at + n).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
            Edit::Insert(at, s) => {
                let at = at % len;
                let at = at.min(bytes.len());
                bytes.splice(at..at, s.bytes());
            }
            Edit::Replace(at, b) => {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = *b;
                }
            }
            Edit::Duplicate(at, n) => {
                let at = at % len;
                let end = (at + n).min(bytes.len());
                if at < end {
                    let copy = bytes[at..end].to_vec();
                    bytes.splice(end..end, copy);
                }
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,400}") {
        check(&text);
    }

    #[test]
    fn yaml_shaped_noise_never_panics(text in "([-:{}\\[\\]\"' \n#&*!|>a-z0-9.]{0,20}\n){0,30}") {
        check(&text);
    }

    #[test]
    fn mutated_guide_manifests_never_panic(which in 0..GUIDE.len(), edits in prop::collection::vec(edit(), 1..6)) {
        check(&apply(GUIDE[which], &edits));
    }
}

/// Inputs that once needed care: deep nesting, huge numbers, anchors and aliases, many documents.
#[test]
fn pathological_yaml_is_refused_or_parsed_without_panicking() {
    let deep = format!("{}1{}", "[".repeat(5_000), "]".repeat(5_000));
    let aliases = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n";
    let number =
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 99999999999999999999999999}]}\n";
    let documents = "---\n".repeat(10_000);
    for text in [deep.as_str(), aliases, number, documents.as_str(), "\u{0}", "\u{feff}apiVersion: v1"] {
        check(text);
    }
}
