//! `cargo xtask image`: the agent's OCI image — a static musl release binary on an empty base,
//! one deterministic layer, ENTRYPOINT the binary, CMD `["run"]` — and the images the real-node
//! tests run: a pause image and a workload image with a shell, both from Debian's
//! busybox-static. Archives only: nothing is pulled, nothing pushed.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{
    apt,
    cmd::{self, output, workspace_root},
    oci::{self, Config, Entry},
};

const MUSL: &str = "x86_64-unknown-linux-musl";
/// Where the agent image points for its source (OCI label).
const SOURCE: &str = "https://github.com/tokenprobe/tokenprobe";

/// An image archive and the reference it imports as.
#[derive(Debug, Clone)]
pub struct Image {
    pub archive: PathBuf,
    pub reference: String,
}

/// The references the node tier's images import as.
pub const PAUSE: &str = "tokenprobe.local/pause:1";
pub const WORKLOAD: &str = "tokenprobe.local/busybox:1";

fn agent_reference() -> String {
    format!("tokenprobe.local/probe-agent:{}", env!("CARGO_PKG_VERSION"))
}

/// The commit the image is built from (`unknown` outside a git checkout).
fn revision() -> String {
    output(Command::new("git").arg("-C").arg(workspace_root()).args(["rev-parse", "HEAD"]))
        .map_or_else(|_| "unknown".into(), |r| r.trim().to_owned())
}

/// Builds the agent as a static musl release binary (the one the image ships) and returns its
/// path.
pub fn static_agent() -> anyhow::Result<PathBuf> {
    apt::ensure_tools(&[("musl-gcc", "musl-tools")])?;
    let targets = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if !targets.lines().any(|t| t.trim() == MUSL) {
        cmd::run(Command::new("rustup").args(["target", "add", MUSL]))?;
    }
    let messages = output(
        Command::new("cargo")
            .current_dir(workspace_root())
            .args(["build", "--release", "--target", MUSL, "--package", "probe-agent", "--bin", "probe-agent"])
            .arg("--message-format=json-render-diagnostics")
            // ring's C parts for musl.
            .env(format!("CC_{}", MUSL.replace('-', "_")), "musl-gcc"),
    )
    .context("cannot build the static agent")?;
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "probe-agent")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo built no probe-agent executable")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The agent's image archive, in `$cache/image`.
///
/// # Errors
/// When the build fails or the binary is not static.
pub fn agent(cache: &Path) -> anyhow::Result<Image> {
    let built = static_agent()?;
    // The release profile keeps line tables for profiling; the image needs none of it.
    apt::ensure_tools(&[("strip", "binutils")])?;
    let binary = cache.join("image/probe-agent");
    std::fs::create_dir_all(cache.join("image"))?;
    std::fs::copy(&built, &binary).with_context(|| format!("cannot copy {}", built.display()))?;
    cmd::run(Command::new("strip").arg("--strip-debug").arg(&binary))?;
    let bytes = std::fs::read(&binary).with_context(|| format!("cannot read {}", binary.display()))?;
    if oci::has_interpreter(&bytes)? {
        bail!("{} asks for a program interpreter: it is not static and cannot run on an empty base", binary.display());
    }
    let reference = agent_reference();
    let labels: BTreeMap<String, String> = [
        ("org.opencontainers.image.title", "tokenprobe probe-agent".to_owned()),
        ("org.opencontainers.image.description", "Measures which containers use their service-account token".into()),
        ("org.opencontainers.image.source", SOURCE.into()),
        ("org.opencontainers.image.version", env!("CARGO_PKG_VERSION").into()),
        ("org.opencontainers.image.revision", revision()),
        ("org.opencontainers.image.licenses", "MIT OR Apache-2.0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = Config { entrypoint: vec!["/probe-agent".into()], cmd: vec!["run".into()], env: Vec::new(), labels };
    let entries = [Entry::File { path: "probe-agent".into(), mode: 0o755, data: bytes }];
    let archive = oci::archive(&reference, &entries, &config)?;
    let path = write(&cache.join("image"), "probe-agent.tar", &archive)?;
    eprintln!("xtask: agent image {reference} ({}) in {}", oci::digest(&archive), path.display());
    Ok(Image { archive: path, reference })
}

/// Reads the agent's archive with Debian's skopeo, as a registry push would (`oci-archive:`)
/// and as Docker tooling would (`docker-archive:`): the labels, platform, entrypoint and
/// command must be what [`agent`] wrote.
///
/// # Errors
/// When skopeo cannot read the archive or sees something else.
pub fn check_with_skopeo(image: &Image) -> anyhow::Result<()> {
    apt::ensure_tools(&[("skopeo", "skopeo")])?;
    let path = image.archive.display().to_string();
    for transport in ["oci-archive", "docker-archive"] {
        let at = format!("{transport}:{path}");
        let inspect: serde_json::Value = serde_json::from_str(&output(Command::new("skopeo").args(["inspect", &at]))?)
            .with_context(|| format!("skopeo inspect {at}"))?;
        let label = |k: &str| inspect["Labels"][k].as_str().unwrap_or_default().to_owned();
        if label("org.opencontainers.image.version") != env!("CARGO_PKG_VERSION")
            || label("org.opencontainers.image.source") != SOURCE
            || label("org.opencontainers.image.revision").is_empty()
            || inspect["Os"] != "linux"
            || inspect["Architecture"] != "amd64"
        {
            bail!("skopeo reads {at} differently from what was written: {inspect:#}");
        }
        let config: serde_json::Value =
            serde_json::from_str(&output(Command::new("skopeo").args(["inspect", "--config", &at]))?)
                .with_context(|| format!("skopeo inspect --config {at}"))?;
        if config["config"]["Entrypoint"] != serde_json::json!(["/probe-agent"])
            || config["config"]["Cmd"] != serde_json::json!(["run"])
        {
            bail!("skopeo reads another entrypoint or command in {at}: {:#}", config["config"]);
        }
    }
    eprintln!("xtask: skopeo reads {path} as an OCI and a Docker archive, labels and entrypoint intact");
    Ok(())
}

/// Busybox applets the workload and pause images link.
const APPLETS: [&str; 22] = [
    "sh", "cat", "wget", "sleep", "ls", "echo", "test", "[", "env", "head", "tr", "true", "false", "grep", "date",
    "ps", "id", "hostname", "stat", "nc", "mkdir", "cp",
];

fn busybox_entries() -> anyhow::Result<Vec<Entry>> {
    apt::ensure_tools(&[("busybox", "busybox-static")])?;
    let path = output(Command::new("sh").args(["-c", "command -v busybox"]))?;
    let data = std::fs::read(path.trim())?;
    if oci::has_interpreter(&data)? {
        bail!("{} is not static (install busybox-static)", path.trim());
    }
    let mut entries =
        vec![Entry::Dir { path: "bin".into() }, Entry::File { path: "bin/busybox".into(), mode: 0o755, data }];
    entries.extend(APPLETS.iter().map(|a| Entry::Symlink { path: format!("bin/{a}"), target: "busybox".into() }));
    entries.extend(["tmp", "etc", "var", "var/run", "run"].map(|d| Entry::Dir { path: d.into() }));
    Ok(entries)
}

/// The pause and workload images (busybox), in `$cache/image`.
///
/// # Errors
/// When busybox-static is missing and cannot be installed.
pub fn node_images(cache: &Path) -> anyhow::Result<Vec<Image>> {
    let entries = busybox_entries()?;
    let env = vec!["PATH=/bin".to_owned()];
    // A pod sandbox's only process: sleeps, reaps, and ends on SIGTERM (as PID 1 it must ask to).
    let pause = Config {
        entrypoint: vec![
            "/bin/sh".into(),
            "-c".into(),
            "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done".into(),
        ],
        env: env.clone(),
        ..Config::default()
    };
    let workload = Config { cmd: vec!["/bin/sh".into()], env, ..Config::default() };
    let dir = cache.join("image");
    Ok(vec![
        Image { archive: write(&dir, "pause.tar", &oci::archive(PAUSE, &entries, &pause)?)?, reference: PAUSE.into() },
        Image {
            archive: write(&dir, "busybox.tar", &oci::archive(WORKLOAD, &entries, &workload)?)?,
            reference: WORKLOAD.into(),
        },
    ])
}
