//! The azure provider against the local stack.
