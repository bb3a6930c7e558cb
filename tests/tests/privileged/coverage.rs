//! What the agent could and could not see, asserted on the evidence the real agent produced:
//! containers recorded as they are created, the legacy automount volume told from look-alikes,
//! coverage stated per container, counts no container owns, losses across restarts, and
//! `verify`'s detector seeing clients that only look. Run once per file-open mode.

use std::{path::PathBuf, time::Duration};

use probe_agent::probe::{ConnectHook, FileHook};
use probe_tests::{
    actor::{Action, LookCall},
    agent::{TestAgent, dump, entry, has_entry},
    fake_node::{Driver, FakeNode, Qos, SA_DIR},
};
use tokio::runtime::Runtime;

pub const CASES: &[(&str, super::Case)] = &[
    ("a_container_living_milliseconds_is_recorded", a_container_living_milliseconds_is_recorded),
    ("changes_are_followed_by_events_not_rescans", changes_are_followed_by_events_not_rescans),
    ("legacy_secret_token_volume", legacy_secret_token_volume),
    ("a_token_the_agent_does_not_watch_is_uncovered", a_token_the_agent_does_not_watch_is_uncovered),
    ("host_and_unattributed_counts", host_and_unattributed_counts),
    ("losses_survive_restarts", losses_survive_restarts),
    ("clients_that_only_look_for_a_missing_token", clients_that_only_look_for_a_missing_token),
];

fn config(node: &FakeNode, file: FileHook, connect: ConnectHook) -> probe_agent::watch::WatchConfig {
    let mut config = node.watch_config();
    config.file_hook = file;
    config.connect_hook = connect;
    config
}

fn sa(file: &str) -> Action {
    Action::Open(PathBuf::from(SA_DIR).join(file))
}

/// An idle init container that lives a few milliseconds: scans every 30 s cannot find it; the
/// kernel's report of its cgroup does, and it was created after the agent watched its pod, so
/// it was observed from its start.
fn a_container_living_milliseconds_is_recorded(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    let vol = node.volume(&pod, "kube-api-access-f1a5h", true);
    let app = node.container(&pod, false);
    let mut config = config(&node, file, connect);
    config.rescan_interval = Duration::from_secs(30);
    let agent = TestAgent::start(rt, config).unwrap_or_else(|e| panic!("agent start: {e:#?}"));
    let _app = node.spawn(&app, &[(&vol, SA_DIR)]);
    assert!(agent.snapshot().agent.container_creation, "the created-cgroup program attached");
    let init = node.container(&pod, false);
    let lived = node.flash(&init);
    println!("# the init container lived {} ms", lived.as_millis());
    let ev = agent.wait_for("the init container's entry", Duration::from_secs(10), |ev| has_entry(ev, &init));
    let e = entry(&ev, &init);
    assert_eq!(e.observed_from_start, Some(true), "{}", dump(&ev));
    assert_eq!(e.reads.total() + e.api_connects, 0, "{}", dump(&ev));
    assert!(e.gone_since.is_some(), "{}", dump(&ev));
}

/// With whole-node rescans an hour apart, pods, volumes and containers are still followed as
/// they come and go — by the kernel's cgroup events and mount-table polling — and an idle node
/// is not rescanned at all.
fn changes_are_followed_by_events_not_rescans(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    let vol = node.volume(&pod, "kube-api-access-e1v3n", true);
    let app = node.container(&pod, false);
    let _app = node.spawn(&app, &[(&vol, SA_DIR)]);
    let mut config = config(&node, file, connect);
    config.rescan_interval = Duration::from_hours(1);
    let agent = TestAgent::start(rt, config).unwrap_or_else(|e| panic!("agent start: {e:#?}"));
    let ev = agent.snapshot();
    if !(ev.agent.container_creation && ev.agent.container_removal) {
        println!("# the kernel does not report cgroups made and removed: the agent rescans every 2 s instead");
        return;
    }
    let wait = |what: &str, ready: &dyn Fn(&probe_agent::watch::Metrics) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let m = agent.metrics();
            if ready(&m) {
                return m;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}: {m:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("the first container", &|m| m.containers == 1 && m.volumes == 1);
    // Changes made while the agent started (the container's own mounts) settle within a tick.
    std::thread::sleep(Duration::from_secs(3));
    let before = agent.metrics();
    std::thread::sleep(Duration::from_secs(5));
    let idle = agent.metrics();
    assert_eq!(idle.full_rescans, before.full_rescans, "an idle node is not rescanned: {idle:?}");

    let second = node.pod(Qos::BestEffort);
    let vol2 = node.volume(&second, "kube-api-access-s3c0n", true);
    let c2 = node.container(&second, false);
    let _c2 = node.spawn(&c2, &[(&vol2, SA_DIR)]);
    wait("the new pod's volume and container", &|m| m.containers == 2 && m.volumes == 2);
    let brief = node.container(&second, false);
    node.flash(&brief);
    let after = wait("the brief container gone", &|m| m.containers == 2);
    node.remove_volume(&vol2);
    wait("the unmounted volume", &|m| m.volumes == 1);
    let ev = agent.snapshot();
    let e = entry(&ev, &brief);
    assert!(e.gone_since.is_some() && e.observed_from_start == Some(true), "{}", dump(&ev));
    println!("# full rescans: {} at start, {} after the changes", before.full_rescans, after.full_rescans);
}

/// Clusters without bound tokens mount the ServiceAccount's token Secret at the
/// service-account path: its reads are the automount volume's, confirmed by the container's own
/// mount table. A Secret merely named like one (`ci-token-…`) mounted elsewhere is another
/// volume.
fn legacy_secret_token_volume(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    let legacy = node.secret_volume(&pod, "default-token-x7k2p");
    let lookalike = node.secret_volume(&pod, "ci-token-9q8w7");
    let c = node.container(&pod, false);
    let agent = TestAgent::start(rt, config(&node, file, connect)).unwrap_or_else(|e| panic!("agent start: {e:#?}"));
    let mut a = node.spawn(&c, &[(&legacy, SA_DIR), (&lookalike, "/etc/ci")]);
    agent.wait_for("the container's mount table read", Duration::from_secs(10), |ev| has_entry(ev, &c));
    a.ok(&sa("token"));
    a.ok(&sa("namespace"));
    a.ok(&Action::Open("/etc/ci/token".into()));
    let ev = agent.snapshot();
    let e = entry(&ev, &c);
    assert_eq!((e.reads.token, e.reads.namespace), (1, 1), "the legacy token is the automount volume: {}", dump(&ev));
    assert_eq!(e.other_volumes.len(), 1, "{}", dump(&ev));
    assert_eq!(e.other_volumes[0].name, "ci-token-9q8w7");
    assert_eq!(e.other_volumes[0].reads.token, 1);
    assert!(e.uncovered.is_empty(), "{}", dump(&ev));
}

/// A container whose token sits on a tmpfs the agent does not watch (the kubelet directory
/// elsewhere) says so; it can never be judged safe.
fn a_token_the_agent_does_not_watch_is_uncovered(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    node.pod_dir(&pod);
    let stray = node.stray_token_dir();
    let c = node.container(&pod, false);
    let agent = TestAgent::start(rt, config(&node, file, connect)).unwrap_or_else(|e| panic!("agent start: {e:#?}"));
    let mut a = probe_tests::actor::Actor::spawn(&probe_tests::actor::ActorSpec {
        cgroup: Some(c.cgroup_dir.clone()),
        mounts: vec![(stray, PathBuf::from(SA_DIR))],
        ..Default::default()
    });
    a.ok(&sa("token"));
    let ev = agent.wait_for("the container said uncovered", Duration::from_secs(10), |ev| {
        has_entry(ev, &c) && !entry(ev, &c).uncovered.is_empty()
    });
    let e = entry(&ev, &c);
    assert!(e.uncovered[0].contains("which is not watched"), "{}", dump(&ev));
    assert_eq!(e.reads.total(), 0, "its reads were not seen, as it says: {}", dump(&ev));
}

/// Counts of a host process (in no pod) are the host's; counts of a container-shaped cgroup of
/// a pod the agent does not watch are unattributed, and make the node's coverage partial.
fn host_and_unattributed_counts(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let (_api, api_addr) = super::connect::stand_in("127.0.0.1:0");
    let mut node = FakeNode::new(Driver::Systemd);
    let unwatched = node.pod(Qos::BestEffort);
    let c = node.container(&unwatched, false);
    let mut config = config(&node, file, connect);
    config.api_endpoints = vec![api_addr];
    let agent = TestAgent::start(rt, config).unwrap_or_else(|e| panic!("agent start: {e:#?}"));
    let mut host = node.spawn_host();
    host.ok(&Action::Connect(api_addr));
    let mut stranger = node.spawn(&c, &[]);
    stranger.ok(&Action::Connect(api_addr));
    stranger.ok(&Action::Connect(api_addr));
    let ev = agent.snapshot();
    assert!(ev.agent.host.api_connects >= 1, "{:#?}", ev.agent);
    assert_eq!(ev.agent.unattributed.api_connects, 2, "{:#?}", ev.agent);
    assert_eq!(ev.agent.unattributed.keys, 1, "{:#?}", ev.agent);
    assert!(ev.agent.unattributed.last_seen.is_some());
    assert!(!has_entry(&ev, &c), "the pod is not watched: no entry");
}

/// Losses are saved with the state: a restarted agent reports the earlier run's, with when.
fn losses_survive_restarts(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    let vol = node.volume(&pod, "kube-api-access-l055s", true);
    let first = node.container(&pod, false);
    let second = node.container(&pod, false);
    let mut config = config(&node, file, connect);
    config.counters_capacity = 1;
    config.state_dir = Some(node.root.join("state"));
    let agent = TestAgent::start(rt, config.clone()).unwrap_or_else(|e| panic!("agent start: {e:#?}"));
    let mut a = node.spawn(&first, &[(&vol, SA_DIR)]);
    let mut b = node.spawn(&second, &[(&vol, SA_DIR)]);
    a.ok(&sa("token"));
    b.ok(&sa("token"));
    let before = agent.stop();
    let lost = before.agent.losses.counter_map_full;
    assert_eq!(lost.count, 1, "{:#?}", before.agent.losses);
    assert!(lost.first.is_some() && lost.last.is_some());
    let agent = TestAgent::start(rt, config).unwrap_or_else(|e| panic!("agent restart: {e:#?}"));
    let after = agent.snapshot();
    assert_eq!(after.agent.losses.counter_map_full, lost, "the earlier run's loss, with its times");
    assert_eq!(after.agent.map_full, 1);
}

/// With `--detect-missing-token`, every path-taking lookup syscall of the default token path
/// that fails with `ENOENT` counts, one by one: clients that only look (Python's, Ruby's `stat`
/// before `open`) are seen.
fn clients_that_only_look_for_a_missing_token(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let tokenless = node.pod(Qos::Burstable);
    node.pod_dir(&tokenless);
    let c = node.container(&tokenless, false);
    let mut config = config(&node, file, connect);
    config.missing_token = true;
    let agent = TestAgent::start(rt, config).unwrap_or_else(|e| panic!("agent start: {e:#?}"));
    let ev = agent.snapshot();
    if !ev.agent.missing_token_detector {
        // Kernels whose perf_event_paranoid refuses it (asserted by the capability cases).
        println!("# missing-token detector refused here: {:?}", ev.agent.rejected_hooks);
        return;
    }
    let mut a = node.spawn_tokenless(&c);
    for (n, call) in LookCall::ALL.iter().enumerate() {
        assert_eq!(a.run(&Action::Look(*call, PathBuf::from(SA_DIR).join("token"))), Err(libc::ENOENT), "{call:?}");
        let ev = agent.snapshot();
        assert_eq!(entry(&ev, &c).missing_token_opens, n as u64 + 1, "{call:?} was not counted: {}", dump(&ev));
    }
    // Lookups of other missing paths do not count.
    assert_eq!(a.run(&Action::Look(LookCall::Stat, "/etc/tokenprobe-no-such-file".into())), Err(libc::ENOENT));
    assert_eq!(entry(&agent.snapshot(), &c).missing_token_opens, LookCall::ALL.len() as u64);
}
