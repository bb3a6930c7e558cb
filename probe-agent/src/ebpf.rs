//! The kernel programs, embedded.

/// The eBPF object built by build.rs (probe-ebpf's `tokenprobe` binary).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tokenprobe"));
