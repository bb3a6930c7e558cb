//! Builds the kernel programs (probe-ebpf's `tokenprobe` binary) for BPF into `OUT_DIR`, where
//! `src/ebpf.rs` embeds them.
#[cfg(feature = "agent")]
use anyhow::{Context as _, anyhow};

#[cfg_attr(not(feature = "agent"), expect(clippy::unnecessary_wraps, reason = "fails only with the agent"))]
fn main() -> anyhow::Result<()> {
    // Without the `agent` feature (the planner alone) nothing is built for the kernel.
    #[cfg(feature = "agent")]
    build_ebpf()?;
    Ok(())
}

#[cfg(feature = "agent")]
fn build_ebpf() -> anyhow::Result<()> {
    let metadata = cargo_metadata()?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "probe-ebpf", root_dir: &metadata, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
    .context("building the eBPF programs failed; `cargo xtask setup` installs what they need")
}

/// probe-ebpf's directory, beside this package in the workspace.
#[cfg(feature = "agent")]
fn cargo_metadata() -> anyhow::Result<String> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let dir = std::path::Path::new(&manifest_dir).join("../probe-ebpf").canonicalize()?;
    dir.to_str().map(str::to_owned).ok_or_else(|| anyhow!("non-UTF-8 path {}", dir.display()))
}
