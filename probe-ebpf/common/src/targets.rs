//! API server connect targets.

/// `AF_INET` / `AF_INET6` as used in [`TargetKey::family`].
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// Words of the target-port bitmap: one bit per port.
pub const PORT_WORDS: u32 = 1 << 10;

/// The bitmap word and bit of a port (host byte order).
#[expect(clippy::inline_always, reason = "called from kernel programs, which must not make calls for this")]
#[inline(always)]
#[must_use]
pub const fn port_bit(port: u16) -> (u32, u64) {
    ((port >> 6) as u32, 1 << (port & 63))
}

/// Key of the targets map: one address with its own port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TargetKey {
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    /// Network byte order; IPv4 in the first four bytes, the rest zero.
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetValue {
    /// Agent-assigned id, used as `CountKey::target`.
    pub id: u32,
    /// Reserved, zero.
    pub flags: u32,
}
