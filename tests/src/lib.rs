//! The fake-node harness for tokenprobe's privileged tests (root, real kernel), and the small
//! runner those tests use: it runs every case once per hook mode and reports the modes the
//! kernel refuses as skipped, with the probe's reason.

pub mod actor;
pub mod agent;
pub mod caps;
pub mod cluster;
pub mod fake_node;
pub mod kube;
pub mod real_node;
pub mod runner;
