//! The AccessPolicy controller.

pub mod desired;
pub mod status;
