//! What cilia's tests share, so that each crate's tests do not carry their own copy:
//! - [`wait`]: polling for a condition with a deadline, instead of sleeping (blocking and async);
//! - [`netns`]: a uniquely named network namespace, deleted when the test ends, even on panic.
//!
//! The end-to-end tests' lab (`TestLab`) lives in the `cilia` crate's `tests/common`, beside the
//! binary it drives; a throwaway etcd is `store::testing::EtcdGuard`.
#![forbid(unsafe_code)]

pub mod netns;
pub mod wait;

pub use netns::TestNetns;
pub use wait::{eventually, wait_for, wait_until, wait_until_async};
