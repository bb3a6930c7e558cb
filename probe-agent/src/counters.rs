//! Reading the in-kernel counters, and retiring those of containers that are gone.
//!
//! The kernel map is bounded; counters of a container whose cgroups were removed can never
//! change again, so they move to user space and leave the kernel map free for new containers.

use std::collections::{HashMap, HashSet};

use aya::maps::{HashMap as BpfHashMap, MapData, MapError};
use probe_common::counters::{CountKey, CountValue};

/// Counters moved out of the kernel map.
#[derive(Debug, Default)]
pub struct CounterStore {
    retired: HashMap<CountKey, CountValue>,
}

/// Every live counter in the kernel map. Keys deleted while iterating are skipped.
///
/// # Errors
/// A map error other than a key vanishing mid-iteration.
pub fn read_live(map: &BpfHashMap<MapData, CountKey, CountValue>) -> Result<HashMap<CountKey, CountValue>, MapError> {
    let mut out = HashMap::new();
    for item in map {
        match item {
            Ok((k, v)) => {
                out.insert(k, v);
            }
            Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Adds `b` into `a`: counts add, the time span widens.
pub fn merge_value(a: &mut CountValue, b: &CountValue) {
    a.count = a.count.saturating_add(b.count);
    a.first_ns = a.first_ns.min(b.first_ns);
    a.last_ns = a.last_ns.max(b.last_ns);
}

impl CounterStore {
    /// Moves the counters of containers (by kernel key: cgroup id or mount-namespace inode) out
    /// of the kernel map.
    ///
    /// # Errors
    /// A failed map read; counters already moved stay moved.
    pub fn retire(
        &mut self,
        map: &mut BpfHashMap<MapData, CountKey, CountValue>,
        keys: &HashSet<u64>,
    ) -> Result<usize, MapError> {
        let live = read_live(map)?;
        let mut moved = 0;
        for (key, value) in live.into_iter().filter(|(k, _)| keys.contains(&k.key_id)) {
            match map.remove(&key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(e),
            }
            self.retired.entry(key).and_modify(|v| merge_value(v, &value)).or_insert(value);
            moved += 1;
        }
        Ok(moved)
    }

    /// Forgets the moved counters of `keys` (their totals now live elsewhere).
    pub fn forget(&mut self, keys: &HashSet<u64>) {
        self.retired.retain(|k, _| !keys.contains(&k.key_id));
    }

    /// The retired counters merged with `live` ones.
    #[must_use]
    pub fn merged(&self, mut live: HashMap<CountKey, CountValue>) -> HashMap<CountKey, CountValue> {
        for (k, v) in &self.retired {
            live.entry(*k).and_modify(|l| merge_value(l, v)).or_insert(*v);
        }
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_widens_and_adds() {
        let mut a = CountValue { count: 2, first_ns: 10, last_ns: 20 };
        merge_value(&mut a, &CountValue { count: 3, first_ns: 5, last_ns: 15 });
        assert_eq!(a, CountValue { count: 5, first_ns: 5, last_ns: 20 });
    }

    #[test]
    fn merged_includes_retired() {
        let mut store = CounterStore::default();
        let k1 = CountKey { key_id: 1, ..CountKey::default() };
        let k2 = CountKey { key_id: 2, ..CountKey::default() };
        store.retired.insert(k1, CountValue { count: 4, first_ns: 1, last_ns: 2 });
        let live = [(k2, CountValue { count: 1, first_ns: 3, last_ns: 3 })].into_iter().collect();
        let all = store.merged(live);
        assert_eq!(all.len(), 2);
        assert_eq!(all[&k1].count, 4);
    }
}
