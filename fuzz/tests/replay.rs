//! Replays the committed fuzz corpus and every crash found, on stable Rust: each input
//! of `fuzz/corpus/<target>/` and `fuzz/crashes/<target>/` through its target.

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
fn every_target_has_a_corpus_and_survives_it_and_every_crash_found() {
    for (name, target) in warble_fuzz::TARGETS {
        let corpus = inputs("corpus", name);
        assert!(
            corpus.len() >= 3,
            "fuzz/corpus/{name} holds {} inputs; give it at least 3 seed inputs",
            corpus.len()
        );
        for file in corpus.iter().chain(&inputs("crashes", name)) {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name} fails on {}", file.display());
        }
    }
}
