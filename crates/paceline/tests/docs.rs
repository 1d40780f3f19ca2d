//! The documentation holds together: every relative link in the README, the changelog and
//! `docs/` resolves (files, and anchors to headings), the configuration examples of
//! `docs/configuration.md` load, and no source file or document points to specification
//! files outside the repository.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn documents() -> Vec<PathBuf> {
    let mut docs = vec![
        root().join("README.md"),
        root().join("CHANGELOG.md"),
        root().join("ARCHITECTURE.md"),
    ];
    for entry in std::fs::read_dir(root().join("docs")).expect("docs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    docs
}

/// GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut in_code = false;
    text.lines()
        .filter(|l| {
            if l.starts_with("```") {
                in_code = !in_code;
            }
            !in_code && l.starts_with('#')
        })
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

/// `(target)` of every `[text](target)` outside code blocks and code spans.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Drop code spans, which may hold brackets that are not links.
        let plain: String = line.split('`').step_by(2).collect::<Vec<_>>().join("");
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let mut checked = 0;
    let mut broken = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).expect("a document");
        for link in links(&text) {
            if link.starts_with("http://")
                || link.starts_with("https://")
                || link.starts_with("mailto:")
            {
                continue;
            }
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().expect("a folder").join(path)
            };
            checked += 1;
            if !target.exists() {
                broken.push(format!("{}: {link} (no such file)", doc.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                let text = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&text).iter().any(|a| a == anchor) {
                    broken.push(format!("{}: {link} (no such heading)", doc.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked >= 30, "only {checked} links checked");
}

/// ARCHITECTURE.md is a map: every path it names in a code span (`crates/…`, `tests/…`)
/// is still there, so a moved file shows up here rather than in a newcomer's search.
#[test]
fn the_architecture_names_paths_that_exist() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let tops = [
        "crates/", "config/", "deploy/", "docs/", "tests/", "scripts/",
    ];
    let mut named = 0;
    let mut missing = Vec::new();
    for span in text.split('`').skip(1).step_by(2) {
        if !tops.iter().any(|t| span.starts_with(t)) || span.contains(' ') {
            continue;
        }
        named += 1;
        if !root().join(span).exists() {
            missing.push(span.to_string());
        }
    }
    assert!(named >= 40, "only {named} paths named");
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}

/// Every TOML example of docs/configuration.md loads and validates, the files it names
/// under `/etc/paceline/tls/` replaced by a test CA and certificate; the Kafka examples'
/// options are taken by librdkafka as `serve` passes them (TLS, SASL/SCRAM).
#[test]
fn configuration_examples_load() {
    let text = std::fs::read_to_string(root().join("docs/configuration.md")).expect("docs");
    let pki = paceline_tests::services::TempDir::new("docs-pki");
    paceline_tests::services::make_pki(&pki.0);
    for (name, from) in [
        ("kafka-ca.pem", "ca.pem"),
        ("influx-ca.pem", "ca.pem"),
        ("paceline.pem", "server.pem"),
        ("paceline.key", "server.key"),
    ] {
        std::fs::copy(pki.join(from), pki.join(name)).expect("test PKI");
    }
    let mut blocks = 0;
    let mut kafka_blocks = 0;
    for block in text.split("```toml\n").skip(1) {
        let toml = block.split("```").next().expect("a block");
        let toml = toml.replace("/etc/paceline/tls/", &format!("{}/", pki.0.display()));
        let config =
            paceline_runtime::settings::Settings::from_toml(&toml, "docs/configuration.md")
                .unwrap_or_else(|e| panic!("{e}\n{toml}"));
        assert!(config.validate().is_empty(), "{toml}");
        if !config.kafka.options.is_empty() {
            paceline_tests::kafka::librdkafka_accepts(&config.kafka, Some("example-password"))
                .unwrap_or_else(|e| panic!("librdkafka refuses {toml}: {e}"));
            kafka_blocks += 1;
        }
        blocks += 1;
    }
    assert!(blocks >= 4, "{blocks} examples");
    assert!(kafka_blocks >= 2, "TLS and SASL examples: {kafka_blocks}");
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name == ".git" || name == "docs" {
            continue;
        }
        if path.is_dir() {
            walk(&path, out);
        } else if path
            .extension()
            .is_some_and(|e| e == "rs" || e == "toml" || e == "md")
        {
            out.push(path);
        }
    }
}

#[test]
fn sources_point_into_docs() {
    let mut files = Vec::new();
    walk(&root(), &mut files);
    let mut outside = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            for name in ["events", "indicators", "outputs", "operations"] {
                for (i, _) in line.match_indices(&format!("{name}.md")) {
                    if !line[..i].ends_with("docs/") {
                        outside.push(format!("{}:{}: {line}", file.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(files.len() > 50, "{} files read", files.len());
    assert!(
        outside.is_empty(),
        "references to documents outside docs/:\n{}",
        outside.join("\n")
    );
}
