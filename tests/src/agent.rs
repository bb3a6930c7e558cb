//! A synchronous wrapper around the agent, for test cases.

use std::time::{Duration, Instant};

use probe_agent::{
    evidence::{ContainerEvidence, Evidence},
    watch::{Agent, WatchConfig, WatchError},
};
use tokio::runtime::Runtime;

use crate::fake_node::Container;

/// A running agent driven from synchronous test code.
pub struct TestAgent<'rt> {
    rt: &'rt Runtime,
    agent: Option<Agent>,
}

impl<'rt> TestAgent<'rt> {
    /// Starts an agent.
    ///
    /// # Errors
    /// As [`Agent::start`].
    pub fn start(rt: &'rt Runtime, config: WatchConfig) -> Result<Self, WatchError> {
        // The suites start hundreds of agents in one process: parse the kernel's BTF once.
        probe_agent::probe::retain_parsed_btf();
        let agent = rt.block_on(Agent::start(config))?;
        Ok(Self { rt, agent: Some(agent) })
    }

    fn agent(&self) -> &Agent {
        self.agent.as_ref().expect("agent running")
    }

    /// The evidence now (after a rescan).
    ///
    /// # Panics
    /// When the agent stopped.
    #[must_use]
    pub fn snapshot(&self) -> Evidence {
        self.rt.block_on(self.agent().snapshot()).expect("snapshot")
    }

    /// The agent's metrics (no rescan, unlike [`TestAgent::snapshot`]).
    ///
    /// # Panics
    /// When the agent stopped.
    #[must_use]
    pub fn metrics(&self) -> probe_agent::watch::Metrics {
        self.rt.block_on(self.agent().handle().metrics()).expect("metrics")
    }

    /// Polls until `ready` holds (the agent follows mounts and cgroups on its own), and returns
    /// that evidence.
    ///
    /// # Panics
    /// After `timeout`, with the last evidence.
    pub fn wait_for(&self, what: &str, timeout: Duration, ready: impl Fn(&Evidence) -> bool) -> Evidence {
        let deadline = Instant::now() + timeout;
        loop {
            let ev = self.rt.block_on(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.agent().snapshot().await
            });
            let ev = ev.expect("snapshot");
            if ready(&ev) {
                return ev;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; evidence: {}", dump(&ev));
        }
    }

    /// Stops the agent and returns the final evidence.
    ///
    /// # Panics
    /// When the agent already stopped.
    #[must_use]
    pub fn stop(mut self) -> Evidence {
        let agent = self.agent.take().expect("agent running");
        self.rt.block_on(agent.stop()).expect("stop")
    }
}

impl Drop for TestAgent<'_> {
    fn drop(&mut self) {
        if let Some(agent) = self.agent.take()
            && let Err(e) = self.rt.block_on(agent.stop())
        {
            eprintln!("warning: agent did not stop cleanly: {e}");
        }
    }
}

/// Pretty JSON of evidence, for failure messages.
#[must_use]
pub fn dump(ev: &Evidence) -> String {
    serde_json::to_string_pretty(ev).unwrap_or_else(|e| format!("<unserializable: {e}>"))
}

/// The evidence entry of a container.
///
/// # Panics
/// When it is missing, with the evidence.
#[must_use]
pub fn entry<'e>(ev: &'e Evidence, container: &Container) -> &'e ContainerEvidence {
    ev.containers
        .iter()
        .find(|c| c.container_id.as_deref() == Some(container.id.as_str()))
        .unwrap_or_else(|| panic!("no evidence for container {}: {}", container.id, dump(ev)))
}

/// The agent's saved state (`<dir>/state.json`) as evidence: its container entries and gaps;
/// `Ok(None)` when there is no state file, `Err` when it is not whole.
///
/// # Errors
/// The file cannot be read or is not a whole state file.
pub fn saved_state(dir: &std::path::Path) -> Result<Option<Evidence>, String> {
    let text = match std::fs::read_to_string(dir.join("state.json")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("not whole JSON: {e}"))?;
    let mut ev = Evidence {
        node: value["node"].as_str().unwrap_or_default().to_owned(),
        agent: probe_agent::evidence::AgentInfo::new("0", time::OffsetDateTime::UNIX_EPOCH),
        containers: serde_json::from_value(value["containers"].clone()).map_err(|e| e.to_string())?,
        retired: Vec::new(),
        volumes: Vec::new(),
    };
    ev.agent.gaps = serde_json::from_value(value["gaps"].clone()).map_err(|e| e.to_string())?;
    Ok(Some(ev))
}

/// Whether the evidence has an entry for a container.
#[must_use]
pub fn has_entry(ev: &Evidence, container: &Container) -> bool {
    ev.containers.iter().any(|c| c.container_id.as_deref() == Some(container.id.as_str()))
}
