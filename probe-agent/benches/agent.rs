//! `cargo xtask bench` (pure part): the agent's per-rescan work and the planner, on a big node
//! and a big cluster. Criterion compares sizes side by side in one run.
#![expect(clippy::format_push_string, clippy::cast_possible_truncation, reason = "benchmark fixtures")]

use std::{collections::HashMap, hint::black_box, path::Path};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use probe_agent::{
    cgroup,
    clock::Clock,
    evidence::{AgentInfo, ContainerEvidence, ContainerKey, Evidence, KeyKind, Reads, Workload},
    mountinfo,
    node::{Inspection, Node},
    plan::{self, Inputs, Policy},
};
use probe_common::counters::{CountKey, CountValue, kind, session};
use serde_json::json;

fn uid(i: usize) -> String {
    format!("{i:08x}-1b2d-4c5e-8f90-123456789abc")
}

/// A node's mount table: `pods` pods with two projected volumes each, plus system mounts.
fn mount_table(pods: usize) -> String {
    let mut text = String::new();
    for i in 0..60 {
        text.push_str(&format!("{i} 1 0:{i} / /sys/fs/thing{i} rw,relatime shared:{i} - sysfs sysfs rw\n"));
    }
    for i in 0..pods {
        for (j, name) in ["kube-api-access-x2v9k", "istio-token"].iter().enumerate() {
            text.push_str(&format!(
                "{} 30 0:{} / /var/lib/kubelet/pods/{}/volumes/kubernetes.io~projected/{name} rw,relatime shared:9 - tmpfs tmpfs rw,size=1024k\n",
                100 + i * 2 + j,
                200 + i * 2 + j,
                uid(i)
            ));
        }
    }
    text
}

fn cgroup_paths(pods: usize) -> Vec<String> {
    (0..pods * 3)
        .map(|i| {
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{:064x}.scope",
                uid(i / 3).replace('-', "_"),
                i
            )
        })
        .collect()
}

fn rescan(c: &mut Criterion) {
    let mut group = c.benchmark_group("rescan");
    for pods in [125, 250] {
        let table = mount_table(pods);
        group.throughput(Throughput::Elements(pods as u64));
        group.bench_with_input(BenchmarkId::new("mountinfo", pods), &table, |b, t| {
            b.iter(|| {
                let (entries, _) = mountinfo::parse(black_box(t));
                entries.iter().filter_map(|e| mountinfo::pod_volume(e, Path::new("/var/lib/kubelet"))).count()
            });
        });
        let paths = cgroup_paths(pods);
        group.bench_with_input(BenchmarkId::new("cgroup_paths", pods), &paths, |b, p| {
            b.iter(|| p.iter().filter_map(|path| cgroup::parse_path(black_box(path))).count());
        });
    }
    group.finish();
}

fn evidence(c: &mut Criterion) {
    let mut group = c.benchmark_group("evidence");
    for pods in [125, 250] {
        let mut node = Node::new(0, KeyKind::Cgroup);
        let (entries, _) = mountinfo::parse(&mount_table(pods));
        let mounts: Vec<_> =
            entries.iter().filter_map(|e| mountinfo::pod_volume(e, Path::new("/var/lib/kubelet"))).collect();
        node.sync_mounts(&mounts, |_| true, 1);
        let found: Vec<cgroup::FoundCgroup> = cgroup_paths(pods)
            .iter()
            .enumerate()
            .map(|(i, p)| cgroup::FoundCgroup {
                id: 10_000 + i as u64,
                path: p.clone(),
                container: cgroup::parse_path(p).expect("path"),
            })
            .collect();
        node.sync_cgroups(&found, 2, |_, _| Inspection { oldest_start: Some(3), ..Inspection::default() });
        let counters: HashMap<CountKey, CountValue> = (0..found.len())
            .flat_map(|i| {
                [kind::READ_TOKEN, kind::READ_CA_CRT, kind::API_CONNECT].map(|k| {
                    (
                        CountKey {
                            key_kind: 1,
                            session: session::APP,
                            key_id: 10_000 + i as u64,
                            target: 1 + (i as u32 / 3) * 2,
                            kind: k,
                        },
                        CountValue { count: 5, first_ns: 10, last_ns: 20 },
                    )
                })
            })
            .collect();
        group.throughput(Throughput::Elements(found.len() as u64));
        group.bench_function(BenchmarkId::new("containers", found.len()), |b| {
            b.iter(|| node.container_evidence(black_box(&counters), &Clock::with_offset(0), &HashMap::new()).len());
        });
    }
    group.finish();
}

/// A cluster of `n` Deployments, one pod each, one node of evidence.
fn cluster(n: usize) -> Inputs {
    let t = time::OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time");
    let mut inputs = Inputs::default();
    let mut ev = Evidence {
        node: "n".into(),
        agent: AgentInfo::new("0", t),
        containers: Vec::new(),
        retired: Vec::new(),
        volumes: Vec::new(),
    };
    for i in 0..n {
        let ns = format!("ns{}", i % 50);
        let name = format!("app{i}");
        inputs.deployments.push(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "spec": {"replicas": 1, "selector": {},
                "template": {"spec": {"serviceAccountName": format!("sa{}", i % 7), "containers": [{"name": "app"}]}}}}))
            .expect("deployment"),
        );
        inputs.replica_sets.push(
            serde_json::from_value(json!({"metadata": {"name": format!("{name}-1"), "namespace": ns,
                "labels": {"pod-template-hash": "1"}, "annotations": {"deployment.kubernetes.io/revision": "1"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": "u", "controller": true}]}}))
            .expect("rs"),
        );
        inputs.pods.push(
            serde_json::from_value(json!({"metadata": {"name": format!("{name}-1-x"), "namespace": ns, "uid": uid(i),
                "labels": {"pod-template-hash": "1"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-1"), "uid": "r", "controller": true}]},
                "spec": {"nodeName": "n", "serviceAccountName": format!("sa{}", i % 7), "containers": [{"name": "app"}],
                    "volumes": [{"name": "kube-api-access-x", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt"}}, {"downwardAPI": {"items": []}}]}}]},
                "status": {"phase": "Running", "containerStatuses": [{"name": "app", "containerID": format!("containerd://{i:064x}"),
                    "image": "", "imageID": "", "ready": true, "restartCount": 0}]}}))
            .expect("pod"),
        );
        ev.containers.push(ContainerEvidence {
            key: ContainerKey { kind: KeyKind::Cgroup, id: i as u64 },
            cgroup_path: None,
            pod_uid: Some(uid(i)),
            container_id: Some(format!("{i:064x}")),
            namespace: Some(ns),
            pod: Some(format!("{name}-1-x")),
            container: Some("app".into()),
            service_account: None,
            workload: Some(Workload { kind: "Deployment".into(), name }),
            revision: Some("1".into()),
            pod_phase: Some("Running".into()),
            reads: Reads { token: u64::from(i % 5 == 0), ..Reads::default() },
            api_connects: 0,
            exec_reads: Reads::default(),
            exec_api_connects: 0,
            missing_token_opens: 0,
            other_volumes: Vec::new(),
            processes: Vec::new(),
            exec_processes: Vec::new(),
            first_seen: None,
            last_seen: Some(t),
            observed_since: Some(t - std::time::Duration::from_hours(72)),
            observed_from_start: Some(true),
            unobserved_seconds: 0,
            gone_since: None,
            uncovered: Vec::new(),
            previous_container_id: None,
        });
    }
    inputs.evidence.push(ev);
    inputs
}

fn planner(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan");
    group.sample_size(20);
    for n in [1_000, 2_000] {
        let inputs = cluster(n);
        let policy = Policy {
            now: time::OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time"),
            ..Policy::default()
        };
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("workloads", n), &inputs, |b, i| {
            b.iter(|| plan::plan(black_box(i), &policy).changes.len());
        });
    }
    group.finish();
}

criterion_group!(benches, rescan, evidence, planner);
criterion_main!(benches);
