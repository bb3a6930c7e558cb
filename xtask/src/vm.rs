//! `cargo xtask vm-test`: the privileged suite inside qemu on stock Debian kernels.
//!
//! Kernels come from Debian's archive through a private apt configuration (the system's apt
//! state is left alone) and are cached with the initramfs tools outside the clone. Each kernel
//! boots twice for the whole suite: with the BPF LSM in the `lsm=` list and without it, so the
//! `lsm` modes and the `fentry`/`kprobe` fallbacks all run; then twice for the lockdown case,
//! with `lockdown=integrity` and `lockdown=confidentiality`. The guest runs the unchanged
//! privileged test binary.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    apt,
    cmd::{self, output},
    cpio::Cpio,
};

/// A kernel series to test and where Debian ships it.
struct KernelSpec {
    label: &'static str,
    suites: &'static [(&'static str, &'static str)],
}

const KERNELS: [KernelSpec; 2] = [
    KernelSpec {
        label: "bookworm",
        suites: &[
            ("http://deb.debian.org/debian", "bookworm"),
            ("http://deb.debian.org/debian", "bookworm-updates"),
            ("http://deb.debian.org/debian-security", "bookworm-security"),
        ],
    },
    KernelSpec { label: "bookworm-backports", suites: &[("http://deb.debian.org/debian", "bookworm-backports")] },
];

/// How a kernel boots: its LSM list, more kernel arguments, and which cases run (`None`: the
/// whole suite, or the user's filter).
struct BootSpec {
    variant: &'static str,
    lsm: &'static str,
    kernel_args: &'static str,
    filter: Option<&'static str>,
}

const WITH_BPF: &str = "landlock,lockdown,yama,integrity,apparmor,bpf";

/// The whole suite with the same LSM stack with and without `bpf`; then the lockdown case under
/// each lockdown level (a level can be raised at run time but never lowered, so each is a boot).
const BOOTS: [BootSpec; 4] = [
    BootSpec { variant: "bpf-lsm", lsm: WITH_BPF, kernel_args: "", filter: None },
    BootSpec { variant: "no-bpf-lsm", lsm: "landlock,lockdown,yama,integrity,apparmor", kernel_args: "", filter: None },
    BootSpec {
        variant: "lockdown-integrity",
        lsm: WITH_BPF,
        kernel_args: "lockdown=integrity",
        filter: Some(LOCKDOWN_GROUP),
    },
    BootSpec {
        variant: "lockdown-confidentiality",
        lsm: WITH_BPF,
        kernel_args: "lockdown=confidentiality",
        filter: Some(LOCKDOWN_GROUP),
    },
];

/// The privileged suite's group that runs only when the kernel is locked down.
const LOCKDOWN_GROUP: &str = "lockdown/";

/// Modes that must be refused when the BPF LSM is not active; every other mode must run.
const LSM_GROUPS: [&str; 2] = ["file/lsm", "connect/lsm"];

const BOOT_TIMEOUT: Duration = Duration::from_mins(25);

#[derive(Debug, clap::Args)]
pub struct VmArgs {
    /// Only privileged cases whose name contains this.
    pub filter: Option<String>,
    /// Only kernels whose label contains this (`bookworm`, `backports`).
    #[arg(long)]
    pub kernel: Option<String>,
}

struct Kernel {
    label: String,
    release: String,
    vmlinuz: PathBuf,
}

/// The kernel of `spec`, from the cache or downloaded once.
fn kernel(cache: &Path, spec: &KernelSpec) -> anyhow::Result<Kernel> {
    let dir = cache.join("vm/kernels").join(spec.label);
    let vmlinuz = dir.join("vmlinuz");
    let release_file = dir.join("release");
    if vmlinuz.exists()
        && let Ok(release) = std::fs::read_to_string(&release_file)
    {
        return Ok(Kernel { label: spec.label.to_owned(), release: release.trim().to_owned(), vmlinuz });
    }
    let apt_dir = cache.join("vm/apt").join(spec.label);
    let sources = spec
        .suites
        .iter()
        .map(|(url, suite)| format!("deb [signed-by={}] {url} {suite} main\n", apt::KEYRING))
        .collect::<Vec<_>>()
        .concat();
    apt::prepare(&apt_dir, &sources)?;
    let depends = output(apt::private("apt-cache", &apt_dir).args(["depends", "linux-image-amd64"]))?;
    let package = depends
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: ").filter(|p| p.starts_with("linux-image-")))
        .with_context(|| format!("no linux-image package behind linux-image-amd64 in {}:\n{depends}", spec.label))?
        .to_owned();
    let work = dir.join("download");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    cmd::run(apt::private("apt-get", &apt_dir).args(["download", "-qq", &package]).current_dir(&work))
        .with_context(|| format!("cannot download {package}"))?;
    let deb = std::fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let unpacked = work.join("x");
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    let boot = unpacked.join("boot");
    let image = std::fs::read_dir(&boot)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")))
        .context("the kernel package has no boot/vmlinuz-*")?;
    let release =
        image.file_name().and_then(|n| n.to_str()).unwrap_or_default().trim_start_matches("vmlinuz-").to_owned();
    std::fs::copy(&image, &vmlinuz)?;
    if let Some(config) = std::fs::read_dir(&boot)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("config-")))
    {
        std::fs::copy(config, dir.join("config"))?;
    }
    std::fs::write(&release_file, &release)?;
    std::fs::remove_dir_all(&work)?;
    eprintln!("xtask: cached kernel {release} ({package}) in {}", dir.display());
    Ok(Kernel { label: spec.label.to_owned(), release, vmlinuz })
}

const INIT: &str = r#"#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mount -t securityfs none /sys/kernel/security
mount -t tracefs none /sys/kernel/tracing
mount -t cgroup2 none /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
ip link set lo up
filter=""
run=privileged
rounds=4
ops=4000
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    tokenprobe.filter=*) filter="${arg#tokenprobe.filter=}";;
    tokenprobe.run=*) run="${arg#tokenprobe.run=}";;
    tokenprobe.rounds=*) rounds="${arg#tokenprobe.rounds=}";;
    tokenprobe.ops=*) ops="${arg#tokenprobe.ops=}";;
  esac
done
echo "TOKENPROBE-KERNEL $(uname -r) lsm=$(cat /sys/kernel/security/lsm)"
echo TOKENPROBE-BEGIN
if [ "$run" = overhead ]; then
  /bin/overhead --vm --no-footprint --rounds "$rounds" --ops "$ops" 2>&1
else
  TOKENPROBE_AGENT_BIN=/bin/probe-agent CI=true /bin/privileged $filter
fi
echo "TOKENPROBE-EXIT=$?"
poweroff -f
"#;

/// Shared libraries a dynamic binary needs (from `ldd`).
fn shared_libs(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let text = output(Command::new("ldd").arg(binary))?;
    Ok(text.lines().filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/'))).map(PathBuf::from).collect())
}

/// Builds the initramfs `name`: busybox, `binaries` (as `/bin/<name>`, debug info stripped)
/// and their libraries, and `/init`.
fn initramfs(cache: &Path, name: &str, binaries: &[(&str, &Path)]) -> anyhow::Result<PathBuf> {
    let dir = cache.join("vm");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    let file = std::fs::File::create(&path)?;
    let mut cpio = Cpio::new(std::io::BufWriter::new(file));
    for d in ["bin", "dev", "etc", "proc", "sys", "tmp", "run", "var", "lib", "lib64", "usr", "usr/lib"] {
        cpio.dir(d)?;
    }
    cpio.symlink("var/run", "../run")?;
    cpio.file("etc/hostname", 0o644, b"tokenprobe-vm\n")?;
    cpio.file("init", 0o755, INIT.as_bytes())?;
    let busybox =
        ["/bin/busybox", "/usr/bin/busybox"].into_iter().find(|p| Path::new(p).exists()).context("no busybox")?;
    cpio.file("bin/busybox", 0o755, &std::fs::read(busybox)?)?;
    // `/init` is a shell script: the shell must exist before it installs the other applets.
    cpio.symlink("bin/sh", "busybox")?;
    let mut libs = std::collections::BTreeSet::new();
    for &(name, binary) in binaries {
        let stripped = dir.join(name);
        cmd::run(Command::new("objcopy").arg("--strip-debug").arg(binary).arg(&stripped))?;
        cpio.file(&format!("bin/{name}"), 0o755, &std::fs::read(&stripped)?)?;
        libs.extend(shared_libs(binary)?);
    }
    let mut dirs = std::collections::BTreeSet::new();
    for lib in &libs {
        let rel = lib.strip_prefix("/").unwrap_or(lib);
        let mut parent = rel.parent();
        let mut chain = Vec::new();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            chain.push(p.to_path_buf());
            parent = p.parent();
        }
        for d in chain.into_iter().rev() {
            if dirs.insert(d.clone()) && !["lib", "lib64", "usr", "usr/lib"].contains(&d.to_str().unwrap_or_default()) {
                cpio.dir(&d.to_string_lossy())?;
            }
        }
        let resolved = std::fs::canonicalize(lib)?;
        cpio.file(&rel.to_string_lossy(), 0o755, &std::fs::read(resolved)?)?;
    }
    cpio.finish()?;
    Ok(path)
}

/// One case's outcome in a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
    Skipped(String),
}

/// What one boot produced.
struct Boot {
    kernel: String,
    variant: &'static str,
    results: BTreeMap<String, Outcome>,
    exit: Option<i32>,
    log: PathBuf,
    seconds: u64,
    /// What the guest's program printed (between the begin and exit markers).
    output: Vec<String>,
}

/// Parses the suite's lines: `test <name> ... ok|FAILED|SKIPPED: reason`.
fn parse_result(line: &str) -> Option<(String, Outcome)> {
    let rest = line.trim().strip_prefix("test ")?;
    let (name, verdict) = rest.split_once(" ... ")?;
    let outcome = if verdict.starts_with("ok") {
        Outcome::Passed
    } else if let Some(reason) = verdict.strip_prefix("SKIPPED: ") {
        Outcome::Skipped(reason.to_owned())
    } else if verdict.starts_with("FAILED") {
        Outcome::Failed
    } else {
        return None;
    };
    Some((name.to_owned(), outcome))
}

/// Boots `kernel` with `initrd`; `options` go on the kernel command line for `/init`
/// (`tokenprobe.filter=…`, `tokenprobe.run=overhead`, …).
fn boot(kernel: &Kernel, spec: &BootSpec, initrd: &Path, options: &[String], logs: &Path) -> anyhow::Result<Boot> {
    let variant = spec.variant;
    let mut append = format!("console=ttyS0 panic=-1 quiet lsm={} {}", spec.lsm, spec.kernel_args);
    for o in options {
        write!(append, " {o}")?;
    }
    let log_path = logs.join(format!("{}-{variant}.log", kernel.label));
    let mut log = std::fs::File::create(&log_path)?;
    let tag = format!("[{} {variant}]", kernel.release);
    eprintln!("xtask: {tag} booting (qemu, TCG)");
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-machine", "q35", "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", "2048"])
        .args(["-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(&append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start qemu-system-x86_64")?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut results = BTreeMap::new();
    let mut exit = None;
    let mut output = Vec::new();
    let mut begun = false;
    loop {
        let left = BOOT_TIMEOUT.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let line = line.replace('\r', "");
                writeln!(log, "{line}")?;
                if let Some(code) = line.split("TOKENPROBE-EXIT=").nth(1).map(str::trim) {
                    exit = code.parse().ok();
                    begun = false;
                } else if begun {
                    output.push(line.clone());
                } else if line.ends_with("TOKENPROBE-BEGIN") {
                    begun = true;
                }
                if let Some(at) = line.find("TOKENPROBE-KERNEL") {
                    // The first line carries the firmware's terminal escapes before it.
                    eprintln!("{tag} {}", &line[at..]);
                } else if line.starts_with('#') {
                    eprintln!("{tag} {line}");
                }
                if let Some((name, outcome)) = parse_result(&line) {
                    let mark = match &outcome {
                        Outcome::Passed => "ok",
                        Outcome::Failed => "FAILED",
                        Outcome::Skipped(_) => "skipped",
                    };
                    eprintln!("{tag} {name} ... {mark}");
                    results.insert(name, outcome);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                eprintln!("{tag} timed out after {}s; stopping qemu", BOOT_TIMEOUT.as_secs());
                // Our own child, by its handle.
                if let Err(e) = child.kill() {
                    eprintln!("{tag} cannot stop qemu: {e}");
                }
                break;
            }
        }
    }
    let status = child.wait()?;
    drop(reader.join());
    if exit.is_none() {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            drop(std::io::Read::read_to_string(&mut e, &mut stderr));
        }
        eprintln!("{tag} the guest did not finish (qemu {status}); log: {}\n{stderr}", log_path.display());
    }
    Ok(Boot {
        kernel: kernel.release.clone(),
        variant,
        results,
        exit,
        log: log_path,
        seconds: start.elapsed().as_secs(),
        output,
    })
}

/// The mode group of a case name: `file/lsm/x` → `file/lsm`; `cli/x` → `cli`.
fn group(name: &str) -> &str {
    match name.matches('/').count() {
        0 | 1 => name.split('/').next().unwrap_or(name),
        _ => name.rsplit_once('/').map_or(name, |(g, _)| g),
    }
}

/// Checks one boot against what its variant must show; returns the problems.
fn check(boot: &Boot) -> Vec<String> {
    let mut problems = Vec::new();
    if boot.exit.is_none() {
        problems.push(format!("the guest did not finish; see {}", boot.log.display()));
    }
    if boot.results.is_empty() {
        problems.push(format!("no test ran; see {}", boot.log.display()));
    }
    for (name, outcome) in &boot.results {
        let locked = boot.variant.starts_with("lockdown");
        let must_skip = (boot.variant == "no-bpf-lsm" && LSM_GROUPS.contains(&group(name)))
            || (!locked && name.starts_with(LOCKDOWN_GROUP));
        match (outcome, must_skip) {
            (Outcome::Failed, _) => problems.push(format!("{name} failed")),
            (Outcome::Skipped(reason), false) => {
                problems.push(format!("{name} was skipped but must run here: {reason}"));
            }
            (Outcome::Passed, true) => {
                problems.push(format!("{name} passed although this boot ({}) must skip it", boot.variant));
            }
            _ => {}
        }
    }
    if boot.variant.starts_with("lockdown") && !boot.results.keys().any(|n| n.starts_with(LOCKDOWN_GROUP)) {
        problems.push(format!("no lockdown case ran although the kernel is locked down; see {}", boot.log.display()));
    }
    if boot.exit.is_some_and(|c| c != 0) && problems.is_empty() {
        problems.push(format!("the suite exited with {:?}; see {}", boot.exit, boot.log.display()));
    }
    problems
}

/// One line per mode group: `pass 10/10`, `skipped (reason)` or `FAILED 2/10`.
fn matrix(boots: &[Boot]) -> String {
    let mut out = String::new();
    for b in boots {
        writeln!(out, "{} ({}, {} s):", b.kernel, b.variant, b.seconds).expect("write to a String");
        let mut groups: BTreeMap<&str, (usize, usize, Option<&str>)> = BTreeMap::new();
        for (name, outcome) in &b.results {
            let g = groups.entry(group(name)).or_default();
            match outcome {
                Outcome::Passed => g.0 += 1,
                Outcome::Failed => g.1 += 1,
                Outcome::Skipped(reason) => g.2 = Some(reason),
            }
        }
        for (g, (passed, failed, skipped)) in groups {
            let verdict = match (failed, skipped) {
                (0, Some(reason)) => format!("skipped: {reason}"),
                (0, None) => format!("pass {passed}/{passed}"),
                (f, _) => format!("FAILED {f}/{}", passed + f),
            };
            writeln!(out, "    {g:<18} {verdict}").expect("write to a String");
        }
    }
    out
}

pub fn run(cache: &Path, suite: &Path, agent: &Path, args: &VmArgs) -> anyhow::Result<()> {
    apt::ensure_tools(&[
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("busybox", "busybox-static"),
        ("objcopy", "binutils"),
    ])?;
    let kernels: Vec<Kernel> = KERNELS
        .iter()
        .filter(|k| args.kernel.as_ref().is_none_or(|f| k.label.contains(f.as_str())))
        .map(|spec| kernel(cache, spec))
        .collect::<anyhow::Result<_>>()?;
    if kernels.is_empty() {
        bail!("no kernel matches --kernel {:?}", args.kernel);
    }
    let initrd = initramfs(cache, "initramfs.cpio", &[("privileged", suite), ("probe-agent", agent)])?;
    let logs = cache.join("vm/logs");
    std::fs::create_dir_all(&logs)?;
    let mut boots = Vec::new();
    for kernel in &kernels {
        for spec in &BOOTS {
            // A boot for one group runs only when the user's filter leaves that group in.
            let filter = match (spec.filter, &args.filter) {
                (Some(own), Some(user)) if !own.contains(user.as_str()) && !user.contains(own) => continue,
                (Some(own), _) => Some(own.to_owned()),
                // The lockdown cases only run on locked-down boots: a filter for them alone leaves
                // nothing for the others.
                (None, Some(user)) if LOCKDOWN_GROUP.contains(user.as_str()) || user.contains(LOCKDOWN_GROUP) => {
                    continue;
                }
                (None, user) => user.clone(),
            };
            let options: Vec<String> = filter.iter().map(|f| format!("tokenprobe.filter={f}")).collect();
            boots.push(boot(kernel, spec, &initrd, &options, &logs)?);
        }
    }
    println!("\nkernel matrix (logs in {}):\n{}", logs.display(), matrix(&boots));
    let problems: Vec<String> = boots
        .iter()
        .flat_map(|b| check(b).into_iter().map(move |p| format!("{} {}: {p}", b.kernel, b.variant)))
        .collect();
    let count = |f: fn(&Outcome) -> bool| boots.iter().flat_map(|b| b.results.values()).filter(|o| f(o)).count();
    let passed = count(|o| *o == Outcome::Passed);
    let failed = count(|o| *o == Outcome::Failed);
    let skipped = count(|o| matches!(o, Outcome::Skipped(_)));
    for p in &problems {
        println!("problem: {p}");
    }
    println!("vm-test: {passed} passed, {failed} failed, {skipped} skipped");
    if problems.is_empty() { Ok(()) } else { bail!("the kernel matrix found {} problem(s)", problems.len()) }
}

/// The overhead benchmark's `lsm` and `fentry` arms (and their floors), inside qemu on each
/// kernel of the matrix booted with the BPF LSM: under TCG emulation only ratios to each mode's
/// own floor mean anything. Prints each guest's report; returns them.
pub fn bench(cache: &Path, overhead: &Path, rounds: u32, ops: u32) -> anyhow::Result<Vec<String>> {
    apt::ensure_tools(&[
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("busybox", "busybox-static"),
        ("objcopy", "binutils"),
    ])?;
    let kernels: Vec<Kernel> = KERNELS.iter().map(|spec| kernel(cache, spec)).collect::<anyhow::Result<_>>()?;
    let initrd = initramfs(cache, "initramfs-bench.cpio", &[("overhead", overhead)])?;
    let logs = cache.join("vm/logs");
    std::fs::create_dir_all(&logs)?;
    let options =
        ["tokenprobe.run=overhead".to_owned(), format!("tokenprobe.rounds={rounds}"), format!("tokenprobe.ops={ops}")];
    let spec = &BOOTS[0];
    let mut reports = Vec::new();
    for kernel in &kernels {
        let b = boot(kernel, spec, &initrd, &options, &logs)?;
        let report = b.output.join("\n");
        println!("\noverhead inside qemu (TCG), kernel {} ({}, {} s):\n{report}", b.kernel, spec.variant, b.seconds);
        if b.exit != Some(0) {
            bail!("the benchmark did not finish in the guest (exit {:?}); see {}", b.exit, b.log.display());
        }
        reports.push(report);
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suite_lines() {
        assert_eq!(parse_result("test file/lsm/x ... ok (12 ms)"), Some(("file/lsm/x".into(), Outcome::Passed)));
        assert_eq!(
            parse_result("test connect/lsm/y ... SKIPPED: EPERM (hint)"),
            Some(("connect/lsm/y".into(), Outcome::Skipped("EPERM (hint)".into())))
        );
        assert_eq!(parse_result("test cli/z ... FAILED (3 ms)"), Some(("cli/z".into(), Outcome::Failed)));
        assert_eq!(parse_result("# file-open mode lsm: available"), None);
        assert_eq!(parse_result("test nonsense"), None);
    }

    #[test]
    fn groups_and_checks() {
        assert_eq!(group("file/lsm/token_reader"), "file/lsm");
        assert_eq!(group("cli/watch"), "cli");
        let mut boot = Boot {
            kernel: "6.1".into(),
            variant: "no-bpf-lsm",
            results: BTreeMap::new(),
            exit: Some(0),
            log: PathBuf::from("/x.log"),
            seconds: 1,
            output: Vec::new(),
        };
        boot.results.insert("file/lsm/a".into(), Outcome::Skipped("EPERM".into()));
        boot.results.insert("file/fentry/a".into(), Outcome::Passed);
        assert!(check(&boot).is_empty());
        boot.results.insert("file/kprobe/a".into(), Outcome::Skipped("no kprobes".into()));
        boot.results.insert("connect/lsm/a".into(), Outcome::Passed);
        let problems = check(&boot);
        assert_eq!(problems.len(), 2, "{problems:?}");
        boot.variant = "bpf-lsm";
        boot.results.insert("file/lsm/a".into(), Outcome::Skipped("EPERM".into()));
        assert!(check(&boot).iter().any(|p| p.contains("file/lsm/a was skipped")));
        assert!(matrix(std::slice::from_ref(&boot)).contains("skipped: no kprobes"));
        // The lockdown case must skip unless the kernel is locked down, and run when it is.
        boot.results.clear();
        boot.results.insert("lockdown/x".into(), Outcome::Passed);
        assert!(check(&boot).iter().any(|p| p.contains("lockdown/x passed although")), "{:?}", check(&boot));
        boot.variant = "lockdown-confidentiality";
        assert!(check(&boot).is_empty(), "{:?}", check(&boot));
        boot.results.clear();
        boot.results.insert("cli/y".into(), Outcome::Passed);
        assert!(check(&boot).iter().any(|p| p.contains("no lockdown case ran")));
    }
}
