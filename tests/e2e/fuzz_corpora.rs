//! The fuzz corpora replayed on the stable toolchain: every file under `fuzz/corpus/NAME/` and
//! `fuzz/regressions/NAME/` goes through `hookwise::fuzzing::NAME`, so an input that once made a
//! target panic (or broke a property it asserts) stays fixed without nightly or cargo-fuzz.
//! `fuzz/findings/NAME/` holds crashes not fixed yet, replayed by an ignored test.

use std::path::{Path, PathBuf};

use hookwise::fuzzing::{TARGETS, Target};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The folders of `kind` (`corpus`, `regressions` or `findings`), each with its files, sorted.
fn folders(kind: &str) -> Vec<(String, Vec<PathBuf>)> {
    let root = fuzz_dir().join(kind);
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<PathBuf>)> = entries
        .map(|e| e.expect("listing a fuzz folder").path())
        .filter(|p| p.is_dir())
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .expect("listing a corpus")
                .map(|e| e.expect("listing a corpus").path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            (name, files)
        })
        .collect();
    out.sort();
    out
}

fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Runs every file of every folder of `kind` through its target; a panic names the file.
fn replay(kind: &str) -> usize {
    let mut count = 0;
    for (name, files) in folders(kind) {
        let Some(run) = target(&name) else {
            panic!("fuzz/{kind}/{name} names no function in hookwise::fuzzing::TARGETS");
        };
        for file in files {
            let data = std::fs::read(&file).expect("reading a corpus file");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{} fails its target", file.display());
            count += 1;
        }
    }
    count
}

#[test]
fn every_target_has_a_corpus_and_a_cargo_fuzz_target() {
    let corpora = folders("corpus");
    for (name, _) in TARGETS {
        let files = corpora
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, files)| files.len());
        assert!(files > 0, "fuzz/corpus/{name}/ is missing or empty");
        let source = fuzz_dir().join(format!("fuzz_targets/{name}.rs"));
        let text = std::fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(
            text.contains(&format!("hookwise::fuzzing::{name}(data)")),
            "{} does not call hookwise::fuzzing::{name}",
            source.display()
        );
    }
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let bins = manifest.matches("[[bin]]").count();
    assert_eq!(bins, TARGETS.len(), "fuzz/Cargo.toml lists {bins} targets");
}

#[test]
fn corpora_replay_without_a_panic() {
    let count = replay("corpus");
    assert!(count >= TARGETS.len(), "only {count} corpus files");
}

#[test]
fn regressions_replay_without_a_panic() {
    replay("regressions");
}

/// Findings whose fix lies outside the fuzzing code, kept until fixed (FUZZING.md lists them).
/// Once one passes, move its file to `fuzz/regressions/` and drop it from the list there.
#[test]
#[ignore = "open fuzz findings (none at the moment; see FUZZING.md); run with --ignored"]
fn open_findings_replay_without_a_panic() {
    replay("findings");
}
