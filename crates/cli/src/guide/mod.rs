//! `cilia lab guide`: the hands-on guide as a tutorial that checks itself. Each step shows the
//! command (as the guide writes it, with `cilia` for `kubectl`), runs it, prints its output, and checks
//! the expected outcome. Sections are added as features land.

mod l2;
mod lbipam;
mod native_routing;
mod reset;
mod runner;
mod service_lb;
mod topology;
mod vxlan;

pub use runner::run;
