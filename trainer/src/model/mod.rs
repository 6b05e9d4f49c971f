//! The models of the paper, in burn.

pub mod convnext;
pub mod protopnet;
