//! Replays the committed fuzz inputs on stable Rust: each file of `fuzz/seeds/<target>/`
//! (hand-made hostile cases, named for what they are), `fuzz/corpus/<target>/` (what the
//! fuzzer kept, minimised) and `fuzz/crashes/<target>/` (every crash found) through its
//! target.

use std::path::PathBuf;

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_survives_its_seeds_its_corpus_and_every_crash_found() {
    for (name, target) in warble_fuzz::TARGETS {
        let seeds = inputs("seeds", name);
        assert!(
            seeds.len() >= 3,
            "fuzz/seeds/{name} holds {} inputs; give it at least 3",
            seeds.len()
        );
        let (corpus, crashes) = (inputs("corpus", name), inputs("crashes", name));
        for file in seeds.iter().chain(&corpus).chain(&crashes) {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name} fails on {}", file.display());
        }
    }
}
