//! LB-IPAM behaviour tests: the hands-on guide, Cilium's test catalogue (ported as scenarios),
//! property tests and fuzzing.

mod catalogue;
mod fixture;
mod fuzz;
mod guide;
mod properties;
