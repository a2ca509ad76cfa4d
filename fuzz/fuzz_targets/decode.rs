//! Arbitrary bytes into every on-disk record decoder and the tokenization-file parser: errors
//! only, no panic, bounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    convergedb::fuzzing::decode_records(data);
    convergedb::fuzzing::decode_tokenization_file(data);
    convergedb::fuzzing::decode_bundle_manifest(data);
    convergedb::fuzzing::decode_ann_dump(data);
});
