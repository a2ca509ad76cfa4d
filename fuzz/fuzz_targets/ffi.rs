//! Arbitrary C-API call sequences: no panic crosses, statuses are defined codes, out-parameters
//! follow the documented rules, `check` stays clean.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = convergedb::fuzzing::ops::TempDir::new(&std::env::temp_dir());
    std::fs::create_dir_all(&dir.0).expect("create the run's directory");
    if let Err(e) = convergedb::fuzzing::ffi::run_bytes(&dir.0, data, 64) {
        panic!("C API rule broken: {e}");
    }
});
