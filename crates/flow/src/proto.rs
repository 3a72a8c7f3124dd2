//! The generated Hubble-compatible wire types (`flow`, `observer`, `relay` packages) and the
//! Observer service stubs.

#![allow(clippy::all, clippy::pedantic)]

pub mod flow {
    tonic::include_proto!("flow");
}

pub mod relay {
    tonic::include_proto!("relay");
}

pub mod observer {
    tonic::include_proto!("observer");
}
