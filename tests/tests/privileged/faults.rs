//! Faults the agent must survive, each with its stated outcome: the state directory full or
//! read-only → keep counting, count the failed saves (metric `state_save_errors`), keep the last
//! good state file intact, and save everything once the directory is usable again. (SIGKILL
//! during saves: `cli/kill_9_during_saves_keeps_every_saved_count`; the API server failing:
//! the node-agent suite.)

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use probe_agent::probe::{ConnectHook, FileHook};
use probe_tests::{
    actor::Action,
    agent::{TestAgent, entry, has_entry},
    fake_node::{Container, Driver, FakeNode, Qos, SA_DIR},
};
use tokio::runtime::Runtime;

pub const CASES: &[(&str, super::Case)] =
    &[("a_full_or_read_only_state_dir_loses_no_count", a_full_or_read_only_state_dir_loses_no_count)];

/// A small tmpfs of our own, unmounted when dropped.
struct SmallFs(PathBuf);

impl SmallFs {
    fn new(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).expect("mount point");
        mount(Some("tokenprobe-state"), &dir, Some("tmpfs"), MsFlags::empty(), Some("size=64k"))
            .expect("mount a small tmpfs");
        Self(dir)
    }

    fn remount(&self, flags: MsFlags) {
        mount(None::<&str>, &self.0, None::<&str>, MsFlags::MS_REMOUNT | flags, Some("size=64k")).expect("remount");
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if let Err(e) = umount2(&self.0, MntFlags::MNT_DETACH) {
            eprintln!("warning: cannot unmount {}: {e}", self.0.display());
        }
    }
}

/// Fills `dir` until the file system says it is full.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).expect("filler");
    let block = vec![0u8; 4096];
    loop {
        match std::io::Write::write_all(&mut file, &block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    filler
}

/// The token reads of `c` in the saved state (`None`: no state file, or no entry); a state file
/// that is not whole fails the case.
fn saved_reads(dir: &Path, c: &Container) -> Option<u64> {
    let ev = probe_tests::agent::saved_state(dir).unwrap_or_else(|e| panic!("the state file: {e}"))?;
    has_entry(&ev, c).then(|| entry(&ev, c).reads.token)
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn a_full_or_read_only_state_dir_loses_no_count(rt: &Runtime, file: FileHook, connect: ConnectHook) {
    let mut node = FakeNode::new(Driver::Systemd);
    let pod = node.pod(Qos::Burstable);
    let vol = node.volume(&pod, "kube-api-access-fu11d", true);
    let c = node.container(&pod, false);
    let fs = SmallFs::new(node.root.join("state"));
    let filler = fill(&fs.0);
    let mut config = node.watch_config();
    config.file_hook = file;
    config.connect_hook = connect;
    config.state_dir = Some(fs.0.clone());
    config.save_interval = Duration::from_millis(50);
    let agent = TestAgent::start(rt, config).unwrap_or_else(|e| panic!("agent start: {e:#?}"));
    let mut a = node.spawn(&c, &[(&vol, SA_DIR)]);
    let token = Action::Open(PathBuf::from(SA_DIR).join("token"));

    // Full: counting goes on, the failed saves are counted, nothing half-written is left.
    for _ in 0..3 {
        a.ok(&token);
    }
    agent.wait_for("3 reads", Duration::from_secs(10), |ev| has_entry(ev, &c) && entry(ev, &c).reads.token == 3);
    until("failed saves counted", || agent.metrics().state_save_errors >= 2);
    assert_eq!(saved_reads(&fs.0, &c), None, "no state file fits");
    // Room again: the next save has every count.
    std::fs::remove_file(&filler).expect("remove the filler");
    until("a save with 3 reads", || saved_reads(&fs.0, &c) == Some(3));

    // Read-only: counting goes on, the last good state stays whole.
    fs.remount(MsFlags::MS_RDONLY);
    let errors = agent.metrics().state_save_errors;
    a.ok(&token);
    a.ok(&token);
    agent.wait_for("5 reads", Duration::from_secs(10), |ev| entry(ev, &c).reads.token == 5);
    until("failed saves counted", || agent.metrics().state_save_errors > errors);
    assert_eq!(saved_reads(&fs.0, &c), Some(3), "the last good state is intact");
    // Writable again: everything saved.
    fs.remount(MsFlags::empty());
    until("a save with 5 reads", || saved_reads(&fs.0, &c) == Some(5));
    let ev = agent.stop();
    assert_eq!(entry(&ev, &c).reads.token, 5);
}
