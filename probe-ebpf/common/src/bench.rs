//! The benchmark's baseline: what path-based detectors do — send every open's path to user
//! space, where it is matched. Never loaded by the agent.

/// Longest path carried.
pub const PATH_MAX: usize = 256;

/// One open, as the baseline streams it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathEvent {
    pub tgid: u32,
    pub len: u32,
    pub path: [u8; PATH_MAX],
}
