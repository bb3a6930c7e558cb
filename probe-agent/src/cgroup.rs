//! Container cgroups: parsing kubepods-shaped paths and scanning the cgroup v2 tree.
//!
//! Layouts understood (any prefix before the kubepods component, e.g. kind's `kubelet-`):
//! - systemd driver: `kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_with_underscores>.slice/<runtime>-<id>.scope`,
//!   guaranteed pods directly under `kubepods.slice` (`kubepods-pod<uid>.slice`);
//!   runtimes `cri-containerd-`, `crio-`, `docker-` (`crio-conmon-` is CRI-O's monitor, not a container);
//! - cgroupfs driver: `kubepods/<qos>/pod<uid>/<id>` (guaranteed: `kubepods/pod<uid>/<id>`),
//!   CRI-O there as `crio-<id>`;
//! - anything below the container's cgroup (crun's nested sub-cgroups) rolls up into it.

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

/// The container runtime, when the cgroup name says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Containerd,
    Crio,
    Docker,
}

/// A container's identity as read from its cgroup path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    /// Pod UID with dashes, as the API server spells it.
    pub pod_uid: String,
    pub container_id: String,
    pub runtime: Option<Runtime>,
    /// The path up to and including the container component (nested parts dropped).
    pub container_path: String,
}

fn hex_id(s: &str) -> Option<&str> {
    (s.len() >= 12 && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

/// The pod UID in a pod component: `…pod<uid>.slice` (systemd, underscores) or `pod<uid>`.
fn pod_uid(component: &str) -> Option<String> {
    let stem = component.strip_suffix(".slice").unwrap_or(component);
    let at = stem.rfind("pod")?;
    if at > 0 && stem.as_bytes()[at - 1] != b'-' {
        return None;
    }
    let uid = stem[at + 3..].replace('_', "-");
    crate::mountinfo::is_pod_uid(&uid).then(|| uid.to_ascii_lowercase())
}

/// The container id and runtime in a container component.
fn container(component: &str) -> Option<(String, Option<Runtime>)> {
    if let Some(scope) = component.strip_suffix(".scope") {
        if scope.starts_with("crio-conmon-") {
            return None;
        }
        for (prefix, runtime) in
            [("cri-containerd-", Runtime::Containerd), ("crio-", Runtime::Crio), ("docker-", Runtime::Docker)]
        {
            if let Some(id) = scope.strip_prefix(prefix).and_then(hex_id) {
                return Some((id.to_owned(), Some(runtime)));
            }
        }
        return None;
    }
    if let Some(id) = component.strip_prefix("crio-").and_then(hex_id) {
        return Some((id.to_owned(), Some(Runtime::Crio)));
    }
    hex_id(component).map(|id| (id.to_owned(), None))
}

fn is_kubepods(component: &str) -> bool {
    let stem = component.strip_suffix(".slice").unwrap_or(component);
    stem == "kubepods" || stem.ends_with("-kubepods") || stem.starts_with("kubepods-") || stem.contains("-kubepods-")
}

/// Parses a cgroup path (relative to the cgroup v2 root, leading `/` optional).
/// `None` for anything that is not a container cgroup of a pod.
#[must_use]
pub fn parse_path(path: &str) -> Option<ContainerCgroup> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let kubepods = components.iter().position(|c| is_kubepods(c))?;
    let (pod_index, uid) =
        components.iter().enumerate().skip(kubepods).find_map(|(i, c)| pod_uid(c).map(|uid| (i, uid)))?;
    let component = components.get(pod_index + 1)?;
    let (container_id, runtime) = container(component)?;
    Some(ContainerCgroup {
        pod_uid: uid,
        container_id,
        runtime,
        container_path: format!("/{}", components[..=pod_index + 1].join("/")),
    })
}

/// A cgroup found by [`scan`]: its id (directory inode), path and container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCgroup {
    pub id: u64,
    pub path: String,
    pub container: ContainerCgroup,
}

/// What a walk of a cgroup tree found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Every container cgroup (nested ones included, each rolled up to its container).
    pub containers: Vec<FoundCgroup>,
    /// Ids of cgroups outside kubepods (the host's: system services, the kubelet, sessions).
    pub host_ids: HashSet<u64>,
}

/// Walks the cgroup tree at `root` and returns every container cgroup (nested ones included,
/// each rolled up to its container). Directories that vanish during the walk are skipped.
#[must_use]
pub fn scan(root: &Path) -> Vec<FoundCgroup> {
    scan_tree(root).containers
}

/// Walks the cgroup tree at `root`: its container cgroups, and the ids of the host's.
#[must_use]
pub fn scan_tree(root: &Path) -> Scan {
    const MAX_DEPTH: usize = 16;
    let mut out = Scan::default();
    if let Ok(meta) = std::fs::metadata(root) {
        out.host_ids.insert(meta.ino());
    }
    let mut stack: Vec<(PathBuf, usize)> = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let Ok(file_type) = entry.file_type() else { continue };
            if !file_type.is_dir() {
                continue;
            }
            let path = entry.path();
            let Some(rel) = path.strip_prefix(root).ok().and_then(Path::to_str).map(|r| format!("/{r}")) else {
                continue;
            };
            if let Ok(meta) = entry.metadata() {
                if let Some(container) = parse_path(&rel) {
                    out.containers.push(FoundCgroup { id: meta.ino(), path: rel, container });
                } else if !rel.split('/').any(is_kubepods) {
                    out.host_ids.insert(meta.ino());
                }
            }
            if depth + 1 < MAX_DEPTH {
                stack.push((path, depth + 1));
            }
        }
    }
    out
}

/// Pids in a cgroup and every cgroup below it.
#[must_use]
pub fn pids(dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stack.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
    }
    pids
}

/// Groups found cgroups by container: (pod uid, container id) → cgroup ids.
#[must_use]
pub fn by_container(found: &[FoundCgroup]) -> HashMap<(String, String), Vec<u64>> {
    let mut map: HashMap<(String, String), Vec<u64>> = HashMap::new();
    for f in found {
        map.entry((f.container.pod_uid.clone(), f.container.container_id.clone())).or_default().push(f.id);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0f4a3c2e-1b2d-4c5e-8f90-123456789abc";
    const UID_: &str = "0f4a3c2e_1b2d_4c5e_8f90_123456789abc";
    const ID: &str = "4b3f0e1d2c5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

    fn check(path: &str, runtime: Option<Runtime>, container_path: &str) {
        let c = parse_path(path).unwrap_or_else(|| panic!("{path} should parse"));
        assert_eq!(c.pod_uid, UID, "{path}");
        assert_eq!(c.container_id, ID, "{path}");
        assert_eq!(c.runtime, runtime, "{path}");
        assert_eq!(c.container_path, container_path, "{path}");
    }

    #[test]
    fn systemd_driver_layouts() {
        for (qos_slice, pod) in [
            ("kubepods-besteffort.slice/", format!("kubepods-besteffort-pod{UID_}.slice")),
            ("kubepods-burstable.slice/", format!("kubepods-burstable-pod{UID_}.slice")),
            ("", format!("kubepods-pod{UID_}.slice")),
        ] {
            for (runtime, prefix) in
                [(Runtime::Containerd, "cri-containerd-"), (Runtime::Crio, "crio-"), (Runtime::Docker, "docker-")]
            {
                let p = format!("/kubepods.slice/{qos_slice}{pod}/{prefix}{ID}.scope");
                check(&p, Some(runtime), &p);
            }
        }
    }

    #[test]
    fn cgroupfs_driver_layouts() {
        for qos in ["besteffort/", "burstable/", ""] {
            let p = format!("/kubepods/{qos}pod{UID}/{ID}");
            check(&p, None, &p);
            let p = format!("/kubepods/{qos}pod{UID}/crio-{ID}");
            check(&p, Some(Runtime::Crio), &p);
        }
    }

    #[test]
    fn nested_and_prefixed() {
        let base = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        check(&format!("{base}/container"), Some(Runtime::Containerd), &base);
        check(&format!("{base}/a/b"), Some(Runtime::Containerd), &base);
        // kind: kubelet runs with --cgroup-root=/kubelet; and a node inside another cgroup.
        let kind = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        check(&kind, Some(Runtime::Containerd), &kind);
        let nested = format!("/system.slice/docker-abc.scope/kubepods/pod{UID}/{ID}");
        check(&nested, None, &nested);
    }

    #[test]
    fn not_containers() {
        for p in [
            "/".to_owned(),
            "/kubepods.slice".to_owned(),
            format!("/kubepods.slice/kubepods-pod{UID_}.slice"),
            format!("/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{ID}.scope"),
            format!("/kubepods.slice/kubepods-pod{UID_}.slice/init.scope"),
            format!("/system.slice/pod{UID}/{ID}"),
            format!("/kubepods/pod{UID}/not-hex"),
            format!("/kubepods/pod{}/{ID}", &UID[1..]),
            format!("/kubepods/xpod{UID}/{ID}"),
            "/user.slice/user-0.slice/session-1.scope".to_owned(),
        ] {
            assert_eq!(parse_path(&p), None, "{p}");
        }
    }

    proptest::proptest! {
        #[test]
        fn no_path_panics(s in "\\PC{0,300}") {
            drop(parse_path(&s));
        }

        #[test]
        fn kubepods_shaped_paths_never_panic(
            a in "[a-z_.-]{0,20}", b in "[0-9a-f_-]{0,40}", c in "[a-z0-9.-]{0,80}", d in "[a-z/]{0,10}"
        ) {
            drop(parse_path(&format!("/kubepods.slice/{a}/kubepods-{a}-pod{b}.slice/{c}/{d}")));
            drop(parse_path(&format!("/kubepods/{a}/pod{b}/{c}/{d}")));
        }
    }
}
