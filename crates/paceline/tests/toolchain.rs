//! The minimum Rust the project states is one that builds the locked tree: the greatest
//! `rust-version` over every package of the locked dependency graph (`cargo metadata
//! --locked`), computed here, against `Cargo.toml`'s `rust-version`, the README's
//! requirement and the Dockerfile's builder image. It fails the day a dependency raises
//! the toolchain and one of the three still names the old one.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `1.88` or `1.88.0` as (1, 88).
fn version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The greatest `rust-version` declared in the locked graph, with a package declaring it.
fn required() -> ((u32, u32), String) {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| {
            let v = version(p["rust_version"].as_str()?)?;
            Some((
                v,
                format!("{} {}", p["name"].as_str()?, p["version"].as_str()?),
            ))
        })
        .max()
        .expect("some package declares a rust-version")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The version after `marker` in `text`, up to the first character that is not a digit or
/// a dot.
fn after(text: &str, marker: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    version(rest[..end].trim_end_matches('.'))
}

#[test]
fn the_stated_minimum_rust_builds_the_locked_tree() {
    let (needed, by) = required();
    let stated = [
        (
            "Cargo.toml rust-version",
            after(&read("Cargo.toml"), "rust-version = \""),
        ),
        ("README.md", after(&read("README.md"), "- Rust ")),
        (
            "deploy/docker/Dockerfile builder",
            after(&read("deploy/docker/Dockerfile"), "FROM rust:"),
        ),
    ];
    for (place, v) in stated {
        let v = v.unwrap_or_else(|| panic!("{place}: no Rust version found"));
        assert!(
            v >= needed,
            "{place} says Rust {}.{}, but {by} needs {}.{}",
            v.0,
            v.1,
            needed.0,
            needed.1
        );
    }
}
