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

/// Words of the watched-volume bitmap: one bit per anonymous device minor (tmpfs superblocks
/// have anonymous devices, major 0, minors below 2^20).
pub const BITMAP_WORDS: u32 = 1 << 14;

/// Index of the bitmap array's last slot, past the bits: the number of watched volumes whose
/// device is not anonymous (a kubelet that does not back token volumes with tmpfs). While it is
/// not zero, opens on such devices fall through to the volumes map instead of being rejected.
pub const OTHER_DEVICES: u32 = BITMAP_WORDS;

/// The bitmap word and bit of a kernel `s_dev`; `None` for a device that is not anonymous
/// (major not 0), which only [`OTHER_DEVICES`] can admit.
#[expect(clippy::inline_always, reason = "called from kernel programs, which must not make calls for this")]
#[inline(always)]
#[must_use]
pub const fn bit(dev: u32) -> Option<(u32, u64)> {
    if dev >> 20 != 0 {
        return None;
    }
    let minor = dev & 0xf_ffff;
    Some((minor >> 6, 1 << (minor & 63)))
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VolumeValue {
    /// Agent-assigned id, used as `CountKey::target`.
    pub id: u32,
    /// Reserved, zero.
    pub flags: u32,
}
