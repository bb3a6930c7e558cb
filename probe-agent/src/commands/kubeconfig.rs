//! The cluster connection, chosen as kubectl chooses it.

use std::path::PathBuf;

use anyhow::Context as _;
use kube::{
    Config,
    config::{KubeConfigOptions, Kubeconfig},
};

/// The client configuration: `kubeconfig` (else `$KUBECONFIG` or `~/.kube/config`, else
/// in-cluster), at its context `context` (else its current one) — as kubectl chooses.
pub async fn client_config(kubeconfig: Option<&PathBuf>, context: Option<&str>) -> anyhow::Result<Config> {
    let options = KubeConfigOptions { context: context.map(str::to_owned), ..KubeConfigOptions::default() };
    Ok(match (kubeconfig, context) {
        (Some(path), _) => {
            let kc = Kubeconfig::read_from(path).with_context(|| format!("cannot read {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .with_context(|| format!("cannot use {}", path.display()))?
        }
        (None, Some(context)) => Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("cannot use context {context} of $KUBECONFIG or ~/.kube/config"))?,
        (None, None) => Config::infer().await.context("no in-cluster configuration and no kubeconfig")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_context_picks_the_cluster() {
        let dir = std::env::temp_dir().join(format!("tokenprobe-kubeconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: a\n\
             clusters:\n- name: a\n  cluster: {server: 'https://127.0.0.1:6443'}\n- name: b\n  cluster: {server: 'https://127.0.0.2:7443'}\n\
             users:\n- name: u\n  user: {token: t}\n\
             contexts:\n- name: a\n  context: {cluster: a, user: u}\n- name: b\n  context: {cluster: b, user: u, namespace: team}\n",
        )
        .expect("kubeconfig");
        let current = client_config(Some(&path), None).await.expect("current context");
        assert_eq!(current.cluster_url.to_string(), "https://127.0.0.1:6443/");
        let b = client_config(Some(&path), Some("b")).await.expect("context b");
        assert_eq!(b.cluster_url.to_string(), "https://127.0.0.2:7443/");
        assert_eq!(b.default_namespace, "team");
        let missing = client_config(Some(&path), Some("nope")).await.expect_err("no such context");
        assert!(format!("{missing:#}").contains("nope"), "{missing:#}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
