//! `cargo xtask krew`: the krew plugin manifest of a release, from deploy/krew/tokenprobe.yaml,
//! parsed and checked before it is printed.

use anyhow::{Context as _, bail, ensure};
use serde_yaml::Value;

use crate::cmd::workspace_root;

const BIN: &str = "kubectl-tokenprobe";

/// Fills the template in and checks the result.
pub fn manifest(template: &str, version: &str, uri: &str, sha256: &str) -> anyhow::Result<String> {
    let filled = template.replace("{{VERSION}}", version).replace("{{URI}}", uri).replace("{{SHA256}}", sha256);
    check(&filled)?;
    Ok(filled)
}

/// What krew requires of a plugin manifest, and what this plugin's must say.
pub fn check(text: &str) -> anyhow::Result<()> {
    ensure!(!text.contains("{{"), "placeholders left unfilled");
    let doc: Value = serde_yaml::from_str(text).context("the krew manifest is not YAML")?;
    ensure!(doc["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2", "apiVersion");
    ensure!(doc["kind"] == "Plugin", "kind must be Plugin");
    ensure!(
        doc["metadata"]["name"] == "tokenprobe",
        "metadata.name must be tokenprobe (the plugin is kubectl-tokenprobe)"
    );
    let spec = &doc["spec"];
    let version = spec["version"].as_str().context("spec.version")?;
    let semver = version.strip_prefix('v').map(|v| v.split('.').collect::<Vec<_>>());
    let Some(parts) = semver.filter(|p| p.len() == 3) else {
        bail!("spec.version must be v-prefixed semver (v1.2.3), not {version:?}");
    };
    ensure!(
        parts.iter().enumerate().all(|(i, p)| {
            let numeric = if i == 2 { p.split(['-', '+']).next().unwrap_or_default() } else { p };
            !numeric.is_empty() && numeric.bytes().all(|b| b.is_ascii_digit())
        }),
        "spec.version must be v-prefixed semver (v1.2.3), not {version:?}"
    );
    let short = spec["shortDescription"].as_str().context("spec.shortDescription")?;
    ensure!(!short.is_empty() && short.len() <= 50, "spec.shortDescription must be 1–50 characters");
    ensure!(spec["description"].as_str().is_some_and(|d| !d.trim().is_empty()), "spec.description");
    ensure!(spec["homepage"].as_str().is_some_and(|h| h.starts_with("https://")), "spec.homepage must be https");
    let platforms = spec["platforms"].as_sequence().context("spec.platforms")?;
    ensure!(!platforms.is_empty(), "spec.platforms is empty");
    for p in platforms {
        let labels = &p["selector"]["matchLabels"];
        ensure!(labels["os"].as_str().is_some(), "a platform without selector.matchLabels.os");
        let uri = p["uri"].as_str().context("platform uri")?;
        ensure!(uri.starts_with("https://"), "uri must be https: {uri}");
        let lower = uri.to_ascii_lowercase();
        ensure!(
            lower.ends_with(".tar.gz") || std::path::Path::new(&lower).extension().is_some_and(|e| e == "zip"),
            "uri must name a .tar.gz or .zip archive: {uri}"
        );
        let sha = p["sha256"].as_str().context("platform sha256")?;
        ensure!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()), "sha256 must be 64 hex digits");
        ensure!(p["bin"] == BIN, "bin must be {BIN}");
        let files = p["files"].as_sequence().context("platform files")?;
        ensure!(files.iter().any(|f| f["from"] == BIN), "files must copy {BIN} out of the archive");
    }
    Ok(())
}

pub fn run(version: &str, uri: &str, sha256: &str) -> anyhow::Result<()> {
    let path = workspace_root().join("deploy/krew/tokenprobe.yaml");
    let template = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    print!("{}", manifest(&template, version, uri, sha256)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = include_str!("../../deploy/krew/tokenprobe.yaml");
    const URI: &str =
        "https://github.com/tokenprobe/tokenprobe/releases/download/v0.1.0/kubectl-tokenprobe-linux-amd64.tar.gz";
    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn the_template_fills_in_to_a_valid_manifest() {
        let text = manifest(TEMPLATE, "0.1.0", URI, SHA).expect("valid");
        let doc: Value = serde_yaml::from_str(&text).expect("YAML");
        assert_eq!(doc["spec"]["version"], "v0.1.0");
        assert_eq!(doc["spec"]["platforms"][0]["uri"], URI);
        assert_eq!(doc["spec"]["platforms"][0]["sha256"], SHA);
        // The crate's version is a valid krew version too.
        manifest(TEMPLATE, env!("CARGO_PKG_VERSION"), URI, SHA).expect("the crate's version");
    }

    #[test]
    fn bad_releases_are_refused() {
        assert!(check(TEMPLATE).is_err(), "an unfilled template");
        for (version, uri, sha, why) in [
            ("v0.1.0", URI, SHA, "a doubled v"),
            ("0.1", URI, SHA, "not semver"),
            ("0.1.0", "http://example.com/a.tar.gz", SHA, "not https"),
            ("0.1.0", "https://example.com/a.bin", SHA, "not an archive"),
            ("0.1.0", URI, "abc", "short checksum"),
            ("0.1.0", URI, &SHA.replace('0', "g"), "not hex"),
        ] {
            assert!(manifest(TEMPLATE, version, uri, sha).is_err(), "{why} accepted");
        }
        let renamed = TEMPLATE.replace("bin: kubectl-tokenprobe", "bin: tokenprobe");
        assert!(manifest(&renamed, "0.1.0", URI, SHA).is_err(), "a wrong bin accepted");
    }
}
