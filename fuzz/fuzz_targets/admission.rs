//! AdmissionReview bytes through `review` and `mutate`; the invariants are in `passport_webhook::fuzzing::fuzz_admission`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| passport_webhook::fuzzing::fuzz_admission(data));
