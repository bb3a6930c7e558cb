//! `probe-agent run` end to end: the real programs on this kernel, a fake node whose pods exist
//! in the real test API server (their status patched with the fake containers' ids), the agent
//! publishing `NodeTokenEvidence`.
//!
//! Needs root and the test API server (`cargo xtask test` provides both).

mod harness;

use std::{process::ExitCode, time::Duration};

use k8s_openapi::api::core::v1::{Endpoints, ServiceAccount};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
};
use probe_agent::{
    evidence::{Reads, Workload},
    k8s::liveness,
};
use probe_tests::{
    actor::{Action, run_if_actor},
    cluster::TestNamespace,
    fake_node::{Driver, FakeNode, Qos, SA_DIR},
    kube::{NoServer, client},
    runner::{Suite, without_root},
};
use serde_json::json;
use tokio::runtime::Runtime;

use crate::harness::{
    ApiProxy, Fault, FaultProxy, NetNs, RunningAgent, api_pod, container_of, entry_named, http_get, published,
};

type Case = fn(&Runtime, &Client);

const CASES: &[(&str, Case)] = &[
    ("attribution_reader_idle_sidecar_and_exec", attribution),
    ("connects_to_cluster_ip_and_endpoint_in_a_netns", connects_in_a_netns),
    ("agent_restart_loses_nothing", agent_restart),
    ("api_server_outage_loses_nothing", api_outage),
    ("api_server_429_500_and_slow_lose_nothing", api_errors_and_slowness),
    ("sustained_load_through_outages_restarts_and_churn_is_exact", sustained_through_outages),
    ("full_target_map_is_reported", full_target_map),
    ("liveness_lease_renewed_then_stale", liveness_lease),
    ("init_restarts_and_sandboxes_in_run_mode", init_restarts_and_sandboxes),
    ("plan_patches_apply_and_verify_catches_a_regression", plan_apply_verify),
    ("audit_log_attributes_requests_to_pods_without_an_agent", audit_second_witness),
];

fn main() -> ExitCode {
    if let Some(code) = run_if_actor().or_else(|| without_root("node-agent")) {
        return code;
    }
    let in_ci = std::env::var_os("CI").is_some();
    if std::env::var_os("TOKENPROBE_TEST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter("info").with_writer(std::io::stderr).init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut suite = Suite::from_args();
    match rt.block_on(client()) {
        Ok(client) => {
            for (name, case) in CASES {
                suite.run(&format!("node-agent/{name}"), || case(&rt, &client));
            }
            let legacy = "node-agent/legacy_token_secret_is_the_automount_volume";
            match rt.block_on(probe_tests::kube::legacy_client()) {
                Ok(legacy_client) => suite.run(legacy, || legacy_token_secret(&rt, &legacy_client)),
                Err(NoServer::NotConfigured) if !in_ci => {
                    suite.skip(legacy, "no legacy test API server (set TOKENPROBE_LEGACY_KUBECONFIG)");
                }
                Err(e) => suite.run(legacy, || panic!("the legacy test API server is needed: {e:?}")),
            }
            suite.finish()
        }
        Err(NoServer::NotConfigured) if !in_ci => {
            for (name, _) in CASES {
                suite.skip(&format!("node-agent/{name}"), "no test API server (set TOKENPROBE_KUBECONFIG)");
            }
            suite.finish_allowing_skips()
        }
        Err(e) => {
            eprintln!("error: the node-agent tests need the test API server: {e:?}");
            ExitCode::FAILURE
        }
    }
}

fn attribution(rt: &Runtime, client: &Client) {
    let mut node = FakeNode::new(Driver::Systemd);
    let node_name = format!("tp-attr-{}", std::process::id());
    let ns = rt.block_on(TestNamespace::new(client, "attr"));
    let _: ServiceAccount = rt.block_on(ns.create(json!({"metadata": {"name": "idle-sa"}})));
    let agent = RunningAgent::start(rt, &node, &node_name, harness::server(rt), |_| {});

    // A Deployment's pod whose only token reader is its sidecar.
    let web = rt.block_on(api_pod(
        &ns,
        &node_name,
        "web-5d9c-abcde",
        "default",
        &["app", "sidecar"],
        Some(("web", "web-5d9c")),
    ));
    let web_pod = node.pod_with_uid(&web.uid, Qos::Burstable);
    let web_vol = node.volume(&web_pod, &web.automount_volume, true);
    let web_app = node.container(&web_pod, false);
    let web_sidecar = node.container(&web_pod, false);
    // A bare pod that never uses its token, under its own ServiceAccount.
    let idle = rt.block_on(api_pod(&ns, &node_name, "idle", "idle-sa", &["app"], None));
    let idle_pod = node.pod_with_uid(&idle.uid, Qos::BestEffort);
    let idle_vol = node.volume(&idle_pod, &idle.automount_volume, true);
    let idle_app = node.container(&idle_pod, false);
    // A pod whose app reads the token and into which someone execs.
    let reader = rt.block_on(api_pod(&ns, &node_name, "reader", "default", &["app"], None));
    let reader_pod = node.pod_with_uid(&reader.uid, Qos::Burstable);
    let reader_vol = node.volume(&reader_pod, &reader.automount_volume, true);
    let reader_app = node.container(&reader_pod, false);
    rt.block_on(web.set_running(&ns, &[("app", &web_app), ("sidecar", &web_sidecar)]));
    rt.block_on(idle.set_running(&ns, &[("app", &idle_app)]));
    rt.block_on(reader.set_running(&ns, &[("app", &reader_app)]));
    harness::wait_watched(rt, &agent, &[&web.uid, &idle.uid, &reader.uid]);

    let _app = node.spawn(&web_app, &[(&web_vol, SA_DIR)]);
    let mut sidecar = node.spawn(&web_sidecar, &[(&web_vol, SA_DIR)]);
    let _idle = node.spawn(&idle_app, &[(&idle_vol, SA_DIR)]);
    let mut r = node.spawn(&reader_app, &[(&reader_vol, SA_DIR)]);
    sidecar.ok(&Action::Open(format!("{SA_DIR}/token").into()));
    r.ok(&Action::Open(format!("{SA_DIR}/token").into()));
    r.ok(&Action::Open(format!("{SA_DIR}/token").into()));
    let mut exec = node.exec(&reader_app, &r);
    exec.ok(&Action::Open(format!("{SA_DIR}/token").into()));

    let ev = published(rt, client, &node_name, Duration::from_secs(30), |ev| {
        entry_named(ev, "reader", "app").is_some_and(|e| e.reads.token == 2 && e.exec_reads.token == 1)
            && entry_named(ev, "web-5d9c-abcde", "sidecar").is_some_and(|e| e.reads.token == 1)
            && entry_named(ev, "idle", "app").is_some()
    });
    let sidecar_entry = entry_named(&ev, "web-5d9c-abcde", "sidecar").expect("sidecar");
    assert_eq!(sidecar_entry.workload, Some(Workload { kind: "Deployment".into(), name: "web".into() }));
    assert_eq!(sidecar_entry.namespace.as_deref(), Some(ns.name.as_str()));
    assert_eq!(sidecar_entry.service_account.as_deref(), Some("default"));
    let app_entry = entry_named(&ev, "web-5d9c-abcde", "app").expect("app");
    assert_eq!(app_entry.reads, Reads::default(), "only the sidecar reads");
    let idle_entry = entry_named(&ev, "idle", "app").expect("idle");
    assert_eq!(idle_entry.reads.total() + idle_entry.api_connects, 0);
    assert_eq!(idle_entry.service_account.as_deref(), Some("idle-sa"));
    assert_eq!(idle_entry.workload, Some(Workload { kind: "Pod".into(), name: "idle".into() }));
    assert_eq!(idle_entry.observed_from_start, Some(true));
    assert_eq!(ev.containers.len(), 4, "sandboxes are not reported: {ev:#?}");
    let ready = http_get(agent.http, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let metrics = http_get(agent.http, "/metrics");
    assert!(metrics.contains("tokenprobe_publications_total"), "{metrics}");
    assert!(metrics.contains("tokenprobe_containers_watched 4"), "{metrics}");
    agent.stop(rt);
    rt.block_on(ns.cleanup());
}

fn connects_in_a_netns(rt: &Runtime, client: &Client) {
    let mut node = FakeNode::new(Driver::Systemd);
    let node_name = format!("tp-netns-{}", std::process::id());
    let ns = rt.block_on(TestNamespace::new(client, "netns"));
    // The ClusterIP (10.0.0.1, from the service range) and an endpoint address exist only
    // inside a network namespace of this test.
    let netns = NetNs::new(&["10.0.0.1", "10.0.0.10"]);
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let eps: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "kubernetes"},
        "subsets": [{"addresses": [{"ip": "10.0.0.10"}], "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]
    }))
    .expect("endpoints");
    rt.block_on(endpoints.create(&PostParams::default(), &eps)).expect("create endpoints");
    let agent = RunningAgent::start(rt, &node, &node_name, harness::server(rt), |_| {});
    let client_pod = rt.block_on(api_pod(&ns, &node_name, "client", "default", &["app"], None));
    let (vol, c) = rt.block_on(client_pod.place(&ns, &mut node));
    let vol = vol.expect("token volume");
    let evidence = harness::wait_local(rt, &agent, Duration::from_secs(20), |ev| {
        ev.agent.targets.iter().any(|t| t == "10.0.0.1:443") && ev.agent.targets.iter().any(|t| t == "10.0.0.10:6443")
    });
    assert!(evidence.agent.targets_not_watched.is_empty());
    let mut a = probe_tests::actor::Actor::spawn(&probe_tests::actor::ActorSpec {
        cgroup: Some(c.cgroup_dir.clone()),
        mounts: vec![(vol.dir.clone(), SA_DIR.into())],
        netns: Some(netns.path()),
        ..Default::default()
    });
    for target in ["10.0.0.1:443", "10.0.0.10:6443", "10.0.0.10:9999"] {
        a.ok(&Action::ConnectAttempt(target.parse().expect("addr")));
    }
    let ev = published(rt, client, &node_name, Duration::from_secs(30), |ev| {
        entry_named(ev, "client", "app").is_some_and(|e| e.api_connects >= 2)
    });
    assert_eq!(entry_named(&ev, "client", "app").expect("client").api_connects, 2, "not the other port: {ev:#?}");
    agent.stop(rt);
    rt.block_on(endpoints.delete("kubernetes", &DeleteParams::default())).expect("delete endpoints");
    rt.block_on(ns.cleanup());
}

fn agent_restart(rt: &Runtime, client: &Client) {
    let mut node = FakeNode::new(Driver::Systemd);
    let node_name = format!("tp-restart-{}", std::process::id());
    let ns = rt.block_on(TestNamespace::new(client, "restart"));
    let state_dir = node.root.join("state");
    let with_state = {
        let dir = state_dir.clone();
        move |c: &mut probe_agent::run::RunConfig| c.watch.state_dir = Some(dir.clone())
    };
    let agent = RunningAgent::start(rt, &node, &node_name, harness::server(rt), with_state.clone());
    let p = rt.block_on(api_pod(&ns, &node_name, "steady", "default", &["app"], None));
    let (vol, c) = rt.block_on(p.place(&ns, &mut node));
    let vol = vol.expect("token volume");
    harness::wait_watched(rt, &agent, &[&p.uid]);
    let mut a = node.spawn(&c, &[(&vol, SA_DIR)]);
    a.ok(&Action::Open(format!("{SA_DIR}/token").into()));
    a.ok(&Action::Open(format!("{SA_DIR}/token").into()));
    published(rt, client, &node_name, Duration::from_secs(30), |ev| {
        entry_named(ev, "steady", "app").is_some_and(|e| e.reads.token == 2)
    });
    agent.stop(rt);
    assert!(state_dir.join("state.json").exists(), "state saved at stop");

    // The container keeps running while the agent is away; the new agent continues.
    std::thread::sleep(Duration::from_millis(1100));
    let agent = RunningAgent::start(rt, &node, &node_name, harness::server(rt), with_state);
    a.ok(&Action::Open(format!("{SA_DIR}/token").into()));
    let ev = published(rt, client, &node_name, Duration::from_secs(30), |ev| {
        entry_named(ev, "steady", "app").is_some_and(|e| e.reads.token == 3)
    });
    let e = entry_named(&ev, "steady", "app").expect("steady");
    assert_eq!(ev.agent.gaps.len(), 1, "the restart is recorded: {:?}", ev.agent.gaps);
    assert!(e.unobserved_seconds >= 1, "the container ran through the gap: {e:#?}");
    assert_eq!(e.observed_from_start, Some(true), "coverage keeps the first run's answer");
    agent.stop(rt);
    rt.block_on(ns.cleanup());
}

fn api_outage(rt: &Runtime, client: &Client) {
    let mut node = FakeNode::new(Driver::Systemd);
    let node_name = format!("tp-outage-{}", std::process::id());
    let ns = rt.block_on(TestNamespace::new(client, "outage"));
    let proxy = rt.block_on(ApiProxy::start());
    let agent = RunningAgent::start(rt, &node, &node_name, rt.block_on(proxy.config()), |_| {});
    let p = rt.block_on(api_pod(&ns, &node_name, "through-outage", "default", &["app"], None));
    let (vol, c) = rt.block_on(p.place(&ns, &mut node));
    let vol = vol.expect("token volume");
    let mut a = node.spawn(&c, &[(&vol, SA_DIR)]);
    a.ok(&Action::Open(format!("{SA_DIR}/token").into()));
    published(rt, client, &node_name, Duration::from_secs(30), |ev| {
        entry_named(ev, "through-outage", "app").is_some_and(|e| e.reads.token == 1)
    });

    proxy.down();
    a.ok(&Action::Open(format!("{SA_DIR}/token").into()));
    a.ok(&Action::Open(format!("{SA_DIR}/token").into()));
    // The agent tries and fails to publish while the API server is unreachable...
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = http_get(agent.http, "/metrics");
        if metrics.lines().any(|l| l.starts_with("tokenprobe_publish_errors_total ") && !l.ends_with(" 0")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no failed publication seen:\n{metrics}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // ...and keeps counting meanwhile: on recovery everything is published.
    proxy.up();
    let ev = published(rt, client, &node_name, Duration::from_mins(1), |ev| {
        entry_named(ev, "through-outage", "app").is_some_and(|e| e.reads.token == 3)
    });
    assert_eq!(container_of(&ev, &c).expect("entry").reads.token, 3);
    agent.stop(rt);
    rt.block_on(ns.cleanup());
}

/// The API server throttling (429), failing (500) or slow: the agent keeps counting, counts the
/// failed publications (metric), and publishes everything once it answers again.
fn api_errors_and_slowness(rt: &Runtime, client: &Client) {
    let mut node = FakeNode::new(Driver::Systemd);
    let node_name = format!("tp-faults-{}", std::process::id());
    let ns = rt.block_on(TestNamespace::new(client, "faults"));
    let proxy = rt.block_on(FaultProxy::start(client.clone()));
    let agent = RunningAgent::start(rt, &node, &node_name, proxy.config(), |_| {});
    let p = rt.block_on(api_pod(&ns, &node_name, "through-faults", "default", &["app"], None));
    let (vol, c) = rt.block_on(p.place(&ns, &mut node));
    let vol = vol.expect("token volume");
    let mut a = node.spawn(&c, &[(&vol, SA_DIR)]);
    let token = Action::Open(format!("{SA_DIR}/token").into());
    a.ok(&token);
    let mut reads = 1;
    published(rt, client, &node_name, Duration::from_secs(30), |ev| {
        entry_named(ev, "through-faults", "app").is_some_and(|e| e.reads.token == reads)
    });
    let errors = || {
        http_get(agent.http, "/metrics")
            .lines()
            .find_map(|l| l.strip_prefix("tokenprobe_publish_errors_total ").and_then(|v| v.trim().parse::<u64>().ok()))
            .unwrap_or(0)
    };
    let local_reads = || {
        let local = harness::wait_local(rt, &agent, Duration::from_secs(10), |_| true);
        container_of(&local, &c).expect("entry").reads.token
    };
    // 429 with Retry-After: the client waits and retries (kube's retry policy); counting goes
    // on, nothing newer is published meanwhile, and everything is once the server answers.
    proxy.set(Fault::TooManyRequests);
    a.ok(&token);
    reads += 1;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(local_reads(), reads, "counting goes on while throttled");
    let stale = published(rt, client, &node_name, Duration::from_secs(5), |_| true);
    assert_eq!(
        entry_named(&stale, "through-faults", "app").map(|e| e.reads.token),
        Some(reads - 1),
        "published while throttled"
    );
    let throttled = http_get(agent.http, "/metrics");
    assert!(
        throttled
            .lines()
            .any(|l| l.starts_with(r#"tokenprobe_api_errors_total{kind="throttled"} "#) && !l.ends_with(" 0")),
        "the 429s the client retries are counted:\n{throttled}"
    );
    proxy.set(Fault::None);
    published(rt, client, &node_name, Duration::from_mins(2), |ev| {
        entry_named(ev, "through-faults", "app").is_some_and(|e| e.reads.token == reads)
    });
    // 500: each failed publication is counted (metric) and retried at the next interval.
    let before = errors();
    proxy.set(Fault::ServerError);
    a.ok(&token);
    reads += 1;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while errors() <= before {
        assert!(std::time::Instant::now() < deadline, "no failed publication counted");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(local_reads(), reads, "counting goes on while the server fails");
    let failing = http_get(agent.http, "/metrics");
    assert!(
        failing
            .lines()
            .any(|l| l.starts_with(r#"tokenprobe_api_errors_total{kind="server_error"} "#) && !l.ends_with(" 0")),
        "the 500s are counted:\n{failing}"
    );
    proxy.set(Fault::None);
    published(rt, client, &node_name, Duration::from_mins(1), |ev| {
        entry_named(ev, "through-faults", "app").is_some_and(|e| e.reads.token == reads)
    });
    // Slow (every answer 2 s late): publications still go through.
    proxy.set(Fault::Slow);
    a.ok(&token);
    reads += 1;
    published(rt, client, &node_name, Duration::from_mins(1), |ev| {
        entry_named(ev, "through-faults", "app").is_some_and(|e| e.reads.token == reads)
    });
    proxy.set(Fault::None);
    agent.stop(rt);
    rt.block_on(ns.cleanup());
}

/// The soak's run-mode counterpart, at CI length: containers reading their tokens at a steady
/// rate while the API server goes away every other phase, pods come and go, and the agent
/// restarts (once while the API server is away). Load runs in phases and changes happen between
/// them (as in `cargo xtask soak`), so the expected counts are exactly what was done; the
/// published evidence must carry every one of them once the API server is back, and one gap
/// per restart.
fn sustained_through_outages(rt: &Runtime, client: &Client) {
    const PHASES: u32 = 6;
    const PER_SECOND: u32 = 1_000;
    const PER_PHASE: u32 = 2_000;
    let mut node = FakeNode::new(Driver::Systemd);
    let node_name = format!("tp-sustain-{}", std::process::id());
    let ns = rt.block_on(TestNamespace::new(client, "sustain"));
    let proxy = rt.block_on(ApiProxy::start());
    let state_dir = node.root.join("state");
    let with_state = {
        let dir = state_dir.clone();
        move |c: &mut probe_agent::run::RunConfig| c.watch.state_dir = Some(dir.clone())
    };
    let mut agent = RunningAgent::start(rt, &node, &node_name, rt.block_on(proxy.config()), with_state.clone());
    let token = std::path::PathBuf::from(SA_DIR).join("token");
    let mut next = 0;
    let mut new_pod = |node: &mut FakeNode| {
        next += 1;
        let p = rt.block_on(api_pod(&ns, &node_name, &format!("load-{next}"), "default", &["app"], None));
        let (vol, c) = rt.block_on(p.place(&ns, node));
        let vol = vol.expect("token volume");
        // The container's process starts once its volume is watched (as behind a kubelet); a
        // later process in it would be an exec session.
        (p, vol, c, None::<probe_tests::actor::Actor>)
    };
    let mut live: Vec<_> = (0..4).map(|_| new_pod(&mut node)).collect();
    let mut expected: std::collections::BTreeMap<String, (String, u64)> = std::collections::BTreeMap::new();
    let mut restarts = 0;
    for phase in 1..=PHASES {
        // Between phases: the API server goes or comes back, a pod is replaced, the agent restarts.
        if phase % 2 == 0 {
            proxy.down();
        } else {
            proxy.up();
        }
        if phase > 1 {
            let (p, vol, c, actor) = live.remove(0);
            drop(actor);
            node.remove_container(&c);
            node.remove_volume(&vol);
            rt.block_on(ns.api::<k8s_openapi::api::core::v1::Pod>().delete(&p.name, &DeleteParams::default()))
                .expect("delete the pod");
            live.push(new_pod(&mut node));
        }
        if phase == 3 || phase == 4 {
            agent.stop(rt);
            agent = RunningAgent::start_as_is(rt, &node, &node_name, rt.block_on(proxy.config()), with_state.clone());
            restarts += 1;
        }
        let uids: Vec<&str> = live.iter().map(|(p, _, _, _)| p.uid.as_str()).collect();
        harness::wait_watched(rt, &agent, &uids);
        for (_, vol, c, actor) in &mut live {
            actor.get_or_insert_with(|| node.spawn(c, &[(vol, SA_DIR)]));
        }
        std::thread::scope(|s| {
            for (_, _, _, actor) in &mut live {
                let token = token.clone();
                let a = actor.as_mut().expect("spawned");
                s.spawn(move || a.ok(&Action::OpenPaced { path: token, count: PER_PHASE, per_second: PER_SECOND }));
            }
        });
        for (p, _, c, _) in &live {
            expected.entry(c.id.clone()).or_insert_with(|| (p.name.clone(), 0)).1 += u64::from(PER_PHASE);
        }
    }
    // The last phase (an even one) ran with the API server away; once it is back, everything
    // is published.
    proxy.up();
    // Exact, and each entry attributed to its pod (pods made while the server was away are
    // learnt once it is back).
    let exact = |ev: &probe_agent::evidence::Evidence| {
        expected.iter().all(|(id, (pod, n))| {
            let entries = || ev.containers.iter().filter(|e| e.container_id.as_deref() == Some(id.as_str()));
            entries().map(|e| e.reads.token).sum::<u64>() == *n && entries().all(|e| e.pod.as_deref() == Some(pod))
        })
    };
    let ev =
        published(rt, client, &node_name, Duration::from_mins(2), |ev| exact(ev) && ev.agent.gaps.len() == restarts);
    for (id, (pod, n)) in &expected {
        let e = ev.containers.iter().find(|e| e.container_id.as_deref() == Some(id.as_str())).expect("entry");
        assert_eq!((e.pod.as_deref(), e.reads.token), (Some(pod.as_str()), *n), "attributed to its pod, exactly");
    }
    assert_eq!(expected.len(), 4 + PHASES as usize - 1, "every container, running or gone");
    let losses = &ev.agent.losses;
    assert_eq!(losses.counter_map_full.count + losses.read_errors.count, 0, "{losses:?}");
    agent.stop(rt);
    rt.block_on(ns.cleanup());
}

fn full_target_map(rt: &Runtime, _client: &Client) {
    let node = FakeNode::new(Driver::Systemd);
    let node_name = format!("tp-targets-{}", std::process::id());
    // Room for exactly the configured extra (IPv4 and its mapped form): the cluster's ClusterIP
    // does not fit.
    let agent = RunningAgent::start(rt, &node, &node_name, harness::server(rt), |c| {
        c.watch.targets_capacity = 2;
        c.watch.api_endpoints = vec!["127.0.0.1:1".parse().expect("addr")];
    });
    let ev = harness::wait_local(rt, &agent, Duration::from_secs(20), |ev| !ev.agent.targets_not_watched.is_empty());
    assert!(ev.agent.targets_not_watched.iter().any(|t| t == "10.0.0.1:443"), "{:?}", ev.agent);
    let metrics = http_get(agent.http, "/metrics");
    assert!(
        metrics.lines().any(|l| l.starts_with("tokenprobe_api_targets_not_watched ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    agent.stop(rt);
}

/// On a cluster without bound service-account tokens (the feature gate off, as before 1.21)
/// admission mounts the ServiceAccount's token Secret at the service-account path: run mode
/// confirms from the pod spec that it is the automount volume, and a Secret merely named like a
/// token Secret is another volume.
fn legacy_token_secret(rt: &Runtime, client: &Client) {
    use k8s_openapi::api::core::v1::Pod;
    let mut node = FakeNode::new(Driver::Systemd);
    let node_name = format!("tp-legacy-{}", std::process::id());
    let ns = rt.block_on(TestNamespace::new(client, "legacy"));
    let legacy = rt.block_on(probe_tests::kube::legacy_config()).expect("the legacy API server's kubeconfig");
    let agent = RunningAgent::start(rt, &node, &node_name, legacy, |_| {});
    let mut object = probe_tests::cluster::pod("old-style", &node_name, "default", None);
    object["spec"]["volumes"] = json!([{"name": "ci-token-q8w7e", "secret": {"secretName": "ci-token-q8w7e"}}]);
    object["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "ci-token-q8w7e", "mountPath": "/etc/ci"}]);
    // The token controller creates the ServiceAccount's token Secret; admission waits for it.
    let pods: Api<Pod> = ns.api();
    let object: Pod = serde_json::from_value(object).expect("pod");
    let created: Pod = rt.block_on(probe_tests::cluster::eventually(
        "a pod admitted with the token Secret",
        Duration::from_mins(1),
        || {
            let (pods, object) = (pods.clone(), object.clone());
            async move { pods.create(&PostParams::default(), &object).await.ok() }
        },
    ));
    let spec = created.spec.as_ref().expect("spec");
    let automount = probe_agent::k8s::automount::automount_volume(&created).expect("the automount volume").name.clone();
    assert!(automount.starts_with("default-token-"), "a token Secret volume, not kube-api-access: {spec:#?}");
    assert!(spec.volumes.iter().flatten().all(|v| v.projected.is_none()), "no projected volume on this cluster");
    let uid = created.metadata.uid.clone().expect("uid");
    let pod = node.pod_with_uid(&uid, Qos::Burstable);
    let legacy = node.secret_volume(&pod, &automount);
    let lookalike = node.secret_volume(&pod, "ci-token-q8w7e");
    let c = node.container(&pod, false);
    let placed = harness::ApiPod { name: "old-style".into(), uid: uid.clone(), automount_volume: automount };
    rt.block_on(placed.set_running(&ns, &[("app", &c)]));
    harness::wait_watched(rt, &agent, &[&uid]);
    let mut a = node.spawn(&c, &[(&legacy, SA_DIR), (&lookalike, "/etc/ci")]);
    a.ok(&Action::Open(format!("{SA_DIR}/token").into()));
    a.ok(&Action::Open("/etc/ci/token".into()));
    let ev = published(rt, client, &node_name, Duration::from_secs(30), |ev| {
        entry_named(ev, "old-style", "app").is_some_and(|e| e.reads.token == 1)
    });
    let e = entry_named(&ev, "old-style", "app").expect("entry");
    assert_eq!(e.other_volumes.len(), 1, "{e:#?}");
    assert_eq!((e.other_volumes[0].name.as_str(), e.other_volumes[0].reads.token), ("ci-token-q8w7e", 1));
    assert!(e.uncovered.is_empty(), "{e:#?}");
    agent.stop(rt);
    rt.block_on(ns.cleanup());
}

/// What run mode adds to coverage, on the real agent's published evidence: an init container
/// that lived milliseconds has its entry under its name, observed from its start; a container
/// restarted in place links to the instance it replaced; a pod of a sandboxed runtime class is
/// reported not covered.
fn init_restarts_and_sandboxes(rt: &Runtime, client: &Client) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Patch, PatchParams};
    let mut node = FakeNode::new(Driver::Systemd);
    let node_name = format!("tp-cover-{}", std::process::id());
    let ns = rt.block_on(TestNamespace::new(client, "cover"));
    let agent = RunningAgent::start(rt, &node, &node_name, harness::server(rt), |c| {
        c.watch.rescan_interval = Duration::from_secs(30);
    });
    let p = rt.block_on(api_pod(&ns, &node_name, "vaulted", "default", &["app"], None));
    let pod = node.pod_with_uid(&p.uid, Qos::Burstable);
    let vol = node.volume(&pod, &p.automount_volume, true);
    harness::wait_watched(rt, &agent, &[&p.uid]);
    let init = node.container(&pod, false);
    node.flash(&init);
    let old = node.container(&pod, false);
    let app = node.container(&pod, false);
    let _app = node.spawn(&app, &[(&vol, SA_DIR)]);
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("time");
    let status = json!({"status": {"phase": "Running",
        "initContainerStatuses": [{"name": "vault-agent-init", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
            "containerID": format!("containerd://{}", init.id), "state": {"terminated": {"exitCode": 0, "startedAt": now, "finishedAt": now}}}],
        "containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": true, "restartCount": 1,
            "containerID": format!("containerd://{}", app.id), "state": {"running": {"startedAt": now}},
            "lastState": {"terminated": {"exitCode": 1, "containerID": format!("containerd://{}", old.id)}}}]}});
    rt.block_on(ns.api::<Pod>().patch_status("vaulted", &PatchParams::default(), &Patch::Merge(&status)))
        .expect("patch the pod status");
    let ev = published(rt, client, &node_name, Duration::from_secs(30), |ev| {
        entry_named(ev, "vaulted", "vault-agent-init").is_some() && entry_named(ev, "vaulted", "app").is_some()
    });
    let init_entry = entry_named(&ev, "vaulted", "vault-agent-init").expect("init");
    assert_eq!(init_entry.observed_from_start, Some(true), "{init_entry:#?}");
    assert!(init_entry.gone_since.is_some(), "{init_entry:#?}");
    let app_entry = entry_named(&ev, "vaulted", "app").expect("app");
    assert_eq!(app_entry.previous_container_id.as_deref(), Some(old.id.as_str()), "{app_entry:#?}");
    assert!(ev.agent.container_creation);

    // A pod of a sandboxed runtime class: its containers say they are not covered.
    let class = json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "gvisor"}, "handler": "runsc"});
    let classes: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk("node.k8s.io", "v1", "RuntimeClass")),
    );
    rt.block_on(classes.patch("gvisor", &PatchParams::apply("tokenprobe-test"), &Patch::Apply(&class)))
        .expect("apply a RuntimeClass");
    let mut object = probe_tests::cluster::pod("sandboxed", &node_name, "default", None);
    object["spec"]["runtimeClassName"] = json!("gvisor");
    let created: Pod = rt.block_on(ns.create(object));
    let sandboxed = harness::ApiPod {
        name: "sandboxed".into(),
        uid: created.metadata.uid.clone().expect("uid"),
        automount_volume: probe_agent::k8s::automount::automount_volume(&created)
            .map(|v| v.name.clone())
            .expect("volume"),
    };
    let (_, c) = rt.block_on(sandboxed.place(&ns, &mut node));
    let _s = node.spawn(&c, &[]);
    let ev = published(rt, client, &node_name, Duration::from_secs(40), |ev| {
        entry_named(ev, "sandboxed", "app").is_some_and(|e| !e.uncovered.is_empty())
    });
    let e = entry_named(&ev, "sandboxed", "app").expect("sandboxed");
    assert!(e.uncovered.iter().any(|u| u.contains("sandboxed runtime (RuntimeClass gvisor)")), "{e:#?}");
    rt.block_on(classes.delete("gvisor", &DeleteParams::default())).expect("delete the RuntimeClass");
    agent.stop(rt);
    rt.block_on(ns.cleanup());
}

/// The agent proves it is alive with a Lease renewed every publish interval; the planner reads
/// it, trusts the node while it is renewed, and judges the node's pods unobserved once the agent
/// stopped renewing it.
fn liveness_lease(rt: &Runtime, client: &Client) {
    use k8s_openapi::api::coordination::v1::Lease;
    use probe_agent::plan::{self, Policy, Verdict};
    let mut node = FakeNode::new(Driver::Systemd);
    let node_name = format!("tp-lease-{}", std::process::id());
    let ns = rt.block_on(TestNamespace::new(client, "lease"));
    let agent = RunningAgent::start(rt, &node, &node_name, harness::server(rt), |_| {});
    let p = rt.block_on(harness::deployment_pod(&ns, &node_name, "idle", "default", "idle-1"));
    let (vol, c) = rt.block_on(p.place(&ns, &mut node));
    let vol = vol.expect("token volume");
    harness::wait_watched(rt, &agent, &[&p.uid]);
    let _app = node.spawn(&c, &[(&vol, SA_DIR)]);
    let ev =
        published(rt, client, &node_name, Duration::from_secs(30), |ev| entry_named(ev, "idle-1", "app").is_some());
    assert_eq!(ev.agent.publish_interval_seconds, Some(1), "300ms, recorded in whole seconds (at least 1)");

    let leases: Api<Lease> = Api::namespaced(client.clone(), liveness::DEFAULT_NAMESPACE);
    let renewed = |lease: &Lease| lease.spec.as_ref().and_then(|s| s.renew_time.clone()).map(|t| t.0);
    // The Lease is renewed right after a publication: it may trail the evidence by a moment.
    let first = rt.block_on(probe_tests::cluster::eventually("the node's Lease", Duration::from_secs(10), || {
        let leases = leases.clone();
        let name = node_name.clone();
        async move { leases.get_opt(&name).await.ok().flatten() }
    }));
    let live = liveness::read(&first).expect("an agent Lease");
    assert_eq!(live.node, node_name);
    assert_eq!(live.valid_seconds, 3, "three publish intervals");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = rt.block_on(leases.get(&node_name)).expect("lease");
        if renewed(&now) > renewed(&first) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the Lease was not renewed: {now:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let policy = || Policy { min_observation: Duration::ZERO, accept_tracepoint: true, ..Policy::default() };
    let verdict = |the_plan: &plan::Plan| {
        let w = the_plan.workloads.iter().find(|w| w.workload.name == "idle").expect("idle");
        (w.verdict, w.reasons.clone())
    };
    let inputs = rt.block_on(plan::live::load(client, Some(&ns.name), liveness::DEFAULT_NAMESPACE)).expect("inputs");
    let (v, reasons) = verdict(&plan::plan(&inputs, &policy()));
    assert_eq!(v, Verdict::SafeToDisable, "fresh Lease, idle, seen from start: {reasons:#?}");

    agent.stop(rt);
    std::thread::sleep(Duration::from_secs(4));
    let inputs = rt.block_on(plan::live::load(client, Some(&ns.name), liveness::DEFAULT_NAMESPACE)).expect("inputs");
    let (v, reasons) = verdict(&plan::plan(&inputs, &policy()));
    assert_eq!(v, Verdict::InsufficientEvidence, "{reasons:#?}");
    let stale = format!("agent on node {node_name} last reported");
    assert!(reasons.iter().any(|r| r.contains(&stale)), "{reasons:#?}");
    rt.block_on(leases.delete(&node_name, &DeleteParams::default())).expect("delete the Lease");
    rt.block_on(ns.cleanup());
}

/// The planner end to end: evidence from the fake node, the plan read live from the API server,
/// its patches applied for real, a worker restarted without its token that still reaches for
/// it, and `verify` (library and CLI, exit code 3) catching that with a rollback that applies.
fn plan_apply_verify(rt: &Runtime, client: &Client) {
    use k8s_openapi::api::{apps::v1::Deployment, core::v1::ServiceAccount};
    use probe_agent::plan::{self, Policy, Verdict, output};
    let mut node = FakeNode::new(Driver::Systemd);
    let node_name = format!("tp-plan-{}", std::process::id());
    let ns = rt.block_on(TestNamespace::new(client, "plan"));
    for sa in ["web", "shared"] {
        let _: ServiceAccount = rt.block_on(ns.create(json!({"metadata": {"name": sa}})));
    }
    let agent = RunningAgent::start(rt, &node, &node_name, harness::server(rt), |c| c.watch.missing_token = true);
    let mut placed = Vec::new();
    for (deployment, sa, reads) in [("web", "web", false), ("api", "shared", true), ("worker", "shared", false)] {
        let p = rt.block_on(harness::deployment_pod(&ns, &node_name, deployment, sa, &format!("{deployment}-1")));
        let (vol, c) = rt.block_on(p.place(&ns, &mut node));
        placed.push((p.uid, vol.expect("token volume"), c, reads));
    }
    let uids: Vec<&str> = placed.iter().map(|(uid, ..)| uid.as_str()).collect();
    harness::wait_watched(rt, &agent, &uids);
    let mut actors = Vec::new();
    for (_, vol, c, reads) in &placed {
        let mut a = node.spawn(c, &[(vol, SA_DIR)]);
        if *reads {
            a.ok(&Action::Open(format!("{SA_DIR}/token").into()));
        }
        actors.push(a);
    }
    published(rt, client, &node_name, Duration::from_secs(30), |ev| {
        ["web-1", "api-1", "worker-1"].iter().all(|p| entry_named(ev, p, "app").is_some())
            && entry_named(ev, "api-1", "app").is_some_and(|e| e.reads.token == 1)
    });

    let inputs =
        rt.block_on(plan::live::load(client, Some(&ns.name), liveness::DEFAULT_NAMESPACE)).expect("live inputs");
    assert!(
        inputs.leases.iter().any(|l| l.metadata.name.as_deref() == Some(node_name.as_str())),
        "the agent's liveness Lease is read: {:?}",
        inputs.leases
    );
    // This kernel's file-open mode may be tracepoint; accepting it is stated in the verdicts.
    let policy = Policy { min_observation: Duration::ZERO, accept_tracepoint: true, ..Policy::default() };
    let the_plan = plan::plan(&inputs, &policy);
    let verdict = |name: &str| the_plan.workloads.iter().find(|w| w.workload.name == name).map(|w| w.verdict);
    assert_eq!(verdict("web"), Some(Verdict::SafeToDisable), "{the_plan:#?}");
    assert_eq!(verdict("api"), Some(Verdict::UsesToken));
    assert_eq!(verdict("worker"), Some(Verdict::SafeToDisable));
    let ordered: Vec<String> = output::in_order(&the_plan)
        .map(|(_, _, c)| format!("{}/{}={}", c.target.kind, c.target.name, c.automount))
        .collect();
    assert_eq!(ordered, vec!["Deployment/api=true", "ServiceAccount/shared=false", "ServiceAccount/web=false"]);

    // Apply every patch for real, in order.
    for (_, _, change) in output::in_order(&the_plan) {
        rt.block_on(harness::apply_patch(client, change));
    }
    let sas: Api<ServiceAccount> = ns.api();
    for sa in ["web", "shared"] {
        let object = rt.block_on(sas.get(sa)).expect("sa");
        assert_eq!(object.automount_service_account_token, Some(false), "{sa}");
        assert!(object.metadata.annotations.unwrap_or_default().contains_key(output::EVIDENCE_ANNOTATION));
    }
    let api = rt.block_on(ns.api::<Deployment>().get("api")).expect("api");
    let template = api.spec.and_then(|s| s.template.spec).expect("template");
    assert_eq!(template.automount_service_account_token, Some(true), "the user was pinned first");

    // The worker is "restarted": admission gives the new pod no token; it still reaches for one.
    let p = rt.block_on(harness::deployment_pod(&ns, &node_name, "worker", "shared", "worker-2"));
    assert_eq!(p.automount_volume, "", "no automount volume after the change");
    let (no_volume, c) = rt.block_on(p.place(&ns, &mut node));
    assert!(no_volume.is_none());
    let mut a = node.spawn_tokenless(&c);
    assert_eq!(a.run(&Action::Open(format!("{SA_DIR}/token").into())), Err(libc::ENOENT));
    published(rt, client, &node_name, Duration::from_secs(30), |ev| {
        entry_named(ev, "worker-2", "app").is_some_and(|e| e.missing_token_opens == 1)
    });
    let inputs =
        rt.block_on(plan::live::load(client, Some(&ns.name), liveness::DEFAULT_NAMESPACE)).expect("live inputs");
    let found = plan::verify::verify(&inputs, &Policy::default());
    assert!(found.unverified.is_empty(), "{found:#?}");
    let regressions = found.regressions;
    assert_eq!(regressions.len(), 1, "{regressions:#?}");
    assert_eq!(regressions[0].workload.name, "worker");

    // The CLI says the same, with exit code 3.
    let kubeconfig = std::env::var(probe_tests::kube::KUBECONFIG_ENV).expect("kubeconfig");
    let bin = std::env::var("TOKENPROBE_AGENT_BIN").expect("TOKENPROBE_AGENT_BIN");
    let out = std::process::Command::new(&bin)
        .args(["verify", "--kubeconfig", &kubeconfig, "-n", &ns.name])
        .output()
        .expect("run probe-agent verify");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("worker-2/app"));
    let out = std::process::Command::new(&bin)
        .args(["plan", "--kubeconfig", &kubeconfig, "-n", &ns.name, "-o", "json"])
        .output()
        .expect("run probe-agent plan");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    assert!(json["workloads"].as_array().is_some_and(|w| !w.is_empty()));

    // The rollback applies and restores the token.
    rt.block_on(harness::apply_patch(client, &regressions[0].rollback));
    let worker = rt.block_on(ns.api::<Deployment>().get("worker")).expect("worker");
    assert_eq!(worker.spec.and_then(|s| s.template.spec).and_then(|s| s.automount_service_account_token), Some(true));
    drop(actors);
    agent.stop(rt);
    rt.block_on(ns.cleanup());
}

/// `probe-agent plan -n <namespace> -o json` against the test API server with the audit log.
fn plan_with_audit(namespace: &str, audit_log: &std::path::Path, policy: &str) -> serde_json::Value {
    let kubeconfig = std::env::var(probe_tests::kube::KUBECONFIG_ENV).expect("kubeconfig");
    let bin = std::env::var("TOKENPROBE_AGENT_BIN").expect("TOKENPROBE_AGENT_BIN");
    let out = std::process::Command::new(&bin)
        .args(["plan", "--kubeconfig", &kubeconfig, "-n", namespace, "-o", "json", "--audit-policy", policy])
        .arg("--audit-log")
        .arg(audit_log)
        .output()
        .expect("run probe-agent plan");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("plan JSON")
}

/// `probe-agent plan -n <namespace> -o json` against the test API server, no files.
fn plan_live(namespace: &str) -> serde_json::Value {
    let kubeconfig = std::env::var(probe_tests::kube::KUBECONFIG_ENV).expect("kubeconfig");
    let bin = std::env::var("TOKENPROBE_AGENT_BIN").expect("TOKENPROBE_AGENT_BIN");
    let out = std::process::Command::new(&bin)
        .args(["plan", "--kubeconfig", &kubeconfig, "-n", namespace, "-o", "json"])
        .output()
        .expect("run probe-agent plan");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("plan JSON")
}

/// The audit witness collected continuously: the test API server's own webhook backend posted
/// this case's requests to `probe-agent audit-sink` (started before them, at the address the
/// server's webhook configuration names), which keeps the totals in a `TokenAuditEvidence`
/// object; the planner reads that without any file.
fn audit_sink_collected(rt: &Runtime, client: &Client, ns: &TestNamespace, sink: harness::AuditSink, caller_uid: &str) {
    assert!(sink.post("{not an event list").starts_with("HTTP/1.1 400"), "a bad batch is refused");
    let totals = sink.wait_for(rt, client, |t| {
        t.pods.iter().any(|p| p.pod_uid == caller_uid && p.tally.requests == 3)
            && t.service_accounts.iter().any(|s| s.namespace == ns.name && s.tally.requests == 1)
    });
    let p = totals.pods.iter().find(|p| p.pod_uid == caller_uid).expect("the caller's totals");
    assert_eq!((p.pod.as_str(), p.denied), ("caller", 3), "{p:?}");
    let live = plan_live(&ns.name);
    let c = live["workloads"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["workload"]["name"] == "caller"))
        .expect("caller");
    assert_eq!(c["verdict"], "uses-token", "from the sink's object alone: {c:#}");
    assert!(
        live["audit"]["files"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == &json!(format!("tokenauditevidence/{}", sink.name)))),
        "{:#}",
        live["audit"]
    );
    sink.stop(rt, client);
}

/// The second witness against the real API server and its audit log (the log backend with the
/// repository's policy): two bare pods share one ServiceAccount on a node without an agent;
/// one calls the API server with a token bound to it (minted with the `TokenRequest` API, as the
/// kubelet mints them), the other never does; a token of the same ServiceAccount bound to no
/// pod makes one request. The planner, from the cluster and the audit log alone, calls the first
/// a token user, cannot call the second anything (no agent watched it), and flags the unbound
/// token on the ServiceAccount.
fn audit_second_witness(rt: &Runtime, client: &Client) {
    use k8s_openapi::api::{
        authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec},
        core::v1::ConfigMap,
    };
    let audit_log = std::path::PathBuf::from(std::env::var_os("TOKENPROBE_AUDIT_LOG").expect("TOKENPROBE_AUDIT_LOG"));
    let policy = std::env::var("TOKENPROBE_AUDIT_POLICY").expect("TOKENPROBE_AUDIT_POLICY");
    let node_name = format!("tp-no-agent-{}", std::process::id());
    // Installed as users install it, though no agent runs here.
    harness::ensure_crd(rt, client);
    let ns = rt.block_on(TestNamespace::new(client, "audit"));
    let _: ServiceAccount = rt.block_on(ns.create(json!({"metadata": {"name": "shared"}})));
    let caller = rt.block_on(api_pod(&ns, &node_name, "caller", "shared", &["app"], None));
    let _quiet = rt.block_on(api_pod(&ns, &node_name, "quiet", "shared", &["app"], None));
    let sas: Api<ServiceAccount> = ns.api();
    let mint = |bound: Option<BoundObjectReference>| {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec!["https://kubernetes.default.svc.cluster.local".into()],
                bound_object_ref: bound,
                expiration_seconds: Some(600),
            },
            ..TokenRequest::default()
        };
        let minted = rt.block_on(sas.create_token_request("shared", &PostParams::default(), &request)).expect("token");
        minted.status.expect("token status").token
    };
    let calls = |token: String, n: usize| {
        let mut config = harness::server(rt);
        config.auth_info = kube::config::AuthInfo { token: Some(token.into()), ..kube::config::AuthInfo::default() };
        rt.block_on(async {
            let as_pod = Client::try_from(config).expect("client");
            let configmaps: Api<ConfigMap> = Api::namespaced(as_pod, &ns.name);
            for _ in 0..n {
                // No RBAC for it: 403, but authenticated as the pod's ServiceAccount — use.
                drop(configmaps.list(&kube::api::ListParams::default()).await);
            }
        });
    };
    let bound = BoundObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some("caller".into()),
        uid: Some(caller.uid.clone()),
    };
    // The sink listens where the server's audit webhook posts before any request is made.
    let sink = harness::AuditSink::start(rt, client, &format!("tp-audit-{}", std::process::id()));
    calls(mint(Some(bound)), 3);
    calls(mint(None), 1);

    // The log backend writes each event as its request completes: wait for all four.
    let read = || probe_agent::auditlog::AuditEvidence::read(std::slice::from_ref(&audit_log), Some(policy.as_ref()));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let audit = loop {
        let audit = read().unwrap_or_else(|e| panic!("the test API server's audit log: {e}"));
        let by_pod = audit.pods.get(&caller.uid).map_or(0, |p| p.tally.requests);
        let unbound = audit.service_accounts.get(&format!("{}/shared", ns.name)).map_or(0, |s| s.tally.requests);
        if by_pod == 3 && unbound == 1 {
            break audit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{by_pod} requests by the pod, {unbound} unbound, in the audit log"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let p = &audit.pods[&caller.uid];
    assert_eq!(
        (p.pod.as_str(), p.namespace.as_str(), p.service_account.as_str()),
        ("caller", ns.name.as_str(), "shared")
    );
    assert_eq!(p.denied, 3);
    assert!(p.tally.verbs.contains("list") && p.tally.resources.contains("configmaps"), "{p:?}");
    assert!(audit.policy.as_ref().is_some_and(|c| !c.blind && c.hides.is_empty()), "{:?}", audit.policy);

    // The planner, through the CLI, from the cluster and the audit log.
    let plan = plan_with_audit(&ns.name, &audit_log, &policy);
    let workload = |name: &str| {
        plan["workloads"]
            .as_array()
            .and_then(|w| w.iter().find(|w| w["workload"]["name"] == name))
            .cloned()
            .expect(name)
    };
    let c = workload("caller");
    assert_eq!(c["verdict"], "uses-token", "{c:#}");
    assert!(
        c["reasons"][0].as_str().is_some_and(|r| r.starts_with("3 API requests with its token seen by the API server")),
        "{c:#}"
    );
    let q = workload("quiet");
    assert_eq!(q["verdict"], "insufficient-evidence", "audit silence proves nothing: {q:#}");
    let sa = plan["serviceAccounts"].as_array().and_then(|s| s.iter().find(|s| s["name"] == "shared")).expect("sa");
    assert_eq!(sa["verdict"], "uses-token", "{sa:#}");
    assert!(
        sa["reasons"].as_array().is_some_and(|r| r.iter().any(|r| r
            .as_str()
            .is_some_and(|r| r.contains("1 API requests by this ServiceAccount with tokens bound to no pod")))),
        "{sa:#}"
    );
    assert!(
        plan["audit"]["policy"].as_str().is_some_and(|p| p.contains("records every completed service-account request")),
        "{:#}",
        plan["audit"]
    );

    audit_sink_collected(rt, client, &ns, sink, &caller.uid);
    rt.block_on(ns.cleanup());
}
