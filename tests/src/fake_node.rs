//! A fake Kubernetes node on the real kernel: kubelet-layout projected volumes on tmpfs,
//! kubepods-shaped cgroup v2 groups, and actors as the containers' processes.
//!
//! Everything lives under a directory and a cgroup of its own and is removed on drop (actors
//! ended by their pid, mounts unmounted, cgroups removed).

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::actor::{Actor, ActorSpec};

/// Where kubelet puts the automount volume in a container.
pub const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The kubelet's cgroup driver, i.e. the shape of the pod cgroup paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Systemd,
    Cgroupfs,
}

/// Pod `QoS` class (decides the slice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    BestEffort,
    Burstable,
    Guaranteed,
}

#[derive(Debug, Clone)]
pub struct Pod {
    pub uid: String,
    pub qos: Qos,
}

#[derive(Debug, Clone)]
pub struct Volume {
    pub pod_uid: String,
    pub name: String,
    /// The mount point under the kubelet dir.
    pub dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Container {
    pub pod_uid: String,
    pub id: String,
    /// The cgroup v2 directory processes join (a nested one for crun-style containers).
    pub cgroup_dir: PathBuf,
    /// The container's own cgroup path relative to the cgroup v2 root.
    pub cgroup_path: String,
}

/// A fake node.
pub struct FakeNode {
    pub root: PathBuf,
    pub kubelet_dir: PathBuf,
    /// The host's cgroup v2 mount.
    pub cgroup_root: PathBuf,
    /// A named cgroup v1 hierarchy of this node's own (a cgroup v1 node), mounted here.
    pub cgroup_v1: Option<PathBuf>,
    cgroup_base: PathBuf,
    driver: Driver,
    mounts: Vec<PathBuf>,
    cgroups: Vec<PathBuf>,
    rotation: u32,
}

/// The cgroup v2 mount of this host (`/sys/fs/cgroup` or, on hybrid hosts, `/sys/fs/cgroup/unified`).
///
/// # Panics
/// When there is none.
#[must_use]
pub fn cgroup2_root() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let (entries, _) = probe_agent::mountinfo::parse(&text);
    PathBuf::from(probe_agent::mountinfo::cgroup2_mount(&entries).expect("this host has no cgroup v2 mount"))
}

fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len.div_ceil(2)];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .expect("read /dev/urandom");
    let hex: String = bytes.iter().fold(String::new(), |mut s, b| {
        use std::fmt::Write as _;
        write!(s, "{b:02x}").expect("write to a String");
        s
    });
    hex[..len].to_owned()
}

fn new_uid() -> String {
    let h = random_hex(32);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

impl FakeNode {
    /// A fresh fake node.
    ///
    /// # Panics
    /// When the directories or the base cgroup cannot be made (not root?).
    #[must_use]
    pub fn new(driver: Driver) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("tokenprobe-test-{}-{n}", std::process::id());
        let root = std::env::temp_dir().join(&tag);
        let kubelet_dir = root.join("kubelet");
        std::fs::create_dir_all(kubelet_dir.join("pods")).expect("create fake kubelet dir");
        let cgroup_root = cgroup2_root();
        let cgroup_base = cgroup_root.join(&tag);
        std::fs::create_dir(&cgroup_base).unwrap_or_else(|e| panic!("create {}: {e}", cgroup_base.display()));
        Self {
            root,
            kubelet_dir,
            cgroup_root,
            cgroup_v1: None,
            cgroup_base: cgroup_base.clone(),
            driver,
            mounts: Vec::new(),
            cgroups: vec![cgroup_base],
            rotation: 0,
        }
    }

    /// A node whose containers live in cgroup v1 (a named hierarchy of its own) and share
    /// their cgroup v2 group, as on cgroup v1 nodes: the agent must key them by mount namespace.
    ///
    /// # Panics
    /// When the hierarchy cannot be mounted.
    #[must_use]
    pub fn new_v1(driver: Driver) -> Self {
        let mut node = Self::new(driver);
        let mount_point = node.root.join("cgroup-v1");
        std::fs::create_dir_all(&mount_point).expect("create v1 mount point");
        let name = format!("name=tptest{}{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        mount(Some("cgroup"), &mount_point, Some("cgroup"), MsFlags::empty(), Some(format!("none,{name}").as_str()))
            .unwrap_or_else(|e| panic!("mount a named cgroup v1 hierarchy on {}: {e}", mount_point.display()));
        node.cgroup_base = mount_point.join("node");
        std::fs::create_dir(&node.cgroup_base).expect("create v1 base cgroup");
        node.cgroups.push(node.cgroup_base.clone());
        node.cgroup_v1 = Some(mount_point);
        node
    }

    /// A new pod (nothing mounted yet).
    #[must_use]
    pub fn pod(&self, qos: Qos) -> Pod {
        Pod { uid: new_uid(), qos }
    }

    /// A pod with a given UID (one created in an API server).
    #[must_use]
    pub fn pod_with_uid(&self, uid: &str, qos: Qos) -> Pod {
        Pod { uid: uid.to_owned(), qos }
    }

    /// The kubelet's directory of a pod, for a pod without a token volume (automount off).
    ///
    /// # Panics
    /// When it cannot be made.
    pub fn pod_dir(&self, pod: &Pod) {
        std::fs::create_dir_all(self.kubelet_dir.join("pods").join(&pod.uid).join("volumes")).expect("create pod dir");
    }

    /// Mounts a projected volume the way kubelet's atomic writer lays it out: a timestamped
    /// directory holding `token`, `ca.crt` and `namespace`, `..data` pointing at it, and
    /// top-level symlinks through `..data`. `with_token: false` makes a volume without a token.
    ///
    /// # Panics
    /// When mounting or writing fails.
    pub fn volume(&mut self, pod: &Pod, name: &str, with_token: bool) -> Volume {
        let dir = self.kubelet_dir.join("pods").join(&pod.uid).join("volumes/kubernetes.io~projected").join(name);
        std::fs::create_dir_all(&dir).expect("create volume dir");
        mount(Some("tmpfs"), &dir, Some("tmpfs"), MsFlags::empty(), Some("size=1m,mode=755"))
            .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", dir.display()));
        self.mounts.push(dir.clone());
        let files: &[&str] = if with_token { &["token", "ca.crt", "namespace"] } else { &["ca.crt", "namespace"] };
        self.write_generation(&dir, files);
        for f in files {
            std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).expect("symlink");
        }
        Volume { pod_uid: pod.uid.clone(), name: name.to_owned(), dir }
    }

    /// Mounts a Secret volume (`kubernetes.io~secret/<name>`, tmpfs) holding `token`,
    /// `ca.crt` and `namespace` in the atomic writer's layout: the ServiceAccount's token Secret
    /// as clusters without bound tokens mount it, or any Secret with a token.
    ///
    /// # Panics
    /// When mounting or writing fails.
    pub fn secret_volume(&mut self, pod: &Pod, name: &str) -> Volume {
        let dir = self.kubelet_dir.join("pods").join(&pod.uid).join("volumes/kubernetes.io~secret").join(name);
        std::fs::create_dir_all(&dir).expect("create volume dir");
        mount(Some("tmpfs"), &dir, Some("tmpfs"), MsFlags::empty(), Some("size=1m,mode=755"))
            .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", dir.display()));
        self.mounts.push(dir.clone());
        let files = ["token", "ca.crt", "namespace"];
        self.write_generation(&dir, &files);
        for f in files {
            std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).expect("symlink");
        }
        Volume { pod_uid: pod.uid.clone(), name: name.to_owned(), dir }
    }

    /// A tmpfs holding a token outside the kubelet directory (as when the kubelet's directory
    /// is not where the agent looks, e.g. behind a symlink).
    ///
    /// # Panics
    /// When mounting or writing fails.
    pub fn stray_token_dir(&mut self) -> PathBuf {
        let dir = self.root.join(format!("elsewhere-{}", random_hex(6)));
        std::fs::create_dir_all(&dir).expect("create dir");
        mount(Some("tmpfs"), &dir, Some("tmpfs"), MsFlags::empty(), Some("size=1m,mode=755"))
            .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", dir.display()));
        self.mounts.push(dir.clone());
        std::fs::write(dir.join("token"), "eyJhbGciOiJSUzI1NiJ9.stray.sig").expect("write token");
        dir
    }

    /// Runs `/bin/true` as the only process of `container` and removes the container's
    /// cgroups at once: a container that lives a few milliseconds, between two scans. Returns
    /// how long it existed.
    ///
    /// # Panics
    /// When the process cannot be started or the cgroups removed.
    pub fn flash(&mut self, container: &Container) -> std::time::Duration {
        use std::os::unix::process::CommandExt as _;
        let start = std::time::Instant::now();
        let procs =
            std::ffi::CString::new(container.cgroup_dir.join("cgroup.procs").into_os_string().into_encoded_bytes())
                .expect("path without NUL");
        let mut cmd = std::process::Command::new("/bin/true");
        // SAFETY: only async-signal-safe calls (open, write, close), no allocation, between
        // fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written == 1 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
            });
        }
        let status = cmd.status().expect("run /bin/true in the container");
        assert!(status.success(), "{status}");
        let mut dir = container.cgroup_dir.clone();
        loop {
            let mut removed = std::fs::remove_dir(&dir);
            for _ in 0..100 {
                if removed.is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
                removed = std::fs::remove_dir(&dir);
            }
            removed.unwrap_or_else(|e| panic!("remove cgroup {}: {e}", dir.display()));
            self.cgroups.retain(|c| c != &dir);
            let root = self.cgroup_v1.as_ref().unwrap_or(&self.cgroup_root);
            if dir.strip_prefix(root).is_ok_and(|rel| format!("/{}", rel.display()) == container.cgroup_path) {
                break;
            }
            dir.pop();
        }
        start.elapsed()
    }

    fn write_generation(&mut self, dir: &Path, files: &[&str]) -> String {
        self.rotation += 1;
        let ts = format!("..2026_11_28_12_00_{:02}.{:09}", self.rotation % 60, self.rotation);
        let gen_dir = dir.join(&ts);
        std::fs::create_dir(&gen_dir).expect("create generation dir");
        for f in files {
            let content = match *f {
                "token" => format!("eyJhbGciOiJSUzI1NiJ9.fake-token-{}.sig", self.rotation),
                "namespace" => "default".to_owned(),
                _ => "-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n".to_owned(),
            };
            std::fs::write(gen_dir.join(f), content).expect("write volume file");
        }
        let tmp = dir.join("..data_tmp");
        std::os::unix::fs::symlink(&ts, &tmp).expect("symlink ..data_tmp");
        std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
        ts
    }

    /// Rotates the token as kubelet does: a new timestamped directory, `..data` swapped
    /// atomically to it, the old one removed.
    ///
    /// # Panics
    /// When the volume's layout is not as [`FakeNode::volume`] made it.
    pub fn rotate(&mut self, volume: &Volume) {
        let old = std::fs::read_link(volume.dir.join("..data")).expect("read ..data");
        self.write_generation(&volume.dir, &["token", "ca.crt", "namespace"]);
        std::fs::remove_dir_all(volume.dir.join(old)).expect("remove old generation");
    }

    /// Unmounts a volume (the pod is gone).
    ///
    /// # Panics
    /// When unmounting fails.
    pub fn remove_volume(&mut self, volume: &Volume) {
        umount2(&volume.dir, MntFlags::MNT_DETACH).expect("unmount volume");
        self.mounts.retain(|m| m != &volume.dir);
    }

    /// Creates a container cgroup for `pod` in the node's driver layout. `nested` puts the
    /// processes in a sub-cgroup, as crun does.
    ///
    /// # Panics
    /// When the cgroup cannot be made.
    pub fn container(&mut self, pod: &Pod, nested: bool) -> Container {
        let id = random_hex(64);
        let uid_ = pod.uid.replace('-', "_");
        let rel: Vec<String> = match (self.driver, pod.qos) {
            (Driver::Systemd, Qos::Guaranteed) => {
                vec!["kubepods.slice".into(), format!("kubepods-pod{uid_}.slice"), format!("cri-containerd-{id}.scope")]
            }
            (Driver::Systemd, qos) => {
                let q = if qos == Qos::BestEffort { "besteffort" } else { "burstable" };
                vec![
                    "kubepods.slice".into(),
                    format!("kubepods-{q}.slice"),
                    format!("kubepods-{q}-pod{uid_}.slice"),
                    format!("cri-containerd-{id}.scope"),
                ]
            }
            (Driver::Cgroupfs, Qos::Guaranteed) => vec!["kubepods".into(), format!("pod{}", pod.uid), id.clone()],
            (Driver::Cgroupfs, qos) => {
                let q = if qos == Qos::BestEffort { "besteffort" } else { "burstable" };
                vec!["kubepods".into(), q.into(), format!("pod{}", pod.uid), id.clone()]
            }
        };
        let mut dir = self.cgroup_base.clone();
        for part in &rel {
            dir.push(part);
            if !dir.exists() {
                std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create cgroup {}: {e}", dir.display()));
                self.cgroups.push(dir.clone());
            }
        }
        let root = self.cgroup_v1.as_ref().unwrap_or(&self.cgroup_root);
        let cgroup_path = format!("/{}", dir.strip_prefix(root).expect("under root").display());
        if nested {
            dir.push("container");
            std::fs::create_dir(&dir).expect("create nested cgroup");
            self.cgroups.push(dir.clone());
        }
        Container { pod_uid: pod.uid.clone(), id, cgroup_dir: dir, cgroup_path }
    }

    /// Removes a container's cgroup (its processes must be gone): the container has exited.
    ///
    /// # Panics
    /// When the cgroup cannot be removed within a second.
    pub fn remove_container(&mut self, container: &Container) {
        let dir = &container.cgroup_dir;
        let mut result = std::fs::remove_dir(dir);
        for _ in 0..50 {
            if result.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            result = std::fs::remove_dir(dir);
        }
        result.unwrap_or_else(|e| panic!("remove cgroup {}: {e}", dir.display()));
        self.cgroups.retain(|c| c != dir);
    }

    /// Starts a process in `container` with `volumes` bind-mounted at the given paths in its own
    /// mount namespace.
    #[must_use]
    pub fn spawn(&self, container: &Container, volumes: &[(&Volume, &str)]) -> Actor {
        Actor::spawn(&ActorSpec {
            cgroup: Some(container.cgroup_dir.clone()),
            mounts: volumes.iter().map(|(v, at)| (v.dir.clone(), PathBuf::from(at))).collect(),
            ..ActorSpec::default()
        })
    }

    /// Starts a process that enters a running container from outside, as `kubectl exec` does:
    /// it joins the container's cgroup after its first process and enters that process's mount
    /// namespace.
    #[must_use]
    pub fn exec(&self, container: &Container, app: &Actor) -> Actor {
        Actor::spawn(&ActorSpec {
            cgroup: Some(container.cgroup_dir.clone()),
            enter_mount_ns_of: Some(app.pid()),
            ..ActorSpec::default()
        })
    }

    /// Starts a process in a container of a pod without a token volume (automount off): its
    /// own empty /run, so the default token paths do not exist.
    ///
    /// # Panics
    /// When the scratch directory cannot be made.
    #[must_use]
    pub fn spawn_tokenless(&self, container: &Container) -> Actor {
        let empty = self.root.join("empty-run");
        std::fs::create_dir_all(&empty).expect("create an empty directory");
        Actor::spawn(&ActorSpec {
            cgroup: Some(container.cgroup_dir.clone()),
            mounts: vec![(empty, PathBuf::from("/run/tokenprobe-empty"))],
            ..ActorSpec::default()
        })
    }

    /// Starts a host process (in no pod's cgroup, in the host mount namespace).
    #[must_use]
    pub fn spawn_host(&self) -> Actor {
        Actor::spawn(&ActorSpec::default())
    }

    /// The config a test agent uses for this node (mount table of this process, so the fake
    /// mounts are seen wherever the tests run).
    #[must_use]
    pub fn watch_config(&self) -> probe_agent::watch::WatchConfig {
        let mut config = probe_agent::watch::WatchConfig::new(self.kubelet_dir.clone());
        config.node_name = "fake-node".into();
        config.mountinfo = PathBuf::from("/proc/self/mountinfo");
        config.cgroup_root = Some(self.cgroup_root.clone());
        config.rescan_interval = std::time::Duration::from_millis(200);
        if let Some(v1) = &self.cgroup_v1 {
            config.container_key = probe_agent::watch::ContainerKeyMode::Mntns;
            config.cgroup_v1_root = Some(v1.clone());
        }
        config
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        for m in self.mounts.drain(..).rev() {
            if let Err(e) = umount2(&m, MntFlags::MNT_DETACH) {
                eprintln!("warning: cannot unmount {}: {e}", m.display());
            }
        }
        for c in self.cgroups.drain(..).rev() {
            // Actors are gone by now (they are dropped before the node); give the kernel a
            // moment to empty the cgroup.
            let mut result = std::fs::remove_dir(&c);
            for _ in 0..50 {
                if result.is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
                result = std::fs::remove_dir(&c);
            }
            if let Err(e) = result {
                eprintln!("warning: cannot remove cgroup {}: {e}", c.display());
            }
        }
        if let Some(v1) = self.cgroup_v1.take()
            && let Err(e) = umount2(&v1, MntFlags::MNT_DETACH)
        {
            eprintln!("warning: cannot unmount {}: {e}", v1.display());
        }
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            eprintln!("warning: cannot remove {}: {e}", self.root.display());
        }
    }
}
