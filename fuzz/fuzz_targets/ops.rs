//! Model-based: an op sequence decoded from the input runs against a fresh database and the
//! reference model; any disagreement or unclean `check()` after any op is a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parent = std::env::temp_dir();
    if let Err(e) = convergedb::fuzzing::ops::run_bytes(&parent, data, 256) {
        panic!("divergence: {e}");
    }
});
