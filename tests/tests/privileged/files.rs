//! File-open cases, run once per file-open mode.

use std::{path::PathBuf, time::Duration};

use probe_agent::{
    evidence::Reads,
    probe::{ConnectHook, FileHook},
};
use probe_tests::{
    actor::Action,
    agent::{TestAgent, dump, entry, has_entry},
    fake_node::{Driver, FakeNode, Qos, SA_DIR},
};
use tokio::runtime::Runtime;

pub const CASES: &[(&str, super::Case)] = &[
    ("token_reader_idle_container_and_other_opens", token_reader_idle_container_and_other_opens),
    ("ca_crt_and_namespace_reader", ca_crt_and_namespace_reader),
    ("token_rotation_mid_run", token_rotation_mid_run),
    ("every_path_to_the_token", every_path_to_the_token),
    ("o_path_and_failed_opens_not_counted", o_path_and_failed_opens_not_counted),
    ("pods_come_and_go", pods_come_and_go),
    ("other_token_volumes", other_token_volumes),
    ("cgroupfs_driver_and_nested_cgroups", cgroupfs_driver_and_nested_cgroups),
    ("full_counter_map_is_reported", full_counter_map_is_reported),
    ("io_uring_openat", io_uring_openat),
    ("small_and_large_descriptor_tables", small_and_large_descriptor_tables),
    ("exec_sessions_are_not_the_application", exec_sessions_are_not_the_application),
    ("mount_namespace_keys_on_a_cgroup_v1_node", mount_namespace_keys_on_a_cgroup_v1_node),
    ("missing_token_opens_are_counted", missing_token_opens_are_counted),
    ("with_only_the_daemonset_capabilities", super::cli::with_only_the_daemonset_capabilities),
];

fn start<'rt>(rt: &'rt Runtime, node: &FakeNode, file: FileHook, connect: ConnectHook) -> TestAgent<'rt> {
    let mut config = node.watch_config();
    config.file_hook = file;
    config.connect_hook = connect;
    TestAgent::start(rt, config).unwrap_or_else(|e| panic!("agent start: {e:#?}"))
}

/// Process start times have clock-tick resolution (10 ms) and are rounded down, so a process
/// started within a tick of the watch start counts, conservatively, as not observed from its
/// start. Tests that assert `observedFromStart: true` start their processes two ticks later.
fn settle() {
    std::thread::sleep(Duration::from_millis(25));
}

fn sa(file: &str) -> Action {
    Action::Open(PathBuf::from(SA_DIR).join(file))
}

fn token_reader_idle_container_and_other_opens(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let pod_a = node.pod(Qos::Burstable);
    let vol_a = node.volume(&pod_a, "kube-api-access-a1b2c", true);
    let reader = node.container(&pod_a, false);
    let other_files = node.container(&pod_a, false);
    let pod_b = node.pod(Qos::BestEffort);
    let vol_b = node.volume(&pod_b, "kube-api-access-d3e4f", true);
    let idle = node.container(&pod_b, false);
    let agent = start(rt, &node, file, connect);
    settle();

    let mut r = node.spawn(&reader, &[(&vol_a, SA_DIR)]);
    let _idle = node.spawn(&idle, &[(&vol_b, SA_DIR)]);
    let mut o = node.spawn(&other_files, &[(&vol_a, SA_DIR)]);
    let mut host = node.spawn_host();
    r.ok(&sa("token"));
    o.ok(&Action::Open("/etc/hostname".into()));
    o.ok(&Action::Open("/proc/self/status".into()));
    // A host process (not in any pod) reading a pod's token through the kubelet dir.
    host.ok(&Action::Open(vol_a.dir.join("token")));

    let ev = agent.snapshot();
    let e = entry(&ev, &reader);
    assert_eq!(e.reads, Reads { token: 1, ..Reads::default() }, "{}", dump(&ev));
    assert_eq!(e.pod_uid.as_deref(), Some(pod_a.uid.as_str()));
    assert_eq!(e.cgroup_path.as_deref(), Some(reader.cgroup_path.as_str()));
    assert_eq!(e.observed_from_start, Some(true), "started after the agent: {}", dump(&ev));
    assert!(e.first_seen.is_some() && e.last_seen.is_some());
    assert!(!e.processes.is_empty(), "the reader's name comes from the first-seen notice: {}", dump(&ev));
    assert_eq!(entry(&ev, &idle).reads, Reads::default());
    assert!(entry(&ev, &idle).first_seen.is_none());
    assert_eq!(entry(&ev, &other_files).reads, Reads::default(), "opens elsewhere are not counted");
    assert_eq!(ev.containers.len(), 3, "the host process is in no container: {}", dump(&ev));
    assert_eq!(ev.agent.hooks.file_open.as_deref(), Some(file_mode_name(file)));
}

fn file_mode_name(hook: FileHook) -> &'static str {
    match hook {
        FileHook::Lsm => "lsm",
        FileHook::Fentry => "fentry",
        FileHook::Kprobe => "kprobe",
        FileHook::Tracepoint | FileHook::Auto => "tracepoint",
    }
}

fn ca_crt_and_namespace_reader(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::BestEffort);
    let vol = node.volume(&pod, "kube-api-access-zz9yy", true);
    let c = node.container(&pod, false);
    let agent = start(rt, &node, file, connect);
    let mut a = node.spawn(&c, &[(&vol, SA_DIR)]);
    a.ok(&sa("ca.crt"));
    a.ok(&sa("namespace"));
    a.ok(&sa("namespace"));
    let ev = agent.snapshot();
    assert_eq!(entry(&ev, &c).reads, Reads { token: 0, ca_crt: 1, namespace: 2, other: 0 }, "{}", dump(&ev));
}

fn token_rotation_mid_run(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    let vol = node.volume(&pod, "kube-api-access-rot8t", true);
    let c = node.container(&pod, false);
    let agent = start(rt, &node, file, connect);
    let mut a = node.spawn(&c, &[(&vol, SA_DIR)]);
    a.ok(&sa("token"));
    node.rotate(&vol);
    a.ok(&sa("token"));
    node.rotate(&vol);
    a.ok(&sa("token"));
    // A file of the new generation opened by its real name counts as `token` too.
    let data = std::fs::read_link(vol.dir.join("..data")).expect("..data link");
    a.ok(&Action::Open(PathBuf::from(SA_DIR).join(data).join("token")));
    let ev = agent.snapshot();
    assert_eq!(entry(&ev, &c).reads.token, 4, "{}", dump(&ev));
    assert_eq!(ev.volumes.len(), 1, "rotation keeps the same volume: {}", dump(&ev));
}

fn every_path_to_the_token(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    let vol = node.volume(&pod, "kube-api-access-p4th5", true);
    let c = node.container(&pod, false);
    let agent = start(rt, &node, file, connect);
    let custom = "/run/tokenprobe-custom/sa";
    let mut a = node.spawn(&c, &[(&vol, SA_DIR), (&vol, custom)]);
    let actions = [
        sa("token"),
        Action::Open("/run/secrets/kubernetes.io/serviceaccount/token".into()),
        Action::OpenRelative { dir: SA_DIR.into(), name: "token".into() },
        Action::OpenAt { dir: SA_DIR.into(), name: "token".into() },
        Action::Open(PathBuf::from("/proc/self/root").join(SA_DIR.trim_start_matches('/')).join("token")),
        Action::OpenAt2(PathBuf::from(SA_DIR).join("token")),
        Action::Open(PathBuf::from(custom).join("token")),
    ];
    for action in &actions {
        a.ok(action);
    }
    let ev = agent.snapshot();
    let reads = entry(&ev, &c).reads;
    assert_eq!(reads, Reads { token: actions.len() as u64, ..Reads::default() }, "{}", dump(&ev));
}

fn o_path_and_failed_opens_not_counted(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    let vol = node.volume(&pod, "kube-api-access-0p4th", true);
    let c = node.container(&pod, false);
    let agent = start(rt, &node, file, connect);
    let mut a = node.spawn(&c, &[(&vol, SA_DIR)]);
    a.ok(&Action::OpenPath(PathBuf::from(SA_DIR).join("token")));
    a.ok(&Action::OpenPath(SA_DIR.into()));
    assert_eq!(a.run(&sa("no-such-file")), Err(libc::ENOENT));
    assert_eq!(a.run(&Action::OpenAt2(PathBuf::from(SA_DIR).join("missing"))), Err(libc::ENOENT));
    // Listing the directory is not a read of its files.
    a.ok(&Action::Open(SA_DIR.into()));
    let ev = agent.snapshot();
    assert_eq!(entry(&ev, &c).reads, Reads::default(), "{}", dump(&ev));
    // And the same container is counted once it really reads.
    a.ok(&sa("token"));
    let ev = agent.snapshot();
    assert_eq!(entry(&ev, &c).reads.token, 1, "{}", dump(&ev));
}

fn pods_come_and_go(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    // A pod whose container runs before the agent starts: watched, but not from its start.
    let early_pod = node.pod(Qos::BestEffort);
    let early_vol = node.volume(&early_pod, "kube-api-access-e4rly", true);
    let early = node.container(&early_pod, false);
    let _early_actor = node.spawn(&early, &[(&early_vol, SA_DIR)]);
    settle();
    let agent = start(rt, &node, file, connect);

    let pod = node.pod(Qos::Burstable);
    let vol = node.volume(&pod, "kube-api-access-l4te1", true);
    agent.wait_for("the new volume", Duration::from_secs(5), |ev| ev.volumes.iter().any(|v| v.pod_uid == pod.uid));
    let c = node.container(&pod, false);
    settle();
    let mut a = node.spawn(&c, &[(&vol, SA_DIR)]);
    a.ok(&sa("token"));
    let ev = agent.wait_for("the new container", Duration::from_secs(5), |ev| has_entry(ev, &c));
    let e = entry(&ev, &c);
    assert_eq!(e.reads.token, 1, "{}", dump(&ev));
    assert_eq!(e.observed_from_start, Some(true), "{}", dump(&ev));
    assert_eq!(entry(&ev, &early).observed_from_start, Some(false), "{}", dump(&ev));

    // The pod goes: its volume is unmounted, its container ends; the evidence keeps both.
    drop(a);
    node.remove_volume(&vol);
    let ev = agent.wait_for("the volume to go", Duration::from_secs(5), |ev| {
        ev.volumes.iter().any(|v| v.pod_uid == pod.uid && !v.mounted)
    });
    assert_eq!(entry(&ev, &c).reads.token, 1);
}

fn other_token_volumes(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    let auto = node.volume(&pod, "kube-api-access-4ut0m", true);
    let istio = node.volume(&pod, "istio-token", true);
    let _config = node.volume(&pod, "config-bundle", false);
    let c = node.container(&pod, false);
    let agent = start(rt, &node, file, connect);
    let mut a = node.spawn(&c, &[(&auto, SA_DIR), (&istio, "/var/run/secrets/tokens")]);
    a.ok(&Action::Open("/var/run/secrets/tokens/token".into()));
    a.ok(&Action::Open("/var/run/secrets/tokens/token".into()));
    a.ok(&sa("ca.crt"));
    let ev = agent.snapshot();
    let e = entry(&ev, &c);
    assert_eq!(e.reads, Reads { ca_crt: 1, ..Reads::default() }, "automount volume only: {}", dump(&ev));
    assert_eq!(e.other_volumes.len(), 1, "{}", dump(&ev));
    assert_eq!(e.other_volumes[0].name, "istio-token");
    assert_eq!(e.other_volumes[0].reads.token, 2);
    let mut watched: Vec<&str> = ev.volumes.iter().map(|v| v.name.as_str()).collect();
    watched.sort_unstable();
    assert_eq!(watched, vec!["istio-token", "kube-api-access-4ut0m"], "a volume without a token is not watched");
}

fn cgroupfs_driver_and_nested_cgroups(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Cgroupfs);
    let pod = node.pod(Qos::Guaranteed);
    let vol = node.volume(&pod, "kube-api-access-cgfs0", true);
    let c = node.container(&pod, true);
    let agent = start(rt, &node, file, connect);
    let mut a = node.spawn(&c, &[(&vol, SA_DIR)]);
    a.ok(&sa("token"));
    let ev = agent.snapshot();
    let e = entry(&ev, &c);
    assert_eq!(e.reads.token, 1, "{}", dump(&ev));
    assert_eq!(e.cgroup_path.as_deref(), Some(c.cgroup_path.as_str()), "nested cgroups roll up");
    assert_eq!(e.pod_uid.as_deref(), Some(pod.uid.as_str()));
}

fn full_counter_map_is_reported(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    let vol = node.volume(&pod, "kube-api-access-fu11m", true);
    let first = node.container(&pod, false);
    let second = node.container(&pod, false);
    let mut config = node.watch_config();
    config.file_hook = file;
    config.connect_hook = connect;
    // Room for one counter: the first container's token reads.
    config.counters_capacity = 1;
    let agent = TestAgent::start(rt, config).unwrap_or_else(|e| panic!("agent start: {e:#?}"));
    let mut a = node.spawn(&first, &[(&vol, SA_DIR)]);
    let mut b = node.spawn(&second, &[(&vol, SA_DIR)]);
    a.ok(&sa("token"));
    a.ok(&sa("token"));
    b.ok(&sa("token"));
    b.ok(&sa("ca.crt"));
    let ev = agent.snapshot();
    assert_eq!(entry(&ev, &first).reads.token, 2, "{}", dump(&ev));
    assert_eq!(entry(&ev, &second).reads.total(), 0, "no room: {}", dump(&ev));
    assert_eq!(ev.agent.map_full, 2, "both lost events are reported: {}", dump(&ev));
}

/// `IORING_OP_OPENAT` opens without an open syscall: the LSM, fentry and kprobe hooks see it
/// (they sit in the kernel's open path), the syscall tracepoints cannot — the documented gap of
/// the tracepoint mode, asserted here so the documentation stays true.
fn io_uring_openat(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    let vol = node.volume(&pod, "kube-api-access-10ur1", true);
    let c = node.container(&pod, false);
    let agent = start(rt, &node, file, connect);
    let mut a = node.spawn(&c, &[(&vol, SA_DIR)]);
    match a.run(&Action::OpenIoUring(PathBuf::from(SA_DIR).join("token"))) {
        Ok(()) => {}
        Err(errno) if errno == libc::ENOSYS || errno == libc::EPERM => {
            // io_uring disabled on this kernel (kernel.io_uring_disabled): nothing to observe.
            println!(
                "    (io_uring unavailable here: {}; case has nothing to check)",
                std::io::Error::from_raw_os_error(errno)
            );
            return;
        }
        Err(errno) => panic!("io_uring openat failed: {}", std::io::Error::from_raw_os_error(errno)),
    }
    a.ok(&sa("namespace"));
    let ev = agent.snapshot();
    let reads = entry(&ev, &c).reads;
    assert_eq!(reads.namespace, 1, "positive control: {}", dump(&ev));
    let expected = u64::from(file != FileHook::Tracepoint);
    assert_eq!(reads.token, expected, "io_uring open in {file:?} mode: {}", dump(&ev));
}

/// The tracepoint mode finds the opened file by descriptor in two ways — typed loads from the
/// table embedded in `files_struct` (descriptors below 64 of a table that never grew) and probe
/// reads from a grown table — and both must count; so must every other mode.
fn small_and_large_descriptor_tables(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    let vol = node.volume(&pod, "kube-api-access-fdt64", true);
    let c = node.container(&pod, false);
    let agent = start(rt, &node, file, connect);
    let mut a = node.spawn(&c, &[(&vol, SA_DIR)]);
    a.ok(&Action::OpenFromSmallTable(PathBuf::from(SA_DIR).join("token")));
    assert_eq!(entry(&agent.snapshot(), &c).reads.token, 1, "the open from a small table");
    a.ok(&Action::OpenFromLargeTable(PathBuf::from(SA_DIR).join("token")));
    a.ok(&Action::OpenFromSmallTable(PathBuf::from(SA_DIR).join("ca.crt")));
    a.ok(&Action::OpenFromLargeTable(PathBuf::from(SA_DIR).join("namespace")));
    a.ok(&Action::OpenFromSmallTable("/etc/hostname".into()));
    let ev = agent.snapshot();
    assert_eq!(entry(&ev, &c).reads, Reads { token: 2, ca_crt: 1, namespace: 1, ..Reads::default() }, "{}", dump(&ev));
}

/// `kubectl exec`: a process joins a running container's cgroup and mount namespace from
/// outside; it and its children count as `execReads`, not as the application's reads. The
/// container runs before the agent starts (its cgroup is marked populated by the first scan).
fn exec_sessions_are_not_the_application(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let (_api, api) = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = l.local_addr().expect("addr");
        (l, a)
    };
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    let vol = node.volume(&pod, "kube-api-access-3x3c0", true);
    let c = node.container(&pod, false);
    let mut app = node.spawn(&c, &[(&vol, SA_DIR)]);
    let mut config = node.watch_config();
    config.file_hook = file;
    config.connect_hook = connect;
    config.api_endpoints = vec![api];
    let agent = TestAgent::start(rt, config).unwrap_or_else(|e| panic!("agent start: {e:#?}"));
    app.ok(&sa("token"));
    let mut exec = node.exec(&c, &app);
    exec.ok(&sa("token"));
    exec.ok(&sa("namespace"));
    exec.ok(&Action::ForkOpen(PathBuf::from(SA_DIR).join("token")));
    exec.ok(&Action::Connect(api));
    app.ok(&sa("ca.crt"));
    let ev = agent.snapshot();
    assert!(ev.agent.exec_tracking, "exec tracking attached: {}", dump(&ev));
    let e = entry(&ev, &c);
    assert_eq!(e.reads, Reads { token: 1, ca_crt: 1, ..Reads::default() }, "the application's own: {}", dump(&ev));
    assert_eq!(
        e.exec_reads,
        Reads { token: 2, namespace: 1, ..Reads::default() },
        "the session and its child: {}",
        dump(&ev)
    );
    assert_eq!((e.api_connects, e.exec_api_connects), (0, 1), "{}", dump(&ev));
    assert!(!e.exec_processes.is_empty(), "{}", dump(&ev));
}

/// On cgroup v1 nodes (or hybrid nodes with the cgroupfs driver) containers share one cgroup
/// v2 group; the agent keys them by mount namespace and finds them in a v1 hierarchy.
fn mount_namespace_keys_on_a_cgroup_v1_node(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new_v1(Driver::Cgroupfs);
    let pod = node.pod(Qos::Burstable);
    let vol = node.volume(&pod, "kube-api-access-v1mnt", true);
    let reader = node.container(&pod, false);
    let idle = node.container(&pod, false);
    let mut r = node.spawn(&reader, &[(&vol, SA_DIR)]);
    let _i = node.spawn(&idle, &[(&vol, SA_DIR)]);
    let agent = start(rt, &node, file, connect);
    r.ok(&sa("token"));
    r.ok(&sa("token"));
    let mut exec = node.exec(&reader, &r);
    exec.ok(&sa("token"));
    let ev = agent.snapshot();
    assert_eq!(ev.agent.container_key, probe_agent::evidence::KeyKind::MountNs, "{}", dump(&ev));
    let e = entry(&ev, &reader);
    assert_eq!(e.key.kind, probe_agent::evidence::KeyKind::MountNs);
    assert_eq!(e.reads.token, 2, "{}", dump(&ev));
    assert_eq!(e.exec_reads.token, 1, "exec sessions are told apart on v1 hierarchies too: {}", dump(&ev));
    assert_eq!(entry(&ev, &idle).reads.total(), 0);
}

/// After automount was turned off, a container that still tries the default token paths fails
/// with ENOENT; with `--detect-missing-token` those attempts are counted, nothing else is.
fn missing_token_opens_are_counted(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let tokenless = node.pod(Qos::Burstable);
    node.pod_dir(&tokenless);
    let c = node.container(&tokenless, false);
    let mut config = node.watch_config();
    config.file_hook = file;
    config.connect_hook = connect;
    config.missing_token = true;
    let agent = TestAgent::start(rt, config).unwrap_or_else(|e| panic!("agent start: {e:#?}"));
    let mut a = node.spawn_tokenless(&c);
    assert_eq!(a.run(&sa("token")), Err(libc::ENOENT));
    assert_eq!(a.run(&Action::Open("/run/secrets/kubernetes.io/serviceaccount/ca.crt".into())), Err(libc::ENOENT));
    assert_eq!(a.run(&Action::Open("/etc/tokenprobe-no-such-file".into())), Err(libc::ENOENT));
    let ev = agent.snapshot();
    assert!(ev.agent.missing_token_detector, "{}", dump(&ev));
    let e = entry(&ev, &c);
    assert_eq!(e.missing_token_opens, 2, "{}", dump(&ev));
    assert_eq!(e.reads.total(), 0);
    assert!(e.observed_since.is_some(), "a pod without a token volume is watched from its directory");
}
