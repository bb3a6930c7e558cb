//! tokenprobe's node agent: loads the kernel programs with the best hooks the kernel allows,
//! follows the node's projected token volumes and containers, and reports evidence of which
//! containers read the service-account token or connect to the API server.

pub mod btf;
pub mod canary;
pub mod cgroup;
pub mod cli;
pub mod clock;
pub mod counters;
pub mod ebpf;
pub mod evidence;
pub mod k8s;
pub mod mountinfo;
pub mod node;
pub mod offsets;
pub mod plan;
pub mod probe;
pub mod run;
pub mod targets;
pub mod tracefs;
pub mod watch;
