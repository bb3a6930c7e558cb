//! The kube paths the product uses, against the real API server.

use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, ReplicaSet},
        batch::v1::Job,
        core::v1::{Endpoints, Pod, ServiceAccount},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, CustomResourceExt as _, ResourceExt,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    runtime::watcher,
};
use probe_agent::{
    evidence::{
        AgentInfo, ContainerEvidence, ContainerKey, Evidence, Gap, Hooks, KeyKind, Reads, RetiredTotals, Workload,
    },
    k8s::{
        automount::{self, Source},
        crd::{NodeTokenEvidence, NodeTokenEvidenceSpec},
        endpoints::{EndpointSource, api_server_targets},
        owners::{OwnerIndex, resolve_live},
        workloads::{CronJobVersion, list_cronjobs, v1beta1_cronjob},
    },
};
use serde::Deserialize as _;
use serde_json::json;
use tokio::runtime::Runtime;

use probe_tests::cluster::{TestNamespace, eventually, pod};

pub const CASES: &[(&str, super::Case)] = &[
    ("automount_volume_injection_and_overrides", automount_volume_injection_and_overrides),
    ("node_scoped_list_and_watch", node_scoped_list_and_watch),
    ("api_server_targets_with_fallbacks", api_server_targets_with_fallbacks),
    ("owner_chains", owner_chains),
    ("cronjobs_fall_back_to_v1beta1", cronjobs_fall_back_to_v1beta1),
    ("crd_from_rust_type_with_ssa_of_object_and_status", crd_with_ssa),
    ("pod_status_subresource_patch", pod_status_subresource_patch),
    ("deploy_manifests_apply", deploy_manifests_apply),
];

fn automount_volume_injection_and_overrides(rt: &Runtime, client: &Client) {
    rt.block_on(async {
        let ns = TestNamespace::new(client, "automount").await;
        let no_auto: ServiceAccount =
            ns.create(json!({"metadata": {"name": "no-auto"}, "automountServiceAccountToken": false})).await;
        let default_sa: ServiceAccount = ns.api().get("default").await.expect("default SA");
        for (name, sa, pod_field, expect_volume, source) in [
            ("defaulted", "default", None, true, Source::Default),
            ("sa-false", "no-auto", None, false, Source::ServiceAccount),
            ("pod-true-over-sa-false", "no-auto", Some(true), true, Source::Pod),
            ("pod-false-over-default", "default", Some(false), false, Source::Pod),
        ] {
            let p: Pod = ns.create(pod(name, "tp-node", sa, pod_field)).await;
            let volume = automount::automount_volume(&p);
            assert_eq!(
                volume.is_some(),
                expect_volume,
                "{name}: volumes {:?}",
                p.spec.as_ref().and_then(|s| s.volumes.as_ref())
            );
            if let Some(v) = volume {
                assert!(
                    v.name.starts_with("kube-api-access-"),
                    "BoundServiceAccountTokenVolume gives projected volumes: {}",
                    v.name
                );
            }
            let sa_object = if sa == "default" { &default_sa } else { &no_auto };
            assert_eq!(automount::effective(&p, Some(sa_object)), (expect_volume, source), "{name}");
        }
        ns.cleanup().await;
    });
}

fn node_scoped_list_and_watch(rt: &Runtime, client: &Client) {
    rt.block_on(async {
        let ns = TestNamespace::new(client, "nodes").await;
        let node = format!("node-{}", ns.name);
        let _: Pod = ns.create(pod("on-a", &node, "default", None)).await;
        let _: Pod = ns.create(pod("elsewhere", "another-node", "default", None)).await;
        let field = format!("spec.nodeName={node}");
        let pods: Api<Pod> = Api::all(client.clone());
        let listed = pods.list(&ListParams::default().fields(&field)).await.expect("list");
        let names: Vec<String> = listed.items.iter().map(ResourceExt::name_any).collect();
        assert_eq!(names, vec!["on-a"]);

        // The agent's watch: only this node's pods, managedFields stripped.
        let mut stream = watcher(pods, watcher::Config::default().fields(&field)).boxed();
        let mut seen = Vec::new();
        let created = tokio::spawn({
            let api = ns.api::<Pod>();
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let later: Pod = serde_json::from_value(pod("later-on-a", &node, "default", None)).expect("pod");
                api.create(&PostParams::default(), &later).await.expect("create");
                let other: Pod =
                    serde_json::from_value(pod("later-elsewhere", "another-node", "default", None)).expect("pod");
                api.create(&PostParams::default(), &other).await.expect("create");
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !seen.contains(&"later-on-a".to_owned()) {
            let event = tokio::time::timeout_at(deadline, stream.next()).await.expect("watch event in time");
            match event.expect("stream open").expect("watch ok") {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => seen.push(p.name_any()),
                _ => {}
            }
        }
        created.await.expect("creator");
        assert!(seen.iter().all(|n| n.contains("on-a")), "only this node's pods: {seen:?}");
        ns.cleanup().await;
    });
}

fn api_server_targets_with_fallbacks(rt: &Runtime, client: &Client) {
    rt.block_on(async {
        let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
        let slices_v1beta1: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), "default", &probe_agent_slice_resource());
        // The server runs with --endpoint-reconciler-type=none: the Service has no endpoints.
        let before = api_server_targets(client).await.expect("targets");
        assert_eq!(before.service, vec!["10.0.0.1:443".parse().expect("addr")], "ClusterIP from the service range");

        let eps: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "kubernetes"},
            "subsets": [{"addresses": [{"ip": "10.0.0.10"}], "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]
        }))
        .expect("endpoints");
        endpoints.create(&PostParams::default(), &eps).await.expect("create endpoints");
        let t = api_server_targets(client).await.expect("targets");
        assert_eq!(t.source, EndpointSource::Endpoints, "1.20 has no discovery/v1 and no slices yet: {t:?}");
        assert_eq!(t.endpoints, vec!["10.0.0.10:6443".parse().expect("addr")]);

        let slice: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1beta1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.11"], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]
        }))
        .expect("slice");
        slices_v1beta1.create(&PostParams::default(), &slice).await.expect("create v1beta1 slice");
        let t = api_server_targets(client).await.expect("targets");
        assert_eq!(t.source, EndpointSource::EndpointSliceV1beta1, "falls back from discovery/v1: {t:?}");
        assert_eq!(t.endpoints, vec!["10.0.0.11:6443".parse().expect("addr")]);
        assert_eq!(t.all().len(), 2);

        slices_v1beta1.delete("kubernetes", &DeleteParams::default()).await.expect("delete slice");
        endpoints.delete("kubernetes", &DeleteParams::default()).await.expect("delete endpoints");
    });
}

fn probe_agent_slice_resource() -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: "discovery.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "discovery.k8s.io/v1beta1".into(),
        kind: "EndpointSlice".into(),
        plural: "endpointslices".into(),
    }
}

fn owner_ref(kind: &str, api_version: &str, name: &str, uid: &str) -> serde_json::Value {
    json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": true}])
}

fn owner_chains(rt: &Runtime, client: &Client) {
    rt.block_on(async {
        let ns = TestNamespace::new(client, "owners").await;
        let labels = json!({"app": "web"});
        let template = json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": "registry.invalid/web:1"}]}});
        let deployment: Deployment = ns
            .create(json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": labels}, "template": template}}))
            .await;
        // No deployment controller runs: make the ReplicaSet and the pod as it would.
        let rs: ReplicaSet = ns
            .create(json!({
                "metadata": {"name": "web-5d9c", "ownerReferences": owner_ref("Deployment", "apps/v1", "web", &deployment.uid().expect("uid"))},
                "spec": {"selector": {"matchLabels": labels}, "template": template}
            }))
            .await;
        let mut web = pod("web-5d9c-x2x9k", "tp-node", "default", None);
        web["metadata"]["ownerReferences"] = owner_ref("ReplicaSet", "apps/v1", "web-5d9c", &rs.uid().expect("uid"));
        let web: Pod = ns.create(web).await;

        // A real owner: the garbage collector deletes objects whose owner does not exist.
        let crons: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &v1beta1_cronjob());
        let cron: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "backup"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "b", "image": "registry.invalid/b:1"}]}}}}}
        }))
        .expect("cronjob");
        let cron = crons.create(&PostParams::default(), &cron).await.expect("create cronjob");
        let job: Job = ns
            .create(json!({
                "metadata": {"name": "backup-2890", "ownerReferences": owner_ref("CronJob", "batch/v1beta1", "backup", &cron.uid().expect("uid"))},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "b", "image": "registry.invalid/b:1"}]}}}
            }))
            .await;
        let mut run = pod("backup-2890-abcde", "tp-node", "default", None);
        run["metadata"]["ownerReferences"] = owner_ref("Job", "batch/v1", "backup-2890", &job.uid().expect("uid"));
        let run: Pod = ns.create(run).await;
        let bare: Pod = ns.create(pod("bare", "tp-node", "default", None)).await;
        let mut gone = pod("orphan-rs-pod", "tp-node", "default", None);
        gone["metadata"]["ownerReferences"] = owner_ref("ReplicaSet", "apps/v1", "deleted-rs", "0000-gone");
        let gone: Pod = ns.create(gone).await;

        let mut index = OwnerIndex::default();
        let w = |kind: &str, name: &str| Workload { kind: kind.into(), name: name.into() };
        assert_eq!(resolve_live(client, &mut index, &web).await.expect("resolve"), w("Deployment", "web"));
        assert_eq!(resolve_live(client, &mut index, &run).await.expect("resolve"), w("CronJob", "backup"));
        assert_eq!(resolve_live(client, &mut index, &bare).await.expect("resolve"), w("Pod", "bare"));
        assert_eq!(resolve_live(client, &mut index, &gone).await.expect("resolve"), w("ReplicaSet", "deleted-rs"));
        ns.cleanup().await;
    });
}

fn cronjobs_fall_back_to_v1beta1(rt: &Runtime, client: &Client) {
    rt.block_on(async {
        let ns = TestNamespace::new(client, "cron").await;
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &v1beta1_cronjob());
        let cron: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "backup"},
            "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "serviceAccountName": "default", "automountServiceAccountToken": false, "restartPolicy": "Never",
                "containers": [{"name": "b", "image": "registry.invalid/b:1"}]}}}}}
        }))
        .expect("cronjob");
        api.create(&PostParams::default(), &cron).await.expect("create v1beta1 cronjob");
        let (jobs, version) = list_cronjobs(client, Some(&ns.name)).await.expect("list cronjobs");
        assert_eq!(version, CronJobVersion::V1beta1, "1.20 serves no batch/v1 CronJob");
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].metadata.name.as_deref(), Some("backup"));
        assert_eq!(jobs[0].automount, Some(false));
        ns.cleanup().await;
    });
}

fn sample_evidence(node: &str) -> Evidence {
    let t = time::OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time");
    Evidence {
        node: node.into(),
        agent: AgentInfo {
            hooks: Hooks { file_open: Some("lsm".into()), connect: Some("cgroup".into()) },
            exec_tracking: true,
            targets: vec!["10.0.0.1:443".into(), "[::ffff:10.0.0.1]:443".into()],
            gaps: vec![Gap { from: t, to: t }],
            ..AgentInfo::new("0.1.0", t)
        },
        containers: vec![ContainerEvidence {
            key: ContainerKey { kind: KeyKind::Cgroup, id: 4242 },
            cgroup_path: Some("/kubepods.slice/x".into()),
            pod_uid: Some("0f4a3c2e-1b2d-4c5e-8f90-123456789abc".into()),
            container_id: Some("abc".into()),
            namespace: Some("default".into()),
            pod: Some("web-1".into()),
            container: Some("app".into()),
            service_account: Some("default".into()),
            workload: Some(Workload { kind: "Deployment".into(), name: "web".into() }),
            revision: Some("5d9c".into()),
            pod_phase: Some("Running".into()),
            reads: Reads { token: 3, ca_crt: 1, namespace: 0, other: 0 },
            api_connects: 2,
            exec_reads: Reads::default(),
            exec_api_connects: 0,
            missing_token_opens: 0,
            other_volumes: Vec::new(),
            processes: vec!["app".into()],
            exec_processes: vec!["sh".into()],
            first_seen: Some(t),
            last_seen: Some(t),
            observed_since: Some(t),
            observed_from_start: None,
            unobserved_seconds: 30,
            gone_since: None,
            uncovered: Vec::new(),
            previous_container_id: None,
        }],
        retired: vec![RetiredTotals {
            namespace: Some("batch".into()),
            workload: Some(Workload { kind: "CronJob".into(), name: "backup".into() }),
            container: Some("backup".into()),
            service_account: Some("default".into()),
            revision: Some("tpl-0123456789abcdef".into()),
            containers: 3,
            observed_from_start: 3,
            pods: 3,
            runs: 3,
            reads: Reads::default(),
            api_connects: 0,
            exec_reads: Reads::default(),
            exec_api_connects: 0,
            missing_token_opens: 0,
            other_volumes: Vec::new(),
            first_seen: None,
            last_seen: None,
            observed_since: Some(t),
            unobserved_seconds: 0,
        }],
        volumes: Vec::new(),
    }
}

fn crd_with_ssa(rt: &Runtime, client: &Client) {
    rt.block_on(async {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let crd = NodeTokenEvidence::crd();
        let name = crd.name_any();
        crds.patch(&name, &PatchParams::apply("tokenprobe-test").force(), &Patch::Apply(&crd))
            .await
            .expect("apply the CRD");
        eventually("the CRD to be established", Duration::from_secs(30), || async {
            let c = crds.get(&name).await.ok()?;
            c.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
        })
        .await;

        let api: Api<NodeTokenEvidence> = Api::all(client.clone());
        let node = "tp-ssa-node";
        let mut object = NodeTokenEvidence::new(node, NodeTokenEvidenceSpec { node_name: node.into() });
        let params = PatchParams::apply("tokenprobe-agent").force();
        // Server-side apply can take a moment to see a new CRD's schema.
        eventually("apply of the object", Duration::from_secs(30), || async {
            api.patch(node, &params, &Patch::Apply(&object)).await.ok()
        })
        .await;
        object.status = Some(sample_evidence(node));
        let status_patch = json!({
            "apiVersion": "tokenprobe.dev/v1alpha1", "kind": "NodeTokenEvidence",
            "status": object.status
        });
        api.patch_status(node, &params, &Patch::Apply(&status_patch)).await.expect("apply the status");
        let got = api.get(node).await.expect("get");
        assert_eq!(got.spec.node_name, node);
        assert_eq!(got.status, object.status, "the status survives the CRD schema (no field pruned)");
        // Applying the same status again changes nothing.
        let before = got.resource_version();
        api.patch_status(node, &params, &Patch::Apply(&status_patch)).await.expect("re-apply");
        assert_eq!(api.get(node).await.expect("get").resource_version(), before);
        api.delete(node, &DeleteParams::default()).await.expect("delete");
    });
}

fn pod_status_subresource_patch(rt: &Runtime, client: &Client) {
    rt.block_on(async {
        let ns = TestNamespace::new(client, "status").await;
        let _: Pod = ns.create(pod("running", "tp-node", "default", None)).await;
        let id = "4b3f0e1d2c5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
        let status = json!({"status": {"phase": "Running", "containerStatuses": [{
            "name": "app", "image": "registry.invalid/app:1", "imageID": "", "ready": true, "restartCount": 0,
            "containerID": format!("containerd://{id}"),
            "state": {"running": {"startedAt": "2026-11-28T12:00:00Z"}}
        }]}});
        let pods: Api<Pod> = ns.api();
        pods.patch_status("running", &PatchParams::default(), &Patch::Merge(&status)).await.expect("patch status");
        let p = pods.get("running").await.expect("get");
        let cs = &p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).expect("statuses")[0];
        assert_eq!(cs.container_id.as_deref(), Some(format!("containerd://{id}").as_str()));
        assert!(cs.state.as_ref().and_then(|s| s.running.as_ref()).is_some());
        ns.cleanup().await;
    });
}

/// The manifests in deploy/ are accepted by the API server (applied for real: no controller
/// runs the `DaemonSet` here), then removed.
fn deploy_manifests_apply(rt: &Runtime, client: &Client) {
    rt.block_on(async {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let mut applied: Vec<(kube::api::ApiResource, Option<String>, String, bool)> = Vec::new();
        for file in ["crds.yaml", "agent.yaml"] {
            let text = std::fs::read_to_string(root.join(file)).expect("read manifest");
            for document in serde_yaml::Deserializer::from_str(&text) {
                let value = serde_yaml::Value::deserialize(document).expect("YAML");
                let object: DynamicObject =
                    serde_json::to_value(&value).and_then(serde_json::from_value).expect("object");
                let types = object.types.clone().expect("apiVersion and kind");
                let gvk = kube::api::GroupVersionKind::try_from(&types).expect("gvk");
                let (resource, caps) =
                    kube::discovery::pinned_kind(client, &gvk).await.unwrap_or_else(|e| panic!("{gvk:?}: {e}"));
                let namespaced = caps.scope == kube::discovery::Scope::Namespaced;
                let namespace = object.metadata.namespace.clone();
                let api: Api<DynamicObject> = match &namespace {
                    Some(ns) if namespaced => Api::namespaced_with(client.clone(), ns, &resource),
                    _ => Api::all_with(client.clone(), &resource),
                };
                let name = object.name_any();
                api.patch(&name, &PatchParams::apply("tokenprobe-test").force(), &Patch::Apply(&object))
                    .await
                    .unwrap_or_else(|e| panic!("{file}: {} {name}: {e}", types.kind));
                applied.push((
                    resource,
                    namespace.filter(|_| namespaced),
                    name,
                    types.kind == "CustomResourceDefinition",
                ));
            }
        }
        assert!(applied.iter().any(|(r, _, _, _)| r.kind == "DaemonSet"));
        for (resource, namespace, name, keep) in applied.into_iter().rev() {
            if keep || namespace.is_some() {
                continue; // the CRD stays for the other tests; namespaced objects go with the namespace
            }
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            api.delete(&name, &DeleteParams::default()).await.unwrap_or_else(|e| panic!("delete {name}: {e}"));
        }
    });
}
