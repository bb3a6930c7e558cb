//! The kernel's view of what is watched: each hash map (volumes by device, targets by address)
//! paired with the bitmap the programs check first, kept in step.
//!
//! Order matters for soundness: an entry goes into the hash map before its bit is set, and its
//! bit is cleared before it leaves the map. A bit without an entry costs one lookup that misses;
//! an entry without its bit would be an event missed, and that never happens.

use std::collections::HashMap as StdHashMap;

use aya::maps::{Array, HashMap, MapData, MapError};
use probe_common::{
    targets::{TargetKey, TargetValue, port_bit},
    volumes::{OTHER_DEVICES, VolumeValue, bit},
};

/// Watched volumes: `TP_VOLUMES` and `TP_VOLUME_BITS`.
pub struct Volumes {
    map: HashMap<MapData, u32, VolumeValue>,
    bits: Array<MapData, u64>,
}

/// Watched connect targets: `TP_TARGETS` and `TP_PORT_BITS` (ports shared by several targets are
/// reference-counted here).
pub struct Targets {
    map: HashMap<MapData, TargetKey, TargetValue>,
    bits: Array<MapData, u64>,
    ports: StdHashMap<u16, u32>,
}

fn set_bit(bits: &mut Array<MapData, u64>, word: u32, mask: u64, on: bool) -> Result<(), MapError> {
    let old = bits.get(&word, 0)?;
    let new = if on { old | mask } else { old & !mask };
    if new == old { Ok(()) } else { bits.set(word, new, 0) }
}

impl Volumes {
    pub(super) fn new(map: HashMap<MapData, u32, VolumeValue>, bits: Array<MapData, u64>) -> Self {
        Self { map, bits }
    }

    /// Watches kernel device `dev` as `value`.
    ///
    /// # Errors
    /// The map is full or the kernel refused the update; nothing is left half-watched.
    pub fn insert(&mut self, dev: u32, value: VolumeValue) -> Result<(), MapError> {
        let existed = self.map.get(&dev, 0).is_ok();
        self.map.insert(dev, value, 0)?;
        if existed {
            return Ok(());
        }
        let marked = if let Some((word, mask)) = bit(dev) {
            set_bit(&mut self.bits, word, mask, true)
        } else {
            self.bits.get(&OTHER_DEVICES, 0).and_then(|others| self.bits.set(OTHER_DEVICES, others + 1, 0))
        };
        if let Err(e) = marked {
            // Undo the insert; the bit's error is the one worth reporting.
            self.map.remove(&dev).ok();
            return Err(e);
        }
        Ok(())
    }

    /// Stops watching `dev`; `Err(KeyNotFound)` when it was not watched.
    ///
    /// # Errors
    /// The kernel refused the update.
    pub fn remove(&mut self, dev: u32) -> Result<(), MapError> {
        if self.map.get(&dev, 0).is_err() {
            return Err(MapError::KeyNotFound);
        }
        if let Some((word, mask)) = bit(dev) {
            set_bit(&mut self.bits, word, mask, false)?;
        } else {
            let others = self.bits.get(&OTHER_DEVICES, 0)?;
            self.bits.set(OTHER_DEVICES, others.saturating_sub(1), 0)?;
        }
        self.map.remove(&dev)
    }

    /// The watched devices (for tests and diagnostics).
    #[must_use]
    pub fn devices(&self) -> Vec<u32> {
        self.map.keys().filter_map(Result::ok).collect()
    }
}

impl Targets {
    pub(super) fn new(map: HashMap<MapData, TargetKey, TargetValue>, bits: Array<MapData, u64>) -> Self {
        Self { map, bits, ports: StdHashMap::new() }
    }

    /// Watches connects to `key` as `value`.
    ///
    /// # Errors
    /// The map is full or the kernel refused the update; nothing is left half-watched.
    pub fn insert(&mut self, key: TargetKey, value: TargetValue) -> Result<(), MapError> {
        let existed = self.map.get(&key, 0).is_ok();
        self.map.insert(key, value, 0)?;
        if existed {
            return Ok(());
        }
        let (word, mask) = port_bit(key.port);
        if let Err(e) = set_bit(&mut self.bits, word, mask, true) {
            // Undo the insert; the bit's error is the one worth reporting.
            self.map.remove(&key).ok();
            return Err(e);
        }
        *self.ports.entry(key.port).or_default() += 1;
        Ok(())
    }

    /// Stops watching `key`; `Err(KeyNotFound)` when it was not watched.
    ///
    /// # Errors
    /// The kernel refused the update.
    pub fn remove(&mut self, key: &TargetKey) -> Result<(), MapError> {
        if self.map.get(key, 0).is_err() {
            return Err(MapError::KeyNotFound);
        }
        let users = self.ports.get(&key.port).copied().unwrap_or(0);
        if users <= 1 {
            let (word, mask) = port_bit(key.port);
            set_bit(&mut self.bits, word, mask, false)?;
            self.ports.remove(&key.port);
        } else {
            self.ports.insert(key.port, users - 1);
        }
        self.map.remove(key)
    }

    /// The watched addresses (for tests and diagnostics).
    #[must_use]
    pub fn keys(&self) -> Vec<TargetKey> {
        self.map.keys().filter_map(Result::ok).collect()
    }
}
