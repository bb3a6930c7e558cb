//! The kernel programs, embedded.

/// The eBPF object built by build.rs (probe-ebpf's `tokenprobe` binary).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tokenprobe"));

/// The benchmark's reference programs (probe-ebpf's `tokenprobe-bench` binary): empty programs on
/// each hook and the path-streaming baseline. Only `cargo xtask bench` loads it.
pub static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tokenprobe-bench"));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{ConnectMode, FileMode};

    fn defines(symbol: &str) -> bool {
        OBJECT.windows(symbol.len() + 1).any(|w| &w[..symbol.len()] == symbol.as_bytes() && w[symbol.len()] == 0)
    }

    #[test]
    fn object_defines_every_map_program_and_the_config() {
        let programs = FileMode::CHAIN
            .iter()
            .flat_map(|m| m.programs())
            .chain(ConnectMode::CHAIN.iter().flat_map(|m| m.programs()));
        for name in probe_common::maps::ALL.iter().chain(programs).chain([&probe_common::config::GLOBAL]) {
            assert!(defines(name), "the eBPF object has no symbol {name}");
        }
        assert!(!defines("TP_NO_SUCH_MAP"));
    }
}
