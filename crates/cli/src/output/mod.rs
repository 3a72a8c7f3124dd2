//! How the CLI prints objects: kubectl's tables, YAML, JSON, names and JSONPath.

pub mod age;
pub mod jsonpath;
pub mod table;
