//! IAM trust-policy text through `PolicyDocument::parse` and `same_as`; the invariants are in `passport_operator::fuzzing::fuzz_trust_policy`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| passport_operator::fuzzing::fuzz_trust_policy(data));
