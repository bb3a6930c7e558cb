//! tokenprobe's node agent: loads the kernel programs with the best hooks the kernel allows,
//! follows the node's projected token volumes and containers, and reports evidence of which
//! containers read the service-account token or connect to the API server.
//!
//! The `agent` feature (on by default) builds the kernel programs and everything that loads
//! them; without it (`--no-default-features`) this is the planner alone, which builds with
//! stable Rust and no eBPF toolchain (the `kubectl-tokenprobe` binary).

pub mod auditlog;
#[cfg(feature = "agent")]
pub mod auditsink;
#[cfg(feature = "agent")]
pub mod btf;
#[cfg(feature = "agent")]
pub mod canary;
pub mod cgroup;
pub mod cli;
pub mod clock;
pub mod commands;
#[cfg(feature = "agent")]
pub mod counters;
#[cfg(feature = "agent")]
pub mod ebpf;
pub mod evidence;
#[cfg(test)]
mod fuzz;
pub mod k8s;
pub mod mountinfo;
#[cfg(feature = "agent")]
pub mod node;
#[cfg(feature = "agent")]
pub mod offsets;
pub mod plan;
#[cfg(feature = "agent")]
pub mod probe;
#[cfg(feature = "agent")]
pub mod run;
#[cfg(feature = "agent")]
pub mod targets;
#[cfg(feature = "agent")]
pub mod tracefs;
#[cfg(feature = "agent")]
pub mod watch;
