//! The crate's layout: `tools/imports.py --check` passes on the source tree, and fails on a
//! cycle between top-level modules, and only on that.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `tools/imports.py --check` over `src`: its exit code and what it printed.
fn check(src: &Path) -> (i32, String) {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/imports.py");
    let out = Command::new("python3")
        .arg(&tool)
        .arg("--check")
        .arg("--src")
        .arg(src)
        .output()
        .expect("python3 runs tools/imports.py");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// A crate source tree of `files` (path, text) in a directory of its own.
fn tree(files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-layout-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[test]
fn no_cycle_between_top_level_modules() {
    let (code, out) = check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no cycle between"), "{out}");
}

#[test]
fn the_import_check_fails_on_a_cycle_between_top_level_modules() {
    let src = tree(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("a.rs", "use crate::b::B;\npub struct A;\n"),
        ("b.rs", "use crate::c::C;\npub struct B;\n"),
        // The loop closes through a third module, inline rather than by `use`.
        ("c.rs", "pub struct C(crate::a::A);\n"),
    ]);
    let (code, out) = check(&src);
    std::fs::remove_dir_all(&src).unwrap();
    assert_eq!(code, 1, "{out}");
    let names_the_cycle = out.lines().any(|l| {
        let mut w: Vec<_> = l.split_whitespace().collect();
        w.sort_unstable();
        w == ["a", "b", "c"]
    });
    assert!(names_the_cycle, "names the cycle: {out}");
    assert!(out.contains("upward"), "and the import that closes it: {out}");
}

#[test]
fn the_import_check_passes_a_module_and_its_children_importing_each_other() {
    let src = tree(&[
        ("lib.rs", "pub mod m;\npub mod n;\n"),
        ("m/mod.rs", "mod child;\npub use child::Kid;\npub struct Parent;\n"),
        ("m/child.rs", "use super::Parent;\npub struct Kid(Parent);\n"),
        ("n.rs", "use crate::m::Kid;\npub struct N(Kid);\n"),
    ]);
    let (code, out) = check(&src);
    std::fs::remove_dir_all(&src).unwrap();
    assert_eq!(code, 0, "{out}");
}
