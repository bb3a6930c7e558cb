//! Watched projected volumes, keyed by their superblock's kernel `s_dev`.

/// Kernel `s_dev` (`MAJOR << 20 | MINOR`) from userspace major/minor numbers.
#[must_use]
pub const fn kernel_dev(major: u32, minor: u32) -> u32 {
    (major << 20) | minor
}

/// Userspace (major, minor) of a kernel `s_dev`.
#[must_use]
pub const fn split_dev(dev: u32) -> (u32, u32) {
    (dev >> 20, dev & 0xf_ffff)
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VolumeValue {
    /// Agent-assigned id, used as `CountKey::target`.
    pub id: u32,
    /// Reserved, zero.
    pub flags: u32,
}
