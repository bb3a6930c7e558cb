//! Self-tests of an attached mode: make one event the mode must see, and check it was counted.
//!
//! Attaching is not proof of seeing: a kernel with `CONFIG_BPF_LSM=y` but without `bpf` in its
//! active LSM list loads and attaches LSM programs that are never called. So after attaching,
//! the agent briefly watches a file it opens itself (and an address it connects to itself, on
//! loopback) under a reserved id, and keeps the mode only if the event was counted.

use std::{
    net::{TcpListener, TcpStream},
    os::unix::fs::MetadataExt as _,
    path::Path,
    time::Duration,
};

use aya::maps::{HashMap, MapData, MapError};
use probe_common::{
    counters::{CountKey, CountValue, kind},
    targets::TargetValue,
    volumes::{VolumeValue, kernel_dev},
};

/// The volume and target id of self-test events; real ids count up from 1.
pub const CANARY_ID: u32 = u32::MAX;

/// The file the file-open self-test opens: procfs, which holds no token volume.
const CANARY_FILE: &str = "/proc/self/stat";

fn map_err(what: &str) -> impl FnOnce(MapError) -> String + '_ {
    move |e| format!("self-test: cannot {what}: {e}")
}

/// Opens a file on a briefly watched filesystem; `Ok` when the attached hook counted it.
///
/// # Errors
/// Why the self-test failed, or that the open was not seen.
pub fn file_open_seen(
    volumes: &mut crate::probe::watched::Volumes,
    counters: &mut HashMap<MapData, CountKey, CountValue>,
) -> Result<(), String> {
    let path = Path::new(CANARY_FILE);
    // stat, not open: nothing is counted before the filesystem is watched.
    let meta = std::fs::metadata(path).map_err(|e| format!("self-test: cannot stat {CANARY_FILE}: {e}"))?;
    let dev = kernel_dev(libc::major(meta.dev()), libc::minor(meta.dev()));
    volumes.insert(dev, VolumeValue { id: CANARY_ID, flags: 0 }).map_err(map_err("watch the test file"))?;
    let opened = std::fs::File::open(path);
    let unwatched = volumes.remove(dev);
    opened.map_err(|e| format!("self-test: cannot open {CANARY_FILE}: {e}"))?;
    unwatched.map_err(map_err("unwatch the test file"))?;
    let seen = take_counts(counters, |k| kind::is_read(k.kind))?;
    if seen == 0 { Err(format!("attached, but its self-test open of {CANARY_FILE} was not seen")) } else { Ok(()) }
}

/// Connects to a listener of our own on 127.0.0.1; `Ok` when the attached hook counted it.
///
/// # Errors
/// Why the self-test failed, or that the connect was not seen.
pub fn connect_seen(
    targets: &mut crate::probe::watched::Targets,
    counters: &mut HashMap<MapData, CountKey, CountValue>,
) -> Result<(), String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("self-test: cannot listen on 127.0.0.1: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("self-test: {e}"))?;
    let key = crate::targets::keys_for(addr)[0];
    targets.insert(key, TargetValue { id: CANARY_ID, flags: 0 }).map_err(map_err("watch the test address"))?;
    let connected = TcpStream::connect_timeout(&addr, Duration::from_secs(2));
    let unwatched = targets.remove(&key);
    connected.map_err(|e| format!("self-test: cannot connect to {addr}: {e}"))?;
    unwatched.map_err(map_err("unwatch the test address"))?;
    let seen = take_counts(counters, |k| k.kind == kind::API_CONNECT)?;
    if seen == 0 { Err(format!("attached, but its self-test connect to {addr} was not seen")) } else { Ok(()) }
}

/// Removes the self-test counters matching `which` and returns their total.
fn take_counts(
    counters: &mut HashMap<MapData, CountKey, CountValue>,
    which: impl Fn(&CountKey) -> bool,
) -> Result<u64, String> {
    let live = crate::counters::read_live(counters).map_err(map_err("read the counters"))?;
    let mut total = 0u64;
    for (key, value) in live.into_iter().filter(|(k, _)| k.target == CANARY_ID && which(k)) {
        total = total.saturating_add(value.count);
        match counters.remove(&key) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(map_err("clear the counters")(e)),
        }
    }
    Ok(total)
}
