//! Debian packages: host tools installed when missing, and a private apt configuration for
//! downloading packages without touching the system's apt state.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use crate::cmd::{self, output};

/// The archive's signing keys, for `signed-by` in private source lists.
pub const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Installs the packages of the `(command, package)` pairs whose command is missing.
///
/// # Errors
/// When apt fails.
pub fn ensure_tools(tools: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(tool, _)| output(Command::new("sh").args(["-c", &format!("command -v {tool}")])).is_err())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    cmd::run(Command::new("apt-get").args(["update", "-qq"])).context("apt-get update failed")?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("cannot install {}", missing.join(" ")))
}

/// `apt-get`/`apt-cache` with a private configuration: its own sources, lists and archives
/// under `dir`.
pub fn private(program: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (key, value) in [
        ("Dir::Etc::SourceList", dir.join("sources.list")),
        ("Dir::Etc::SourceParts", PathBuf::from("/dev/null")),
        ("Dir::State::Lists", dir.join("lists")),
        ("Dir::Cache", dir.join("cache")),
        ("APT::Sandbox::User", PathBuf::from("root")),
    ] {
        cmd.arg("-o").arg(format!("{key}={}", value.display()));
    }
    cmd
}

/// Writes a private source list and updates its package lists.
///
/// # Errors
/// When apt fails.
pub fn prepare(dir: &Path, sources: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("lists/partial"))?;
    std::fs::create_dir_all(dir.join("cache/archives/partial"))?;
    std::fs::write(dir.join("sources.list"), sources)?;
    cmd::run(private("apt-get", dir).args(["update", "-qq"])).context("apt-get update (private) failed")
}
