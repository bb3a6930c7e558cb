//! API-connect cases, run once per connect mode.

use std::net::{SocketAddr, TcpListener};

use probe_agent::probe::{ConnectHook, FileHook};
use probe_tests::{
    actor::Action,
    agent::{TestAgent, dump, entry},
    fake_node::{Driver, FakeNode, Qos, SA_DIR},
};
use tokio::runtime::Runtime;

pub const CASES: &[(&str, super::Case)] = &[
    ("api_connects_v4_v6_mapped_and_other_port", api_connects),
    ("with_only_the_daemonset_capabilities", super::cli::with_only_the_daemonset_capabilities),
];

/// A stand-in API server: a listener on loopback that accepts and drops connections.
pub fn stand_in(addr: &str) -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let local = listener.local_addr().expect("local addr");
    (listener, local)
}

fn api_connects(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let (_l4, api4) = stand_in("127.0.0.1:0");
    let (_l6, api6) = stand_in(&format!("[::1]:{}", api4.port()));
    let (_lo, other) = stand_in("127.0.0.1:0");
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    let vol = node.volume(&pod, "kube-api-access-c0nn3", true);
    let client = node.container(&pod, false);
    let quiet = node.container(&pod, false);
    let mut config = node.watch_config();
    config.file_hook = file;
    config.connect_hook = connect;
    config.api_endpoints = vec![api4, api6];
    let agent = TestAgent::start(rt, config).unwrap_or_else(|e| panic!("agent start: {e:#?}"));

    let mut a = node.spawn(&client, &[(&vol, SA_DIR)]);
    let _q = node.spawn(&quiet, &[(&vol, SA_DIR)]);
    let mut host = node.spawn_host();
    a.ok(&Action::Connect(api4));
    a.ok(&Action::Connect(api6));
    a.ok(&Action::ConnectMapped(api4));
    a.ok(&Action::Connect(other));
    host.ok(&Action::Connect(api4));

    let ev = agent.snapshot();
    assert_eq!(entry(&ev, &client).api_connects, 3, "v4, v6 and v4-mapped; not the other port: {}", dump(&ev));
    assert_eq!(entry(&ev, &quiet).api_connects, 0);
    assert_eq!(ev.containers.len(), 2, "{}", dump(&ev));
    assert_eq!(entry(&ev, &client).reads.total(), 0);
}
