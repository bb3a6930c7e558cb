//! Node-local persistence: the evidence survives an agent restart.
//!
//! The state file holds cumulative totals (per container, and the retired folds); the kernel
//! maps of a new agent start from zero, so after a restart the saved totals are the base and
//! new counts add to them. Writes are atomic (temporary file, fsync, rename). A file that
//! cannot be read is moved aside with a warning and the agent starts fresh: never a crash loop.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::evidence::{ContainerEvidence, Evidence, Gap, KeyTotals, Losses, RetiredTotals};

const FILE: &str = "state.json";
const VERSION: u32 = 1;

/// What is saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    pub version: u32,
    pub node: String,
    #[serde(with = "time::serde::rfc3339")]
    #[expect(clippy::struct_field_names, reason = "`savedAt` in the file reads naturally")]
    pub saved_at: OffsetDateTime,
    /// When the first agent of this node started (kept across restarts).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub containers: Vec<ContainerEvidence>,
    pub retired: Vec<RetiredTotals>,
    pub gaps: Vec<Gap>,
    /// Everything lost so far, with when (cumulative across restarts).
    #[serde(default)]
    pub losses: Losses,
    /// Counts of host keys and of keys no container could be found for (cumulative).
    #[serde(default)]
    pub host: KeyTotals,
    #[serde(default)]
    pub unattributed: KeyTotals,
}

impl Saved {
    /// What to save of the evidence a run has gathered (with every earlier run's).
    #[must_use]
    pub fn of(evidence: &Evidence, started_at: OffsetDateTime) -> Self {
        Self {
            version: VERSION,
            node: evidence.node.clone(),
            saved_at: OffsetDateTime::now_utc(),
            started_at,
            containers: evidence.containers.clone(),
            retired: evidence.retired.clone(),
            gaps: evidence.agent.gaps.clone(),
            losses: evidence.agent.losses,
            host: evidence.agent.host.clone(),
            unattributed: evidence.agent.unattributed.clone(),
        }
    }
}

/// Loads the state of `node` from `dir`; `None` when there is none or it is unusable (then it
/// is moved aside and a warning logged).
#[must_use]
pub fn load(dir: &Path, node: &str) -> Option<Saved> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the saved state; starting fresh");
            return None;
        }
    };
    let problem = match serde_json::from_slice::<Saved>(&bytes) {
        Ok(saved) if saved.version == VERSION && saved.node == node => return Some(saved),
        Ok(saved) if saved.node != node => format!("it belongs to node {:?}", saved.node),
        Ok(saved) => format!("unknown version {}", saved.version),
        Err(e) => format!("it is corrupt: {e}"),
    };
    let aside = aside_path(&path);
    match std::fs::rename(&path, &aside) {
        Ok(()) => {
            tracing::warn!(path = %path.display(), moved_to = %aside.display(), %problem, "saved state unusable; moved aside, starting fresh");
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), %problem, error = %e, "saved state unusable and cannot be moved aside; starting fresh");
        }
    }
    None
}

fn aside_path(path: &Path) -> PathBuf {
    let stamp = OffsetDateTime::now_utc().unix_timestamp();
    path.with_file_name(format!("{FILE}.unusable-{stamp}"))
}

/// Saves atomically.
///
/// # Errors
/// I/O errors; the previous file stays intact.
pub fn save(dir: &Path, saved: &Saved) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let json = serde_json::to_vec(saved).map_err(std::io::Error::other)?;
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tokenprobe-persist-{name}-{}", std::process::id()));
        drop(std::fs::remove_dir_all(&dir));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn evidence(node: &str) -> Evidence {
        Evidence {
            node: node.into(),
            agent: crate::evidence::AgentInfo::new("0", OffsetDateTime::UNIX_EPOCH),
            containers: Vec::new(),
            retired: Vec::new(),
            volumes: Vec::new(),
        }
    }

    #[test]
    fn round_trip() {
        let dir = temp_dir("round");
        let mut ev = evidence("n1");
        ev.agent.losses.counter_map_full.add(3, OffsetDateTime::UNIX_EPOCH);
        ev.agent.unattributed.api_connects = 2;
        let saved = Saved::of(&ev, OffsetDateTime::UNIX_EPOCH);
        save(&dir, &saved).unwrap();
        let loaded = load(&dir, "n1").unwrap();
        assert_eq!(loaded.node, "n1");
        assert_eq!(loaded.losses.counter_map_full.count, 3, "losses survive restarts");
        assert_eq!(loaded.unattributed.api_connects, 2);
        assert!(!dir.join("state.json.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_or_foreign_state_is_moved_aside() {
        let dir = temp_dir("corrupt");
        std::fs::write(dir.join(FILE), b"{\"version\": 1, \"node\": tru").unwrap();
        assert!(load(&dir, "n1").is_none());
        assert!(!dir.join(FILE).exists(), "moved aside");
        let moved: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(moved.len(), 1);
        assert!(moved[0].file_name().to_string_lossy().starts_with("state.json.unusable-"));
        // A state of another node is not silently used either.
        save(&dir, &Saved::of(&evidence("other"), OffsetDateTime::UNIX_EPOCH)).unwrap();
        assert!(load(&dir, "n1").is_none());
        assert!(load(&dir, "n1").is_none(), "and it stays aside");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_state_is_not_an_error() {
        let dir = temp_dir("missing");
        assert!(load(&dir, "n1").is_none());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
