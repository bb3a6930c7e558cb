//! Machine set-up: nightly `rust-src`, bpf-linker built against the toolchain's own libLLVM,
//! tracefs. Idempotent; builds are cached outside the clone.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::cmd::{self, is_root, output};

const BPF_LINKER_VERSION: &str = "0.13.0";

/// The cache directory: `$TOKENPROBE_CACHE`, else `$XDG_CACHE_HOME/tokenprobe`, else `~/.cache/tokenprobe`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TOKENPROBE_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache"),
        PathBuf::from,
    );
    base.join("tokenprobe")
}

/// Sets the machine up; every step is idempotent.
pub fn run() -> anyhow::Result<()> {
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).with_context(|| format!("cannot create cache dir {}", cache.display()))?;
    nightly_rust_src()?;
    bpf_linker(&cache)?;
    tracefs();
    memlock();
    Ok(())
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed (the eBPF programs build with a nightly toolchain)")?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        bail!(
            "no nightly toolchain: the eBPF programs need one (`rustup toolchain install nightly`); this setup does not download toolchains"
        );
    }
    let installed =
        output(Command::new("rustup").args(["component", "list", "--toolchain", "nightly", "--installed"]))?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        cmd::run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
            .context("nightly needs rust-src to build `core` for the BPF target")?;
    }
    Ok(())
}

/// LLVM major version and the libLLVM file of the nightly toolchain.
fn nightly_llvm() -> anyhow::Result<(String, PathBuf)> {
    let verbose = output(Command::new("rustc").args(["+nightly", "--version", "--verbose"]))?;
    let major = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("cannot tell nightly rustc's LLVM version")?
        .to_owned();
    let sysroot = PathBuf::from(output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?.trim());
    let lib = std::fs::read_dir(sysroot.join("lib"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libLLVM.so.")))
        .with_context(|| format!("nightly has no libLLVM.so.* in {}", sysroot.join("lib").display()))?;
    Ok((major, lib))
}

/// bpf-linker must link against the same libLLVM as the rustc whose bitcode it reads; Debian's
/// LLVM is too old. Built once per toolchain into the cache and linked into cargo's bin dir.
fn bpf_linker(cache: &Path) -> anyhow::Result<()> {
    let (major, lib) = nightly_llvm()?;
    let tag = lib.file_name().and_then(|n| n.to_str()).unwrap_or("llvm").replace("libLLVM.so.", "");
    let root = cache.join(format!("bpf-linker-{BPF_LINKER_VERSION}-{tag}"));
    let binary = root.join("bin/bpf-linker");
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map_or_else(
            || PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo"),
            PathBuf::from,
        )
        .join("bin");
    if !binary.exists() || Command::new(&binary).arg("--version").output().map_or(true, |o| !o.status.success()) {
        let prefix = root.join("llvm-prefix");
        let prefix_lib = prefix.join("lib");
        std::fs::create_dir_all(&prefix_lib)?;
        for name in ["libLLVM.so".to_owned(), lib.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned()] {
            let link = prefix_lib.join(name);
            if std::fs::symlink_metadata(&link).is_ok() {
                std::fs::remove_file(&link)?;
            }
            std::os::unix::fs::symlink(&lib, &link)?;
        }
        // The SONAME (libLLVM-<major>-rust-….so) too, where it is a separate file.
        if let Some(dir) = lib.parent() {
            for entry in std::fs::read_dir(dir)?.flatten() {
                let name = entry.file_name();
                if name.to_str().is_some_and(|n| n.starts_with(&format!("libLLVM-{major}"))) {
                    let link = prefix_lib.join(&name);
                    if std::fs::symlink_metadata(&link).is_err() {
                        std::os::unix::fs::symlink(entry.path(), &link)?;
                    }
                }
            }
        }
        eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against {} (a few minutes, once)", lib.display());
        cmd::run(
            Command::new("cargo")
                .args([
                    "+nightly",
                    "install",
                    &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                    "--locked",
                    "--no-default-features",
                ])
                .args(["--features", &format!("llvm-{major}")])
                .arg("--root")
                .arg(&root)
                .env("LLVM_PREFIX", &prefix),
        )
        .context("building bpf-linker failed")?;
    }
    std::fs::create_dir_all(&cargo_bin)?;
    let link = cargo_bin.join("bpf-linker");
    if std::fs::read_link(&link).ok().as_deref() != Some(binary.as_path()) {
        if std::fs::symlink_metadata(&link).is_ok() {
            std::fs::remove_file(&link).with_context(|| format!("cannot replace {}", link.display()))?;
        }
        std::os::unix::fs::symlink(&binary, &link).with_context(|| format!("cannot link {}", link.display()))?;
        eprintln!("xtask: {} -> {}", link.display(), binary.display());
    }
    Ok(())
}

/// Syscall tracepoints need tracefs; the agent mounts it too, this saves it the trouble.
fn tracefs() {
    if Path::new("/sys/kernel/tracing/events").is_dir() || Path::new("/sys/kernel/debug/tracing/events").is_dir() {
        return;
    }
    if !is_root() {
        eprintln!(
            "xtask: warning: tracefs is not mounted and we are not root; the agent will mount it when run as root"
        );
        return;
    }
    if let Err(e) = cmd::run(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])) {
        eprintln!("xtask: warning: cannot mount tracefs ({e:#}); the tracepoint mode will be unavailable");
    }
}

/// Reports whether `RLIMIT_MEMLOCK` can be raised; kernels >= 5.11 charge BPF memory to the memory
/// cgroup, so a failure is only a warning.
fn memlock() {
    match output(Command::new("sh").args(["-c", "ulimit -l unlimited 2>&1 && echo ok"])) {
        Ok(s) if s.trim_end().ends_with("ok") => {}
        _ => eprintln!(
            "xtask: warning: RLIMIT_MEMLOCK cannot be raised here; fine on kernels >= 5.11 (this one: {})",
            output(Command::new("uname").arg("-r")).unwrap_or_default().trim()
        ),
    }
}
