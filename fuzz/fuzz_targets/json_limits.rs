#![no_main]

// The depth and number-length scanner: never panics, and on any input that is JSON it
// agrees with the parsed value about depth.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hookrelay_fuzz::limits(data));
