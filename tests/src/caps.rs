//! Running the agent with exactly the capabilities its DaemonSet grants (`deploy/agent.yaml`),
//! as a container runtime does for a root container with `drop: [ALL]` and a list to add.

use std::{io, os::unix::process::CommandExt as _, process::Command};

use serde::Deserialize as _;

/// The DaemonSet manifest, built in so the suite checks it inside VMs too.
const MANIFEST: &str = include_str!("../../deploy/agent.yaml");

/// Capability names as Kubernetes spells them (without `CAP_`), by number.
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// A set of capabilities, bit N for capability N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSet(pub u64);

impl CapSet {
    /// The set named by `names` (`BPF`, `CAP_BPF` or `bpf`).
    ///
    /// # Panics
    /// On a name it does not know.
    #[must_use]
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut bits = 0;
        for name in names {
            let upper = name.to_ascii_uppercase();
            let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
            let n = NAMES.iter().position(|&c| c == bare).unwrap_or_else(|| panic!("unknown capability {name:?}"));
            bits |= 1 << n;
        }
        Self(bits)
    }

    #[must_use]
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The names in the set, for messages.
    #[must_use]
    pub fn names(self) -> Vec<&'static str> {
        NAMES.iter().enumerate().filter(|(n, _)| self.0 & (1 << n) != 0).map(|(_, name)| *name).collect()
    }
}

/// What the agent container of the DaemonSet in `deploy/agent.yaml` asks for.
#[derive(Debug)]
pub struct AgentSecurity {
    /// `capabilities.add`.
    pub add: CapSet,
    /// `capabilities.drop` holds `ALL`.
    pub drops_all: bool,
    /// `privileged: true`.
    pub privileged: bool,
    /// `allowPrivilegeEscalation` is not false.
    pub escalation: bool,
}

/// Reads the agent container's security context from the manifest.
///
/// # Panics
/// When the manifest has no DaemonSet with an `agent` container.
#[must_use]
pub fn daemonset_security() -> AgentSecurity {
    let daemonset = serde_yaml::Deserializer::from_str(MANIFEST)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("deploy/agent.yaml: a YAML document"))
        .find(|doc| doc["kind"] == "DaemonSet")
        .expect("deploy/agent.yaml has a DaemonSet");
    let containers = daemonset["spec"]["template"]["spec"]["containers"].as_sequence().expect("containers");
    let agent = containers.iter().find(|c| c["name"] == "agent").expect("a container named agent");
    let context = &agent["securityContext"];
    let list = |key: &str| -> Vec<String> {
        context["capabilities"][key]
            .as_sequence()
            .map(|s| s.iter().map(|v| v.as_str().expect("a capability name").to_owned()).collect())
            .unwrap_or_default()
    };
    AgentSecurity {
        add: CapSet::from_names(list("add").iter().map(String::as_str)),
        drops_all: list("drop").iter().any(|c| c == "ALL"),
        privileged: context["privileged"].as_bool() == Some(true),
        escalation: context["allowPrivilegeEscalation"].as_bool() != Some(false),
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// Makes `cmd` exec with only `keep`, the way a runtime starts a root container: every other
/// capability leaves the bounding set, the inheritable and ambient sets are emptied of them and
/// `no_new_privs` is set. A root process's exec then permits exactly the bounding set.
pub fn restrict(cmd: &mut Command, keep: CapSet) {
    // SAFETY: the closure makes only system calls (async-signal-safe) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || apply(keep));
    }
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// prctl's unused arguments: the kernel checks them whole, so they are passed as full words.
const Z: libc::c_ulong = 0;
const ONE: libc::c_ulong = 1;

fn apply(keep: CapSet) -> io::Result<()> {
    for cap in 0..64_u64 {
        if keep.0 & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        if let Err(e) = check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, Z, Z, Z) }) {
            // Past the kernel's last capability.
            if e.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(e);
        }
    }
    // SAFETY: prctl with integer arguments.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::c_ulong::try_from(libc::PR_CAP_AMBIENT_CLEAR_ALL).unwrap_or_default(),
            Z,
            Z,
            Z,
        )
    })?;
    let mut header = CapHeader { version: CAP_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget/capset with a version-3 header and the two data words it takes.
    check(unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) }.try_into().unwrap_or(-1))?;
    let words = [u32::try_from(keep.0 & 0xffff_ffff).unwrap_or(0), u32::try_from(keep.0 >> 32).unwrap_or(0)];
    for (d, w) in data.iter_mut().zip(words) {
        d.inheritable &= w;
    }
    // SAFETY: as above.
    check(unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) }.try_into().unwrap_or(-1))?;
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, ONE, Z, Z, Z) })
}

/// A process's effective capabilities, from `/proc/<pid>/status`.
///
/// # Panics
/// When the process is gone or its status has no `CapEff`.
#[must_use]
pub fn effective(pid: u32) -> CapSet {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:")).expect("CapEff in /proc/<pid>/status").trim();
    CapSet(u64::from_str_radix(hex, 16).expect("CapEff is hex"))
}
