//! YAML manifests through both `desired` plans; the invariants are in `passport_operator::fuzzing::fuzz_desired`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| passport_operator::fuzzing::fuzz_desired(data));
