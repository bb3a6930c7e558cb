//! Parsing `/proc/<pid>/mountinfo`: projected token volumes and the cgroup v2 mount.

use std::path::Path;

/// One mountinfo line, the fields tokenprobe uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub major: u32,
    pub minor: u32,
    /// Root of the mount within its filesystem.
    pub root: String,
    pub mount_point: String,
    pub fs_type: String,
    /// Per-superblock options (for cgroup v1: the controllers, `name=…`).
    pub super_options: String,
}

/// A line that could not be parsed; the rest of the file still is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mountinfo line {line_no}: {reason}: {line:?}")]
pub struct MountinfoError {
    pub line_no: usize,
    pub reason: &'static str,
    pub line: String,
}

/// Undoes the kernel's octal escapes (`\040` for space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..=i + 3].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = u32::from(bytes[i + 1] - b'0') * 64
                + u32::from(bytes[i + 2] - b'0') * 8
                + u32::from(bytes[i + 3] - b'0');
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one line: `id parent major:minor root mount-point options [optional…] - fstype source super-options`.
///
/// # Errors
/// A [`MountinfoError`] naming what is wrong with the line.
pub fn parse_line(line_no: usize, line: &str) -> Result<MountEntry, MountinfoError> {
    let err = |reason| MountinfoError { line_no, reason, line: line.to_owned() };
    let fields: Vec<&str> = line.split(' ').collect();
    if fields.len() < 7 {
        return Err(err("too few fields"));
    }
    let (major, minor) = fields[2].split_once(':').ok_or_else(|| err("device is not major:minor"))?;
    let major = major.parse().map_err(|_| err("bad major number"))?;
    let minor = minor.parse().map_err(|_| err("bad minor number"))?;
    let separator = fields[6..].iter().position(|f| *f == "-").ok_or_else(|| err("no ' - ' separator"))? + 6;
    let fs_type = fields.get(separator + 1).ok_or_else(|| err("no filesystem type"))?;
    if fs_type.is_empty() {
        return Err(err("empty filesystem type"));
    }
    Ok(MountEntry {
        major,
        minor,
        root: unescape(fields[3]),
        mount_point: unescape(fields[4]),
        fs_type: unescape(fs_type),
        super_options: fields.get(separator + 3).map(|o| unescape(o)).unwrap_or_default(),
    })
}

/// Parses a whole mountinfo text; malformed lines are returned beside the good ones.
#[must_use]
pub fn parse(text: &str) -> (Vec<MountEntry>, Vec<MountinfoError>) {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(i + 1, line) {
            Ok(entry) => entries.push(entry),
            Err(e) => errors.push(e),
        }
    }
    (entries, errors)
}

/// The volume plugins whose volumes can hold a service-account token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Plugin {
    /// `kubernetes.io~projected`: `kube-api-access-*` (automount), custom-audience tokens.
    Projected,
    /// `kubernetes.io~secret`: the ServiceAccount's token Secret on clusters without bound
    /// tokens (automount before Kubernetes 1.21), or any Secret holding a `token`.
    Secret,
}

/// A pod volume mount under the kubelet directory that may hold a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMount {
    pub pod_uid: String,
    pub volume: String,
    pub plugin: Plugin,
    pub mount_point: String,
    /// Kernel `s_dev` of the volume's tmpfs.
    pub dev: u32,
}

/// Is `entry` a projected or Secret volume,
/// `<kubelet_dir>/pods/<uid>/volumes/kubernetes.io~{projected,secret}/<name>`, backed by its own
/// tmpfs? (A volume on any other filesystem would share its device with unrelated files, so it
/// cannot be matched by device and is not watched.)
#[must_use]
pub fn pod_volume(entry: &MountEntry, kubelet_dir: &Path) -> Option<PodMount> {
    if entry.fs_type != "tmpfs" {
        return None;
    }
    let rest = Path::new(&entry.mount_point).strip_prefix(kubelet_dir).ok()?;
    let parts: Vec<&str> = rest.iter().map(|p| p.to_str()).collect::<Option<_>>()?;
    let (uid, plugin, name) = match parts.as_slice() {
        ["pods", uid, "volumes", "kubernetes.io~projected", name] => (uid, Plugin::Projected, name),
        ["pods", uid, "volumes", "kubernetes.io~secret", name] => (uid, Plugin::Secret, name),
        _ => return None,
    };
    (is_pod_uid(uid) && !name.is_empty()).then(|| PodMount {
        pod_uid: (*uid).to_owned(),
        volume: (*name).to_owned(),
        plugin,
        mount_point: entry.mount_point.clone(),
        dev: probe_common::volumes::kernel_dev(entry.major, entry.minor),
    })
}

/// Where the kubelet mounts the automount volume in a container (`/run` is `/var/run` on most
/// images).
pub const SA_PATHS: [&str; 2] =
    ["/var/run/secrets/kubernetes.io/serviceaccount", "/run/secrets/kubernetes.io/serviceaccount"];

/// The kernel device of the mount at the service-account path in a container's own mount table
/// (its `/proc/<pid>/mountinfo`), if there is one.
#[must_use]
pub fn service_account_mount(entries: &[MountEntry]) -> Option<(String, u32)> {
    entries
        .iter()
        .rev()
        .find(|e| SA_PATHS.contains(&e.mount_point.as_str()))
        .map(|e| (e.mount_point.clone(), probe_common::volumes::kernel_dev(e.major, e.minor)))
}

/// A Kubernetes UID: 36 characters of hex digits and four dashes (8-4-4-4-12).
#[must_use]
pub fn is_pod_uid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a projected volume's name is the admission-injected automount volume's
/// (`kube-api-access-*`; `run` mode confirms it against the pod spec).
#[must_use]
pub fn is_automount_volume(name: &str) -> bool {
    name.strip_prefix("kube-api-access-").is_some_and(|suffix| !suffix.is_empty())
}

/// The host's cgroup v1 hierarchies: (mount point, superblock options), each hierarchy once.
#[must_use]
pub fn cgroup1_mounts(entries: &[MountEntry]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for e in entries.iter().filter(|e| e.fs_type == "cgroup" && e.root == "/") {
        if !out.iter().any(|(_, o)| *o == e.super_options) {
            out.push((e.mount_point.clone(), e.super_options.clone()));
        }
    }
    out
}

/// The hierarchy id of a cgroup v1 mount, from `/proc/<pid>/cgroup` (`id:controllers:path`):
/// the line whose controllers are all among the mount's options.
#[must_use]
pub fn cgroup1_hierarchy_id(super_options: &str, proc_cgroup: &str) -> Option<u32> {
    let options: Vec<&str> = super_options.split(',').collect();
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let id: u32 = parts.next()?.parse().ok()?;
        let controllers = parts.next()?;
        (id != 0 && !controllers.is_empty() && controllers.split(',').all(|c| options.contains(&c))).then_some(id)
    })
}

/// The host's cgroup v2 mount point: the `cgroup2` mount of the hierarchy's root, preferring
/// `/sys/fs/cgroup` and then `/sys/fs/cgroup/unified` (hybrid hosts).
#[must_use]
pub fn cgroup2_mount(entries: &[MountEntry]) -> Option<String> {
    let mut candidates: Vec<&MountEntry> = entries.iter().filter(|e| e.fs_type == "cgroup2" && e.root == "/").collect();
    candidates.sort_by_key(|e| match e.mount_point.as_str() {
        "/sys/fs/cgroup" => 0,
        "/sys/fs/cgroup/unified" => 1,
        _ => 2,
    });
    candidates.first().map(|e| e.mount_point.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0f4a3c2e-1b2d-4c5e-8f90-123456789abc";

    fn line(mount_point: &str, dev: &str, fs: &str) -> String {
        format!("1234 25 {dev} / {mount_point} rw,relatime shared:5 - {fs} tmpfs rw,size=1024k")
    }

    #[test]
    fn parses_a_real_line() {
        let e =
            parse_line(1, "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue").unwrap();
        assert_eq!((e.major, e.minor), (98, 0));
        assert_eq!(e.root, "/mnt1");
        assert_eq!(e.mount_point, "/mnt2");
        assert_eq!(e.fs_type, "ext3");
        // No optional fields.
        let e = parse_line(2, "22 1 0:21 / /proc rw,nosuid - proc proc rw").unwrap();
        assert_eq!(e.fs_type, "proc");
    }

    #[test]
    fn unescapes_octal() {
        let e = parse_line(1, r"1 2 0:5 / /var/lib/my\040kubelet\134x rw - tmpfs tmpfs rw").unwrap();
        assert_eq!(e.mount_point, r"/var/lib/my kubelet\x");
        assert_eq!(unescape(r"a\04"), r"a\04");
        assert_eq!(unescape(r"\777"), r"\777");
    }

    #[test]
    fn malformed_lines_are_reported_and_the_rest_kept() {
        let good = line(
            &format!("/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~projected/kube-api-access-abcde"),
            "0:77",
            "tmpfs",
        );
        let text = format!(
            "garbage\n1 2 x:y / /a rw - tmpfs t rw\n1 2 0:1 / /b rw shared:1 tmpfs t rw\n{good}\n\n1 2 0:1 / /c rw -\n"
        );
        let (entries, errors) = parse(&text);
        assert_eq!(entries.len(), 1);
        assert_eq!(errors.iter().map(|e| e.line_no).collect::<Vec<_>>(), vec![1, 2, 3, 6]);
        assert!(errors[0].to_string().contains("too few fields"));
        assert!(errors[3].to_string().contains("no filesystem type"));
    }

    #[test]
    fn finds_pod_volumes() {
        let kubelet = Path::new("/var/lib/kubelet");
        let mp = format!("/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~projected/kube-api-access-x2v9k");
        let e = parse_line(1, &line(&mp, "0:300", "tmpfs")).unwrap();
        let v = pod_volume(&e, kubelet).unwrap();
        assert_eq!(v.pod_uid, UID);
        assert_eq!(v.volume, "kube-api-access-x2v9k");
        assert_eq!(v.dev, 300, "kernel s_dev for minor 300 is MAJOR<<20|MINOR");
        let e = parse_line(1, &line(&mp, "1:300", "tmpfs")).unwrap();
        assert_eq!(pod_volume(&e, kubelet).unwrap().dev, probe_common::volumes::kernel_dev(1, 300));
        assert_eq!(pod_volume(&e, kubelet).unwrap().plugin, Plugin::Projected);
        // A Secret volume: the legacy automount volume, or any Secret with a token.
        let secret = format!("/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~secret/default-token-x7k2p");
        let e = parse_line(1, &line(&secret, "0:301", "tmpfs")).unwrap();
        let v = pod_volume(&e, kubelet).unwrap();
        assert_eq!((v.plugin, v.volume.as_str()), (Plugin::Secret, "default-token-x7k2p"));

        // Not tmpfs, another plugin, a subpath below the volume, another kubelet dir, a bad uid.
        for (mp, fs) in [
            (mp.clone(), "ext4"),
            (format!("/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~configmap/s"), "tmpfs"),
            (format!("{mp}/token"), "tmpfs"),
            (format!("/var/lib/kubelet2/pods/{UID}/volumes/kubernetes.io~projected/v"), "tmpfs"),
            ("/var/lib/kubelet/pods/not-a-uid/volumes/kubernetes.io~projected/v".to_owned(), "tmpfs"),
        ] {
            let e = parse_line(1, &line(&mp, "0:9", fs)).unwrap();
            assert_eq!(pod_volume(&e, kubelet), None, "{mp} {fs}");
        }
    }

    #[test]
    fn the_service_account_mount_of_a_container() {
        let table = format!(
            "{}\n{}\n{}",
            line("/", "0:30", "overlay"),
            line("/var/run/secrets/kubernetes.io/serviceaccount", "0:45", "tmpfs"),
            line("/etc/hosts", "8:1", "ext4")
        );
        let (entries, _) = parse(&table);
        assert_eq!(service_account_mount(&entries), Some(("/var/run/secrets/kubernetes.io/serviceaccount".into(), 45)));
        let (entries, _) = parse(&line("/run/secrets/kubernetes.io/serviceaccount", "0:46", "tmpfs"));
        assert_eq!(service_account_mount(&entries).map(|(_, dev)| dev), Some(46));
        let (entries, _) = parse(&line("/var/run/secrets/other", "0:47", "tmpfs"));
        assert_eq!(service_account_mount(&entries), None);
    }

    #[test]
    fn automount_volume_names() {
        assert!(is_automount_volume("kube-api-access-x2v9k"));
        assert!(!is_automount_volume("kube-api-access-"));
        assert!(!is_automount_volume("istio-token"));
    }

    #[test]
    fn lists_cgroup1_hierarchies() {
        let (entries, _) = parse(
            "1 2 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             1 2 0:32 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             1 2 0:33 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
             1 2 0:31 /x /elsewhere rw - cgroup cgroup rw,memory\n\
             1 2 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        );
        let got = cgroup1_mounts(&entries);
        let points: Vec<&str> = got.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(points, vec!["/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/systemd"]);
        let proc_cgroup = "12:memory:/user.slice\n4:cpu,cpuacct:/\n1:name=systemd:/init.scope\n0::/init.scope\n";
        let ids: Vec<Option<u32>> = got.iter().map(|(_, o)| cgroup1_hierarchy_id(o, proc_cgroup)).collect();
        assert_eq!(ids, vec![Some(12), Some(4), Some(1)]);
        assert_eq!(cgroup1_hierarchy_id("rw,pids", proc_cgroup), None);
    }

    #[test]
    fn picks_the_cgroup2_root_mount() {
        let (entries, _) = parse(
            "1 2 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
             1 2 0:30 /kubepods /var/lib/x rw - cgroup2 cgroup2 rw\n\
             1 2 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        );
        assert_eq!(cgroup2_mount(&entries).as_deref(), Some("/sys/fs/cgroup/unified"));
        let (entries, _) = parse(
            "1 2 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n1 2 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        );
        assert_eq!(cgroup2_mount(&entries).as_deref(), Some("/sys/fs/cgroup"));
        assert_eq!(cgroup2_mount(&[]), None);
    }

    proptest::proptest! {
        #[test]
        fn no_line_panics(s in "\\PC{0,200}") {
            if let Ok(e) = parse_line(1, &s) {
                drop(pod_volume(&e, Path::new("/var/lib/kubelet")));
            }
        }

        #[test]
        fn mountinfo_shaped_lines_never_panic(
            dev in "[0-9a-z:]{0,8}", mp in "[/a-z~\\\\0-9-]{0,60}", tail in "[ -~]{0,30}"
        ) {
            drop(parse_line(1, &format!("1 2 {dev} / {mp} rw {tail}")));
        }
    }
}
