//! Harness for Warble's end-to-end tests: real services started per test on free loopback
//! ports, with their own configuration and data directories, stopped when dropped.
#![deny(missing_docs)]

pub mod bins;
pub mod broker;
pub mod browser;
pub mod demo;
pub mod events;
pub mod postgres;
