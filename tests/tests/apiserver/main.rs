//! Integration tests against a real kube-apiserver (1.20, from `cargo xtask apiserver start`):
//! the kube paths tokenprobe needs, and its fallbacks for APIs 1.20 lacks.
//!
//! `cargo xtask test` starts the server and runs these; alone:
//! `cargo xtask apiserver start && TOKENPROBE_KUBECONFIG=… cargo test -p probe-tests --test apiserver`.

mod deploy;
mod kube_paths;
mod plugin;

use std::process::ExitCode;

use probe_tests::{
    kube::{NoServer, client},
    runner::Suite,
};

type Case = fn(&tokio::runtime::Runtime, &kube::Client);

fn main() -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut suite = Suite::from_args();
    let mut cases: Vec<(&str, Case)> = kube_paths::CASES.to_vec();
    cases.push(("kubectl_plugin", plugin::kubectl_plugin));
    cases.push(("kustomize_overlays", deploy::kustomize_overlays));
    match rt.block_on(client()) {
        Ok(client) => {
            for (name, case) in cases {
                suite.run(&format!("apiserver/{name}"), || case(&rt, &client));
            }
        }
        Err(NoServer::NotConfigured) if std::env::var_os("CI").is_none() => {
            let reason = format!(
                "no test API server: `cargo xtask apiserver start`, then set {} to the kubeconfig it prints",
                probe_tests::kube::KUBECONFIG_ENV
            );
            for (name, _) in cases {
                suite.skip(&format!("apiserver/{name}"), &reason);
            }
            return suite.finish_allowing_skips();
        }
        Err(NoServer::NotConfigured) => {
            eprintln!(
                "error: CI is set but {} is not: the API server tests must run",
                probe_tests::kube::KUBECONFIG_ENV
            );
            return ExitCode::FAILURE;
        }
        Err(NoServer::Broken(why)) => {
            eprintln!("error: the test API server is unusable: {why}");
            return ExitCode::FAILURE;
        }
    }
    suite.finish()
}
