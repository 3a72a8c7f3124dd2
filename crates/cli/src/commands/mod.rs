//! One file per verb.

pub mod apply;
pub mod delete;
pub mod get;
pub mod lab;
pub mod operator;
pub mod patch;
