//! The AccessPolicy controller.

pub mod desired;
