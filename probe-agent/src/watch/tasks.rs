//! The agent's background readers: first-seen notices, kernel-side logs, mount-table changes.
//! Each feeds the state owner through a channel; none shares state.

use std::path::PathBuf;

use aya::maps::{MapData, RingBuf};
use probe_common::{cgroups::CgroupEvent, notice::Notice};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, oneshot},
};

pub(super) fn register_ring(ring: RingBuf<MapData>) -> std::io::Result<AsyncFd<RingBuf<MapData>>> {
    // SAFETY: the RingBuf owns its fd and keeps it open for as long as it lives inside the AsyncFd.
    unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(std::io::Error::from)
}

/// Takes every notice the ring buffer holds.
pub(super) fn drain(ring: &mut RingBuf<MapData>) -> Vec<Notice> {
    let mut batch = Vec::new();
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<Notice>() {
            // SAFETY: the kernel wrote a `Notice` (checked length; read unaligned).
            batch.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Notice>()) });
        }
    }
    batch
}

/// Takes every created-cgroup event the ring buffer holds.
pub(super) fn drain_cgroup_events(ring: &mut RingBuf<MapData>) -> Vec<CgroupEvent> {
    let mut batch = Vec::new();
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<CgroupEvent>() {
            // SAFETY: the kernel wrote a `CgroupEvent` (checked length; read unaligned).
            batch.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<CgroupEvent>()) });
        }
    }
    batch
}

/// Forwards the programs' own diagnostics (aya-log) to the agent's log, until `done` fires
/// (then once more, so nothing logged before the agent stopped is lost).
pub(super) async fn forward_kernel_logs(
    logger: aya_log::EbpfLogger<&'static dyn log::Log>,
    mut done: oneshot::Receiver<()>,
) {
    // SAFETY: the logger owns its ring buffer's fd for as long as it lives inside the AsyncFd.
    let registered = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) };
    let mut logger = match registered {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %std::io::Error::from(e), "cannot read kernel-side diagnostics");
            return;
        }
    };
    loop {
        tokio::select! {
            ready = logger.readable_mut() => match ready {
                Ok(mut guard) => {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "kernel-side diagnostics stopped");
                    return;
                }
            },
            _ = &mut done => {
                logger.get_mut().flush();
                return;
            }
        }
    }
}

/// Signals every change of the mount table (`POLLPRI` on mountinfo). Periodic rescans remain
/// the fallback when this cannot be set up.
pub(super) async fn watch_mounts(path: PathBuf, tx: mpsc::Sender<()>) {
    let registered = std::fs::File::open(&path).and_then(|file| {
        // SAFETY: the File owns its fd for as long as the AsyncFd lives.
        unsafe { AsyncFd::register_with_interest(file, Interest::PRIORITY) }.map_err(std::io::Error::from)
    });
    let fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot poll the mount table; relying on periodic rescans");
            return;
        }
    };
    loop {
        match fd.ready(Interest::PRIORITY).await {
            Ok(mut guard) => {
                guard.clear_ready();
                // A full channel already holds a pending rescan.
                if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "mount table polling failed; relying on periodic rescans");
                return;
            }
        }
    }
}
