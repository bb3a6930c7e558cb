//! The ABI between tokenprobe's kernel programs and its agent.
//!
//! Every map key, map value, ring-buffer event and map name is defined here once. All types are
//! `#[repr(C)]`, `Copy`, use `u32` flags instead of `bool` and carry explicit padding, so they are
//! plain old data on both sides (each layout is pinned by a size assertion below).
#![no_std]

pub mod bench;
pub mod cgroups;
pub mod config;
pub mod counters;
pub mod maps;
pub mod notice;
pub mod stats;
pub mod targets;
pub mod volumes;

#[cfg(feature = "user")]
mod user {
    //! `aya::Pod` for every type that crosses the boundary.
    use crate::{bench, cgroups, config, counters, notice, targets, volumes};

    // SAFETY: all of these are `#[repr(C)]`, `Copy`, without implicit padding, and every bit
    // pattern is a valid value.
    unsafe impl aya::Pod for bench::PathEvent {}
    unsafe impl aya::Pod for cgroups::CgroupEvent {}
    unsafe impl aya::Pod for config::Config {}
    unsafe impl aya::Pod for config::Offsets {}
    unsafe impl aya::Pod for crate::maps::CgroupRef {}
    unsafe impl aya::Pod for counters::CountKey {}
    unsafe impl aya::Pod for counters::CountValue {}
    unsafe impl aya::Pod for notice::Notice {}
    unsafe impl aya::Pod for targets::TargetKey {}
    unsafe impl aya::Pod for targets::TargetValue {}
    unsafe impl aya::Pod for volumes::VolumeValue {}
}

/// Compile-time layout checks: the kernel side and user space must agree byte for byte.
const _: () = {
    assert!(size_of::<counters::CountKey>() == 24);
    assert!(size_of::<counters::CountValue>() == 24);
    assert!(size_of::<targets::TargetKey>() == 20);
    assert!(size_of::<targets::TargetValue>() == 8);
    assert!(size_of::<volumes::VolumeValue>() == 8);
    assert!(size_of::<notice::Notice>() == 56);
    assert!(size_of::<maps::CgroupRef>() == 16);
    assert!(size_of::<cgroups::CgroupEvent>() == 32 + cgroups::PATH_MAX);
    assert!(size_of::<config::Offsets>() == 4 * config::Offsets::FIELDS);
    assert!(size_of::<config::Config>() == 16 + size_of::<config::Offsets>());
    assert!(size_of::<bench::PathEvent>() == 8 + bench::PATH_MAX);
};
