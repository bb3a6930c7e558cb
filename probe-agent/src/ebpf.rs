//! The kernel programs, embedded.

/// The eBPF object built by build.rs (probe-ebpf's `tokenprobe` binary).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tokenprobe"));

/// Every program in the object, by the name the agent loads it with.
pub const PROGRAMS: [&str; 9] = [
    "tp_file_open_lsm",
    "tp_file_open_fentry",
    "tp_file_open_kprobe",
    "tp_file_open_tracepoint",
    "tp_connect4_cgroup",
    "tp_connect6_cgroup",
    "tp_connect_lsm",
    "tp_connect4_fentry",
    "tp_connect6_fentry",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn defines(symbol: &str) -> bool {
        OBJECT.windows(symbol.len() + 1).any(|w| &w[..symbol.len()] == symbol.as_bytes() && w[symbol.len()] == 0)
    }

    #[test]
    fn object_defines_every_map_program_and_the_config() {
        for name in probe_common::maps::ALL.iter().chain(PROGRAMS.iter()).chain([&probe_common::config::GLOBAL]) {
            assert!(defines(name), "the eBPF object has no symbol {name}");
        }
        assert!(!defines("TP_NO_SUCH_MAP"));
    }
}
