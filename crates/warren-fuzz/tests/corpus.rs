//! Replays every input the fuzzers kept (`fuzz/corpus/<target>/`) through the same checks, on
//! stable Rust: a regression of any of them fails the ordinary test command.

use std::path::Path;

#[test]
fn every_corpus_input_still_passes_its_check() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut replayed = 0;
    for (target, check) in warren_fuzz::TARGETS {
        let dir = corpus.join(target);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus of {target} at {}: {e}", dir.display()));
        let mut count = 0;
        for entry in entries {
            let path = entry.expect("corpus entry").path();
            let input = std::fs::read(&path).expect("corpus file");
            let outcome = std::panic::catch_unwind(|| check(&input));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
            count += 1;
        }
        assert!(count > 0, "the corpus of {target} is empty");
        replayed += count;
    }
    println!("replayed {replayed} inputs");
}

/// The seeds of the envelope target are real envelopes, so the fuzzer starts from the
/// round trip and not from "malformed, ignored".
#[test]
fn the_envelope_seeds_decode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/envelope");
    for seed in [
        "event",
        "member_added",
        "member_removed",
        "cache",
        "count",
        "online",
        "terminate",
    ] {
        let bytes = std::fs::read(dir.join(seed)).expect("seed");
        assert!(
            warren_server::fuzz_internals::decode_envelope(&bytes).is_some(),
            "{seed} does not decode"
        );
    }
}
