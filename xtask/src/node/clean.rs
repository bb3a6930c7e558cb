//! Undoing everything the node did to this machine, and checking that nothing is left: the
//! processes it started (containerd's shims and the containers too), its mounts, its cgroups,
//! its network namespace, its state directories and every sysctl the kubelet, kube-proxy and
//! the CNI plugins changed.

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use super::{CONTAINERD_SOCKET, NETNS, OWNED_DIRS};

/// Sysctls that change by themselves (or are write-only): never compared.
const VOLATILE: [&str; 6] = [
    "kernel/ns_last_pid",
    "kernel/random/",
    "vm/drop_caches",
    "fs/binfmt_misc/",
    "kernel/usermodehelper/",
    "vm/stat_refresh",
];

/// Every readable, writable sysctl of the host's network namespace and the kernel.
pub fn sysctls() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::from("/proc/sys")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            let rel = path.strip_prefix("/proc/sys").map(|p| p.display().to_string()).unwrap_or_default();
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            if meta.permissions().mode() & 0o200 == 0 || VOLATILE.iter().any(|v| rel.starts_with(v)) {
                continue;
            }
            if let Ok(value) = std::fs::read_to_string(&path) {
                out.insert(rel, value);
            }
        }
    }
    out
}

/// Writes back every sysctl whose value differs from `before`; returns those it restored and
/// those it could not.
pub fn restore_sysctls(before: &BTreeMap<String, String>) -> (Vec<String>, Vec<String>) {
    let now = sysctls();
    let (mut restored, mut failed) = (Vec::new(), Vec::new());
    for (name, old) in before {
        if now.get(name).is_some_and(|v| v != old) {
            let path = Path::new("/proc/sys").join(name);
            match std::fs::write(&path, old.trim_end()) {
                Ok(()) => restored.push(format!("{} = {}", name.replace('/', "."), old.trim())),
                Err(e) => failed.push(format!("{}: {e}", name.replace('/', "."))),
            }
        }
    }
    (restored, failed)
}

/// Sysctls that differ from `before`.
pub fn changed_sysctls(before: &BTreeMap<String, String>) -> Vec<String> {
    let now = sysctls();
    before
        .iter()
        .filter(|(k, v)| now.get(*k).is_some_and(|n| n != *v))
        .map(|(k, v)| format!("{} = {} (was {})", k.replace('/', "."), now[k].trim(), v.trim()))
        .collect()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// Whether a process sits in a cgroup of the node's pods (a container's, or a shim's).
fn in_kubepods(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|c| c.lines().any(|l| l.split(':').nth(2).is_some_and(|p| p.starts_with("/kubepods"))))
}

/// Processes the node started that are not in its pid files: containerd's shims (they name
/// the node's containerd socket) and the containers' processes (in the node's kubepods
/// cgroups).
pub fn descendants() -> Vec<(u32, String)> {
    let me = std::process::id();
    pids()
        .into_iter()
        .filter(|p| *p != me)
        .filter_map(|p| {
            let line = cmdline(p);
            let shim = line.contains("containerd-shim") && line.contains(CONTAINERD_SOCKET);
            (shim || in_kubepods(p)).then_some((p, line))
        })
        .collect()
}

/// Sends `signal` to each pid (ours: recorded or found by [`descendants`]).
pub fn signal(pids: &[u32], signal: nix::sys::signal::Signal) {
    for pid in pids {
        if let Ok(pid) = i32::try_from(*pid) {
            // A process that already ended is what we want.
            if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
                && e != nix::errno::Errno::ESRCH
            {
                eprintln!("xtask: node: cannot signal {pid}: {e}");
            }
        }
    }
}

/// Waits until none of `pids` is alive (or `timeout`).
pub fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let alive = pids.iter().any(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Mount points under the node's directories, deepest first.
pub fn mounts() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| {
            OWNED_DIRS.iter().any(|d| m == d || m.starts_with(&format!("{d}/"))) || *m == format!("/run/netns/{NETNS}")
        })
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.len()));
    out.dedup();
    out
}

/// Unmounts them all (each may be stacked: repeat until none is left).
pub fn unmount_all() -> Vec<String> {
    for _ in 0..5 {
        let left = mounts();
        if left.is_empty() {
            return left;
        }
        for m in &left {
            if let Err(e) = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH) {
                eprintln!("xtask: node: cannot unmount {m}: {e} (retrying)");
            }
        }
    }
    mounts()
}

/// The `kubepods` trees of every cgroup hierarchy (v1 controllers and v2).
pub fn kubepods_cgroups() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter(|l| l.contains(" - cgroup ") || l.contains(" - cgroup2 "))
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| Path::new(m).join("kubepods"))
        .filter(|p| p.is_dir())
        .collect()
}

/// Removes a cgroup tree, leaves first.
pub fn remove_cgroup_tree(root: &Path) -> std::io::Result<()> {
    let mut dirs = vec![root.to_path_buf()];
    let mut i = 0;
    while i < dirs.len() {
        if let Ok(entries) = std::fs::read_dir(&dirs[i]) {
            dirs.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
        i += 1;
    }
    for dir in dirs.iter().rev() {
        let mut result = std::fs::remove_dir(dir);
        for _ in 0..20 {
            if result.is_ok() || !dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            result = std::fs::remove_dir(dir);
        }
        if dir.exists() {
            result?;
        }
    }
    Ok(())
}

/// Named network namespaces (`/run/netns/*`): containerd makes one per pod sandbox
/// (`cni-…`) and removes it only when the sandbox is removed through CRI.
pub fn named_netns() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Removes a named network namespace (unmount, then the file).
pub fn remove_netns(name: &str) -> Result<(), String> {
    let path = format!("/run/netns/{name}");
    if let Err(e) = nix::mount::umount2(path.as_str(), nix::mount::MntFlags::MNT_DETACH)
        && e != nix::errno::Errno::EINVAL
    {
        return Err(format!("{path}: {e}"));
    }
    std::fs::remove_file(&path).map_err(|e| format!("{path}: {e}"))
}

/// Whether the node's network namespace exists.
pub fn netns_exists() -> bool {
    Path::new(&format!("/run/netns/{NETNS}")).exists()
}

/// KUBE-* and CNI-* iptables chains in the host's network namespace (the node keeps its own in
/// its namespace; any here would be a leak).
pub fn host_chains() -> Vec<String> {
    let Ok(out) = Command::new("iptables-save").output() else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(":KUBE-") || l.starts_with(":CNI-"))
        .map(|l| l.split(' ').next().unwrap_or(l).trim_start_matches(':').to_owned())
        .collect()
}

/// Bridges named like the node's in the host's network namespace.
pub fn host_bridges() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| n == "tp0" || n.starts_with("cni"))
                .collect()
        })
        .unwrap_or_default()
}
