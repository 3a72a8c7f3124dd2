//! One file per verb.

pub mod agent;
pub mod apply;
pub mod completion;
pub mod config;
pub mod dbg;
pub mod delete;
pub mod dns;
pub mod exec;
pub mod get;
pub mod kubelet;
pub mod lab;
pub mod man;
pub mod observe;
pub mod operator;
pub mod patch;
pub mod pod_deletion;
pub mod status;
pub mod version;
pub mod watch;
pub mod whoami;
