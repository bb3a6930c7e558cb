//! A `kube::Client` for the test API server that `cargo xtask apiserver start` runs.
//!
//! `TOKENPROBE_KUBECONFIG` names its kubeconfig (`cargo xtask test` sets it). Without it, tests
//! that need the server fail in CI and are reported as skipped elsewhere — never passed.

use std::path::PathBuf;

use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

/// The environment variable naming the test API server's kubeconfig.
pub const KUBECONFIG_ENV: &str = "TOKENPROBE_KUBECONFIG";
/// The same, for the legacy instance (without bound service-account token volumes).
pub const LEGACY_KUBECONFIG_ENV: &str = "TOKENPROBE_LEGACY_KUBECONFIG";

/// Why there is no client.
#[derive(Debug)]
pub enum NoServer {
    /// Not configured: skip (fail in CI).
    NotConfigured,
    /// Configured but unusable: always a failure.
    Broken(String),
}

/// A client for the test API server.
///
/// # Errors
/// [`NoServer`] saying why there is none.
pub async fn client() -> Result<Client, NoServer> {
    client_from(KUBECONFIG_ENV).await
}

/// A client for the legacy test API server (token Secrets instead of projected tokens).
///
/// # Errors
/// [`NoServer`] saying why there is none.
pub async fn legacy_client() -> Result<Client, NoServer> {
    client_from(LEGACY_KUBECONFIG_ENV).await
}

/// The connection to the test API server (not checked).
///
/// # Errors
/// [`NoServer`] saying why there is none.
pub async fn config() -> Result<Config, NoServer> {
    config_from(KUBECONFIG_ENV).await
}

/// The same, for the legacy test API server.
///
/// # Errors
/// [`NoServer`] saying why there is none.
pub async fn legacy_config() -> Result<Config, NoServer> {
    config_from(LEGACY_KUBECONFIG_ENV).await
}

async fn config_from(env: &str) -> Result<Config, NoServer> {
    let path = std::env::var_os(env).map(PathBuf::from).ok_or(NoServer::NotConfigured)?;
    let kubeconfig =
        Kubeconfig::read_from(&path).map_err(|e| NoServer::Broken(format!("cannot read {}: {e}", path.display())))?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| NoServer::Broken(format!("bad kubeconfig {}: {e}", path.display())))
}

async fn client_from(env: &str) -> Result<Client, NoServer> {
    let config = config_from(env).await?;
    let client = Client::try_from(config).map_err(|e| NoServer::Broken(format!("cannot build a client: {e}")))?;
    client.apiserver_version().await.map_err(|e| NoServer::Broken(format!("the API server does not answer: {e}")))?;
    Ok(client)
}
