//! The gcp provider against the local stack.
