//! Embeds every `providers/*.yaml` into the binary, so a new built-in provider is a YAML file;
//! and names the commit built (`PORTCULLIS_COMMIT`: from the environment, as a container
//! build passes it, or from git, or `unknown`) for `portcullis_build_info`.

use std::fmt::Write;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=PORTCULLIS_COMMIT");
    let commit = std::env::var("PORTCULLIS_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let out =
            std::process::Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        let c = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && !c.is_empty()).then_some(c)
    });
    println!("cargo:rustc-env=PORTCULLIS_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
    // Built again when HEAD moves: the checked-out ref, and the branch it names.
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
    };
    let mut watched = vec!["HEAD".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for r in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &r]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("providers");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("providers/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = String::from("/// `(file name, contents)` of every built-in profile.\n");
    out.push_str("pub const BUILTIN_PROFILES: &[(&str, &str)] = &[\n");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f.file_name().unwrap().to_str().unwrap();
        writeln!(out, "    ({name:?}, include_str!({:?})),", f.display().to_string()).unwrap();
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("builtin_profiles.rs");
    std::fs::write(dest, out).unwrap();
}
