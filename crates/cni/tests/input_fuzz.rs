//! What a container runtime hands the plugin, against hostile input: the network configuration on
//! stdin (random bytes, and a valid configuration mutated) and the CNI_* environment. Parsing must
//! never panic, and a refusal carries a CNI error code and message.
//!
//! `PROPTEST_CASES=500000 cargo test --release -p cni --test input_fuzz` runs it longer.

use std::collections::BTreeMap;

use cni::{Invocation, NetworkConfig};
use proptest::prelude::*;

const VALID: &str = r#"{"cniVersion":"1.0.0","name":"cilia","type":"cilia-cni","agentSocket":"/run/cilia/cni.sock","mtu":1500,"runtimeConfig":{"portMappings":[]},"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"172.20.1.5/32"}]}}"#;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 2_000, ..ProptestConfig::default() }
}

fn check_config(bytes: &[u8]) {
    if let Err(e) = NetworkConfig::parse(bytes) {
        let json = serde_json::to_value(&e).expect("a CNI error serializes");
        assert!(json["code"].as_u64().is_some_and(|c| c > 0), "{json}");
        assert!(json["msg"].as_str().is_some_and(|m| !m.is_empty()), "{json}");
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_stdin_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check_config(&bytes);
    }

    #[test]
    fn mutated_configuration_never_panics(at in any::<usize>(), len in 0..30usize, insert in "\\PC{0,12}") {
        let mut text = VALID.to_string();
        let start = at % text.len();
        let end = (start + len).min(text.len());
        if text.is_char_boundary(start) && text.is_char_boundary(end) {
            text.replace_range(start..end, &insert);
        }
        check_config(text.as_bytes());
    }

    #[test]
    fn random_environment_never_panics(
        command in prop_oneof![Just("ADD".to_string()), Just("DEL".to_string()), Just("CHECK".to_string()), "\\PC{0,8}"],
        values in prop::collection::vec("\\PC{0,80}", 5),
    ) {
        let names = ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"];
        let env: BTreeMap<&str, String> =
            names.iter().copied().zip(values).chain([("CNI_COMMAND", command)]).collect();
        if let Err(e) = Invocation::from_env(|k| env.get(k).cloned()) {
            let json = serde_json::to_value(&e).expect("a CNI error serializes");
            prop_assert!(json["code"].as_u64().is_some_and(|c| c > 0));
        }
    }
}

#[test]
fn the_valid_configuration_parses() {
    NetworkConfig::parse(VALID.as_bytes()).expect("valid");
}
