//! API-connect detector: every mode builds a [`TargetKey`] and calls [`on_connect`].

use aya_ebpf::{
    EbpfContext,
    macros::{cgroup_sock_addr, fentry, lsm},
    programs::{FEntryContext, LsmContext, SockAddrContext},
};
use probe_common::{
    counters::kind,
    targets::{AF_INET, AF_INET6, TargetKey, port_bit},
};

use crate::{
    kernel::read,
    maps::{TP_PORT_BITS, TP_TARGETS},
    record::count,
};

/// Whether any target has this port: an inlined array lookup that rejects nearly every connect
/// before the key is even built.
#[inline(always)]
fn port_watched(port: u16) -> bool {
    let (word, mask) = port_bit(port);
    TP_PORT_BITS.get(word).is_some_and(|bits| *bits & mask != 0)
}

#[inline(always)]
unsafe fn on_connect<C: EbpfContext>(ctx: &C, key: &TargetKey) {
    if let Some(target) = TP_TARGETS.get_ptr(key) {
        count(ctx, (*target).id, kind::API_CONNECT);
    }
}

/// `cgroup` mode, IPv4. Returns 1: allow.
#[cgroup_sock_addr(connect4)]
pub fn tp_connect4_cgroup(ctx: SockAddrContext) -> i32 {
    // SAFETY: the context is the kernel's `struct bpf_sock_addr`; 4-byte loads of its fields.
    unsafe {
        let sa = ctx.sock_addr;
        let port = u16::from_be((*sa).user_port as u16);
        if !port_watched(port) {
            return 1;
        }
        let mut key = TargetKey { family: AF_INET, port, addr: [0; 16] };
        key.addr[..4].copy_from_slice(&(*sa).user_ip4.to_ne_bytes());
        on_connect(&ctx, &key);
    }
    1
}

/// `cgroup` mode, IPv6 (IPv4-mapped addresses included). Returns 1: allow.
#[cgroup_sock_addr(connect6)]
pub fn tp_connect6_cgroup(ctx: SockAddrContext) -> i32 {
    // SAFETY: as above.
    unsafe {
        let sa = ctx.sock_addr;
        let port = u16::from_be((*sa).user_port as u16);
        if !port_watched(port) {
            return 1;
        }
        let mut key = TargetKey { family: AF_INET6, port, addr: [0; 16] };
        key.addr[0..4].copy_from_slice(&(*sa).user_ip6[0].to_ne_bytes());
        key.addr[4..8].copy_from_slice(&(*sa).user_ip6[1].to_ne_bytes());
        key.addr[8..12].copy_from_slice(&(*sa).user_ip6[2].to_ne_bytes());
        key.addr[12..16].copy_from_slice(&(*sa).user_ip6[3].to_ne_bytes());
        on_connect(&ctx, &key);
    }
    1
}

/// Reads a `struct sockaddr_in`/`sockaddr_in6` (UAPI layouts) into a key; `None` for other
/// families. `skip_v4_mapped`: leave IPv4-mapped IPv6 addresses to the IPv4 hook.
#[inline(always)]
unsafe fn key_from_sockaddr(addr: *const u8, skip_v4_mapped: bool) -> Option<TargetKey> {
    // `sin_family` and `sin6_family`, then the port: one read.
    let head: [u8; 4] = read(addr, 0)?;
    let family = u16::from_ne_bytes([head[0], head[1]]);
    let port = u16::from_be_bytes([head[2], head[3]]);
    if !port_watched(port) {
        return None;
    }
    let mut key = TargetKey { family, port, addr: [0; 16] };
    if family == AF_INET {
        let ip: [u8; 4] = read(addr, 4)?;
        key.addr[..4].copy_from_slice(&ip);
    } else if family == AF_INET6 {
        key.addr = read(addr, 8)?;
        let mapped = key.addr[..10] == [0; 10] && key.addr[10] == 0xff && key.addr[11] == 0xff;
        if skip_v4_mapped && mapped {
            return None;
        }
    } else {
        return None;
    }
    Some(key)
}

/// `lsm` mode: `socket_connect(struct socket *sock, struct sockaddr *address, int addrlen)`;
/// returns the verdict so far unchanged.
#[lsm(hook = "socket_connect")]
pub fn tp_connect_lsm(ctx: LsmContext) -> i32 {
    let address: *const u8 = ctx.arg(1);
    let ret: i32 = ctx.arg(3);
    // SAFETY: probe reads of the kernel copy of the user's sockaddr.
    unsafe {
        if let Some(key) = key_from_sockaddr(address, false) {
            on_connect(&ctx, &key);
        }
    }
    ret
}

/// `fentry` mode: `tcp_v4_connect(struct sock *sk, struct sockaddr *uaddr, int addr_len)`.
/// Also reached from `tcp_v6_connect` for IPv4-mapped destinations, with the IPv4 address.
#[fentry(function = "tcp_v4_connect")]
pub fn tp_connect4_fentry(ctx: FEntryContext) -> u32 {
    let address: *const u8 = ctx.arg(1);
    // SAFETY: as above.
    unsafe {
        if let Some(key) = key_from_sockaddr(address, false) {
            on_connect(&ctx, &key);
        }
    }
    0
}

/// `fentry` mode: `tcp_v6_connect`. IPv4-mapped destinations are counted by the IPv4 program,
/// which `tcp_v6_connect` calls for them, so each connect counts once.
#[fentry(function = "tcp_v6_connect")]
pub fn tp_connect6_fentry(ctx: FEntryContext) -> u32 {
    let address: *const u8 = ctx.arg(1);
    // SAFETY: as above.
    unsafe {
        if let Some(key) = key_from_sockaddr(address, true) {
            on_connect(&ctx, &key);
        }
    }
    0
}
