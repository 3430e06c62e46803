//! The aws provider against the local stack.
