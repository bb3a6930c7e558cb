//! Unit tests of the node model and evidence assembly.

use std::collections::HashMap;

use probe_common::counters::{CountKey, CountValue, kind, session};

use super::*;
use crate::{
    cgroup::ContainerCgroup,
    clock::Clock,
    evidence::{Reads, Workload},
    k8s::podinfo::{ContainerMeta, PodInfo},
};

const POD: &str = "0f4a3c2e-1b2d-4c5e-8f90-123456789abc";
const OTHER_POD: &str = "1f4a3c2e-1b2d-4c5e-8f90-123456789abc";

fn mount(pod: &str, name: &str, dev: u32) -> PodMount {
    PodMount {
        pod_uid: pod.into(),
        volume: name.into(),
        plugin: crate::mountinfo::Plugin::Projected,
        mount_point: format!("/k/pods/{pod}/volumes/kubernetes.io~projected/{name}"),
        dev,
    }
}

fn found(pod: &str, cid: &str, id: u64, nested: &str) -> FoundCgroup {
    let path = format!("/kubepods/pod{pod}/{cid}");
    FoundCgroup {
        id,
        path: format!("{path}{nested}"),
        container: ContainerCgroup {
            pod_uid: pod.into(),
            container_id: cid.into(),
            runtime: None,
            container_path: path,
        },
    }
}

fn key(cgroup: u64, target: u32, kind: u32, session: u32) -> CountKey {
    CountKey { key_kind: probe_common::config::key_kind::CGROUP, session, key_id: cgroup, target, kind }
}

fn value(count: u64, first: u64, last: u64) -> CountValue {
    CountValue { count, first_ns: first, last_ns: last }
}

#[test]
fn mounts_come_and_go() {
    let mut node = Node::new(10, KeyKind::Cgroup);
    let c = node.sync_mounts(
        &[mount(POD, "kube-api-access-a", 5), mount(POD, "istio-token", 6), mount(POD, "config", 7)],
        |m| m.volume != "config",
        100,
    );
    // Sorted by mount point: istio-token (dev 6) before kube-api-access-a (dev 5); config
    // holds no token and is not watched.
    assert_eq!(c.added, vec![(6, 1), (5, 2)]);
    assert!(c.removed.is_empty());
    // Same mounts again: nothing changes.
    let c = node.sync_mounts(&[mount(POD, "kube-api-access-a", 5), mount(POD, "istio-token", 6)], |_| true, 200);
    assert_eq!(c, MountChanges::default());
    // The pod goes away; its volumes stay known for the evidence, unmounted.
    let c = node.sync_mounts(&[], |_| true, 300);
    assert_eq!(c.removed.len(), 2);
    assert!(node.volumes().all(|v| !v.mounted));
    // A new tmpfs reusing device 5 is a new volume with a new id.
    let c = node.sync_mounts(&[mount(OTHER_POD, "kube-api-access-b", 5)], |_| true, 400);
    assert_eq!(c.added, vec![(5, 3)]);
}

#[test]
fn evidence_attributes_counts_to_containers() {
    let mut node = Node::new(50, KeyKind::Cgroup);
    node.sync_mounts(&[mount(POD, "kube-api-access-a", 5), mount(POD, "istio-token", 6)], |_| true, 100);
    // Volumes sorted by mount point: istio-token gets id 1, kube-api-access-a id 2.
    let automount = node.volumes().find(|v| v.automount).unwrap().id;
    let istio = node.volumes().find(|v| !v.automount).unwrap().id;
    let gone = node.sync_cgroups(
        &[
            found(POD, "aaaa", 1000, ""),
            found(POD, "aaaa", 1001, "/nested"),
            found(POD, "bbbb", 2000, ""),
            found(OTHER_POD, "cccc", 3000, ""),
        ],
        100,
        |path: &str, _| Inspection {
            oldest_start: Some(if path.ends_with("aaaa") { 150 } else { 20 }),
            ..Inspection::default()
        },
    );
    assert!(gone.is_empty());
    let counters: HashMap<CountKey, CountValue> = [
        (key(1000, automount, kind::READ_TOKEN, session::APP), value(2, 200, 300)),
        (key(1001, automount, kind::READ_TOKEN, session::APP), value(1, 250, 400)),
        (key(1000, automount, kind::READ_CA_CRT, session::EXEC), value(1, 260, 260)),
        (key(1000, istio, kind::READ_TOKEN, session::APP), value(5, 210, 210)),
        (key(1000, 9, kind::API_CONNECT, session::APP), value(3, 220, 220)),
        (key(3000, automount, kind::READ_TOKEN, session::APP), value(9, 1, 1)),
        (key(4000, automount, kind::READ_TOKEN, session::APP), value(9, 1, 1)),
    ]
    .into_iter()
    .collect();
    let clock = Clock::with_offset(0);
    let ev = node.container_evidence(&counters, &clock, &HashMap::new());
    assert_eq!(ev.len(), 2, "only containers of watched pods: {ev:#?}");
    let a = ev.iter().find(|e| e.container_id.as_deref() == Some("aaaa")).unwrap();
    assert_eq!(a.reads, Reads { token: 3, ..Reads::default() });
    assert_eq!(a.exec_reads, Reads { ca_crt: 1, ..Reads::default() });
    assert_eq!(a.api_connects, 3);
    assert_eq!(a.other_volumes.len(), 1);
    assert_eq!(a.other_volumes[0].name, "istio-token");
    assert_eq!(a.other_volumes[0].reads.token, 5);
    assert_eq!(a.first_seen, Some(clock.wall(200)));
    assert_eq!(a.last_seen, Some(clock.wall(400)));
    assert_eq!(a.observed_since, Some(clock.wall(100)));
    assert_eq!(a.observed_from_start, Some(true));
    let b = ev.iter().find(|e| e.container_id.as_deref() == Some("bbbb")).unwrap();
    assert_eq!(b.reads, Reads::default(), "idle container is present with zeros");
    assert_eq!(b.first_seen, None);
    assert_eq!(b.observed_from_start, Some(false), "started before the volume was watched");
}

#[test]
fn gone_containers_are_reported_once() {
    let mut node = Node::new(0, KeyKind::Cgroup);
    node.sync_mounts(&[mount(POD, "kube-api-access-a", 5)], |_| true, 0);
    node.sync_cgroups(&[found(POD, "aaaa", 1000, ""), found(POD, "aaaa", 1001, "/n")], 1, |_, _| Inspection::default());
    let gone = node.sync_cgroups(&[], 2, |_, _| Inspection::default());
    assert_eq!(gone, vec![(POD.to_owned(), "aaaa".to_owned())]);
    let c = node.container(&gone[0]).unwrap();
    assert_eq!(node.keys(c).iter().copied().collect::<Vec<_>>(), vec![1000, 1001]);
    assert!(node.sync_cgroups(&[], 3, |_, _| Inspection::default()).is_empty());
    assert_eq!(node.containers().next().unwrap().gone_since, Some(2));
    assert_eq!(node.containers().count(), 1, "kept for the evidence");
}

#[test]
fn process_names_are_capped() {
    let mut node = Node::new(0, KeyKind::Cgroup);
    node.sync_mounts(&[mount(POD, "kube-api-access-a", 5)], |_| true, 0);
    node.sync_cgroups(&[found(POD, "aaaa", 1000, "")], 1, |_, _| Inspection::default());
    for i in 0..100 {
        node.note_process(1000, &format!("p{i}"), false);
    }
    node.note_process(1000, "kubectl-exec", true);
    node.note_process(99, "unknown", false);
    let c = node.containers().next().unwrap();
    assert_eq!(c.processes.len(), MAX_PROCESSES);
    assert_eq!(c.exec_processes.iter().collect::<Vec<_>>(), vec!["kubectl-exec"]);
}

#[test]
fn pod_metadata_enriches_and_sandboxes_are_left_out() {
    let mut node = Node::new(50, KeyKind::Cgroup);
    node.sync_mounts(&[mount(POD, "kube-api-access-a", 5), mount(POD, "kube-api-access-b", 6)], |_| true, 100);
    node.sync_cgroups(&[found(POD, "aaaa", 1000, ""), found(POD, "pause", 1001, "")], 100, |_, _| {
        Inspection::default()
    });
    let started = Clock::with_offset(0).wall(200);
    let pods: HashMap<String, PodInfo> = [(
        POD.to_owned(),
        PodInfo {
            uid: POD.into(),
            namespace: "shop".into(),
            name: "web-1".into(),
            service_account: Some("web".into()),
            workload: Some(Workload { kind: "Deployment".into(), name: "web".into() }),
            revision: Some("7d9f".into()),
            phase: Some("Running".into()),
            containers: [(
                "aaaa".to_owned(),
                ContainerMeta { name: "app".into(), started_at: Some(started), previous_id: None },
            )]
            .into(),
            // The spec says the automount volume is `b`; `a` only looks like one.
            automount_volume: Some("kube-api-access-b".into()),
            other_token_volumes: Vec::new(),
            runtime_class: None,
        },
    )]
    .into();
    let a = node.volumes().find(|v| v.name == "kube-api-access-a").unwrap().id;
    let b = node.volumes().find(|v| v.name == "kube-api-access-b").unwrap().id;
    let counters: HashMap<CountKey, CountValue> = [
        (key(1000, a, kind::READ_TOKEN, session::APP), value(1, 300, 300)),
        (key(1000, b, kind::READ_TOKEN, session::APP), value(2, 300, 300)),
    ]
    .into();
    let ev = node.container_evidence(&counters, &Clock::with_offset(0), &pods);
    assert_eq!(ev.len(), 1, "the pause container is not reported: {ev:#?}");
    let e = &ev[0];
    assert_eq!(e.namespace.as_deref(), Some("shop"));
    assert_eq!(e.container.as_deref(), Some("app"));
    assert_eq!(e.service_account.as_deref(), Some("web"));
    assert_eq!(e.reads.token, 2, "only the spec's automount volume counts as automount");
    assert_eq!(e.other_volumes[0].name, "kube-api-access-a");
    // No process inspected: startedAt (200) after the volume was watched (100) decides.
    assert_eq!(e.observed_from_start, Some(true));
}

#[test]
fn mount_namespace_keys() {
    let mut node = Node::new(0, KeyKind::MountNs);
    node.sync_mounts(&[mount(POD, "kube-api-access-a", 5)], |_| true, 0);
    node.sync_cgroups(&[found(POD, "aaaa", 1000, "")], 1, |_, _| Inspection {
        oldest_start: Some(5),
        mnt_ns: vec![4_026_532_001],
        ..Inspection::default()
    });
    assert!(node.knows_key(4_026_532_001));
    assert!(!node.knows_key(1000), "cgroup ids are not keys on a mount-namespace node");
    let auto = node.volumes().next().unwrap().id;
    let mut k = key(4_026_532_001, auto, kind::READ_TOKEN, session::APP);
    k.key_kind = probe_common::config::key_kind::MOUNT_NS;
    let counters: HashMap<CountKey, CountValue> = [(k, value(3, 10, 20))].into();
    let ev = node.container_evidence(&counters, &Clock::with_offset(0), &HashMap::new());
    assert_eq!(ev[0].reads.token, 3);
    assert_eq!(ev[0].key.kind, KeyKind::MountNs);
    assert_eq!(ev[0].key.id, 4_026_532_001);
}

#[test]
fn a_reused_mount_namespace_is_flagged_and_a_freed_one_is_not() {
    let mut node = Node::new(0, KeyKind::MountNs);
    node.sync_mounts(&[mount(POD, "kube-api-access-a", 5)], |_| true, 0);
    let ns_of =
        |n: u64| move |_: &str, _: bool| Inspection { oldest_start: Some(5), mnt_ns: vec![n], ..Inspection::default() };
    node.sync_cgroups(&[found(POD, "aaaa", 1000, "")], 1, ns_of(4_026_532_001));
    // aaaa ends; bbbb later gets the freed inode: a new container, no conflict.
    node.sync_cgroups(&[], 2, ns_of(0));
    node.sync_cgroups(&[found(POD, "bbbb", 2000, "")], 3, ns_of(4_026_532_001));
    let flagged = |node: &Node, id: &str| node.containers().find(|c| c.container_id == id).unwrap().mnt_ns_conflict;
    assert!(!flagged(&node, "aaaa") && !flagged(&node, "bbbb"));
    // cccc claims the inode while bbbb still holds it: both are flagged, and say so.
    node.sync_cgroups(&[found(POD, "bbbb", 2000, ""), found(POD, "cccc", 3000, "")], 4, ns_of(4_026_532_001));
    assert!(flagged(&node, "bbbb") && flagged(&node, "cccc"));
    let ev = node.container_evidence(&HashMap::new(), &Clock::with_offset(0), &HashMap::new());
    let cccc = ev.iter().find(|e| e.container_id.as_deref() == Some("cccc")).unwrap();
    assert!(cccc.uncovered.iter().any(|u| u.contains("also another container's")), "{cccc:#?}");
}

#[test]
fn a_container_reported_created_exists_before_any_scan() {
    let mut node = Node::new(10, KeyKind::Cgroup);
    let f = found(POD, "aaaa", 1000, "");
    assert!(!node.record_created(&f, 50), "its pod is not watched yet");
    node.sync_mounts(&[mount(POD, "kube-api-access-a", 5)], |_| true, 20);
    assert!(node.record_created(&f, 50));
    assert!(node.knows_key(1000));
    // Gone before any scan saw it: still an entry, observed from its start.
    node.sync_cgroups(&[], 60, |_, _| Inspection::default());
    let ev = node.container_evidence(&HashMap::new(), &Clock::with_offset(0), &HashMap::new());
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].observed_from_start, Some(true));
    assert!(ev[0].gone_since.is_some());
}
