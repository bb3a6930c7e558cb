//! How containers are told apart in the kernel: by cgroup v2 id where each container has a
//! cgroup v2 group of its own, else by mount-namespace inode (cgroup v1-only nodes, or hybrid
//! nodes with the cgroupfs driver, whose containers share one v2 group).

use std::path::{Path, PathBuf};

use crate::{cgroup, evidence::KeyKind, mountinfo};

/// `--container-key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ContainerKeyMode {
    /// Cgroup ids when containers are found in cgroup v2, else mount namespaces.
    Auto,
    Cgroup,
    Mntns,
}

/// The choice, with where to look for containers and which hierarchy's attach events mark
/// exec sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keying {
    pub kind: KeyKind,
    /// The cgroup tree scanned for container cgroups.
    pub scan_root: PathBuf,
    /// `cgroup_root.hierarchy_id` of that tree (0 for v2).
    pub hierarchy: u32,
}

/// Chooses. `v1_root` forces the cgroup v1 hierarchy to use in mount-namespace mode.
///
/// # Errors
/// When the mode needs a hierarchy this host does not have.
pub fn choose(
    mode: ContainerKeyMode,
    entries: &[mountinfo::MountEntry],
    v2_root: Option<&Path>,
    v1_root: Option<&Path>,
) -> Result<Keying, String> {
    let v2 = || v2_root.map(|root| Keying { kind: KeyKind::Cgroup, scan_root: root.to_path_buf(), hierarchy: 0 });
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let v1: Vec<(PathBuf, u32)> = mountinfo::cgroup1_mounts(entries)
        .into_iter()
        .filter(|(mount, _)| v1_root.is_none_or(|r| Path::new(mount) == r))
        .filter_map(|(mount, options)| {
            mountinfo::cgroup1_hierarchy_id(&options, &proc_cgroup).map(|id| (PathBuf::from(mount), id))
        })
        .collect();
    let v1_with_containers =
        || v1.iter().find(|(root, _)| !cgroup::scan(root).is_empty()).or_else(|| v1.first()).cloned();
    let mntns = |found: Option<(PathBuf, u32)>| {
        found.map(|(scan_root, hierarchy)| Keying { kind: KeyKind::MountNs, scan_root, hierarchy })
    };
    match mode {
        ContainerKeyMode::Cgroup => v2().ok_or_else(|| "no cgroup v2 hierarchy is mounted".to_owned()),
        ContainerKeyMode::Mntns => mntns(v1_with_containers()).ok_or_else(|| {
            "no cgroup v1 hierarchy is mounted (mount-namespace keys need one to find containers)".to_owned()
        }),
        ContainerKeyMode::Auto => {
            if let Some(k) = v2().filter(|k| !cgroup::scan(&k.scan_root).is_empty()) {
                return Ok(k);
            }
            if let Some(k) = mntns(v1.iter().find(|(root, _)| !cgroup::scan(root).is_empty()).cloned()) {
                tracing::info!(hierarchy = %k.scan_root.display(), "containers live in cgroup v1: keying them by mount namespace");
                return Ok(k);
            }
            v2().or_else(|| mntns(v1.first().cloned())).ok_or_else(|| "no cgroup hierarchy is mounted".to_owned())
        }
    }
}
