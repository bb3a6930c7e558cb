//! Hostile input: every parser that reads what others write, fed the seed corpus in
//! `probe-agent/corpus/<parser>/` and mutations of it (bytes flipped, cut, inserted, repeated,
//! deleted), by proptest: no panic, and the file readers' errors name the file. Each parser's
//! own property tests cover arbitrary input besides. Runs with the unit tests (256 cases per
//! parser; `PROPTEST_CASES` raises it).
//!
//! Allocation is measured, not argued: the test binary counts every allocation of the thread
//! that runs a parser ([`peak_during`]), and each case asserts that the parser's peak stays
//! within a bound proportional to its input.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    path::{Path, PathBuf},
};

/// Counts the live bytes each thread allocated, and their peak.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grow(n: usize) {
    LIVE.with(|l| {
        let now = l.get().saturating_add(n);
        l.set(now);
        PEAK.with(|p| p.set(p.get().max(now)));
    });
}

fn shrink(n: usize) {
    LIVE.with(|l| l.set(l.get().saturating_sub(n)));
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) };
        shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrink(layout.size());
            grow(new_size);
        }
        p
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// `f`'s result and the most bytes it had allocated at once (on this thread).
fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    (r, PEAK.with(Cell::get).saturating_sub(base))
}

/// A parser's fixed allowance: 1 MiB; the streaming readers of evidence and object lists also
/// hold up to three 4 MiB read chunks (the chunk, its spare, the object carried over).
const FIXED: usize = 1 << 20;
const STREAMING: usize = FIXED + 3 * (4 << 20);

/// The bound every parser keeps: its fixed allowance plus 64 bytes per byte of input. (Counted
/// on the calling thread: inputs this small are parsed there, not on worker threads.)
fn bounded(what: &str, fixed: usize, input: usize, peak: usize) {
    const PER_INPUT_BYTE: usize = 64;
    let bound = fixed + PER_INPUT_BYTE * input;
    assert!(peak <= bound, "{what}: {peak} bytes allocated at once for {input} bytes of input (bound {bound})");
}

use proptest::prelude::*;

/// The seeds of one parser, sorted by name.
fn seeds(parser: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(parser);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files.into_iter().map(|f| (f.clone(), std::fs::read(&f).expect("seed"))).collect()
}

/// One edit of a seed.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
    Repeat(usize, usize),
    Delete(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Structural characters of the formats are the interesting ones to insert.
    let interesting = proptest::sample::select(b"{}[]\":,\\\n\t -0123456789:/.()\xff\x00eE+nulltrue".to_vec());
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        any::<usize>().prop_map(Edit::Cut),
        (any::<usize>(), proptest::collection::vec(interesting, 1..8)).prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Repeat(i, n)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
    ]
}

fn apply(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = data.len().max(1);
        match e {
            Edit::Flip(i, b) => {
                if !data.is_empty() {
                    data[i % len] = *b;
                }
            }
            Edit::Cut(i) => data.truncate(i % len),
            Edit::Insert(i, bytes) => {
                let at = i % (data.len() + 1);
                data.splice(at..at, bytes.iter().copied());
            }
            Edit::Repeat(i, n) => {
                let from = i % len;
                let to = (from + n).min(data.len());
                let piece = data.get(from..to).unwrap_or_default().to_vec();
                data.splice(to..to, piece);
            }
            Edit::Delete(i, n) => {
                let from = i % len;
                let to = (from + n).min(data.len());
                if from < to {
                    data.drain(from..to);
                }
            }
        }
    }
    data
}

/// A seed chosen by index, mutated.
fn mutated(parser: &'static str) -> impl Strategy<Value = (PathBuf, Vec<u8>)> {
    let seeds = seeds(parser);
    (0..seeds.len(), proptest::collection::vec(edit(), 0..6))
        .prop_map(move |(i, edits)| (seeds[i].0.clone(), apply(seeds[i].1.clone(), &edits)))
}

/// The file readers' errors say which file and what is wrong.
fn clear(error: &crate::plan::inputs::InputError, name: &str) {
    let text = error.to_string();
    assert!(text.contains(name), "the error does not name the file: {text}");
    assert!(text.len() > name.len() + 5, "the error says nothing more: {text}");
}

#[test]
fn the_seeds_parse() {
    for (path, bytes) in seeds("evidence") {
        let text = String::from_utf8(bytes).expect("UTF-8");
        let parsed =
            crate::plan::inputs::parse_evidence("seed", &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(parsed.len(), 1, "{}", path.display());
    }
    for (path, bytes) in seeds("objects") {
        let text = String::from_utf8(bytes).expect("UTF-8");
        let mut inputs = crate::plan::Inputs::default();
        let used = crate::plan::inputs::parse_objects("seed", &text, &mut inputs)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(used > 0, "{}", path.display());
    }
    for (path, bytes) in seeds("mountinfo") {
        let (entries, errors) = crate::mountinfo::parse(&String::from_utf8_lossy(&bytes));
        assert!(!entries.is_empty() && errors.is_empty(), "{}: {errors:?}", path.display());
    }
    for (_, bytes) in seeds("cgroup-paths") {
        let text = String::from_utf8(bytes).expect("UTF-8");
        assert!(text.lines().filter(|l| crate::cgroup::parse_path(l).is_some()).count() >= 4);
    }
    for (_, bytes) in seeds("proc-stat") {
        assert_eq!(crate::clock::start_ticks_from_stat(&String::from_utf8_lossy(&bytes)), Some(987_654));
    }
    for (_, bytes) in seeds("proc-cgroup") {
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(crate::mountinfo::cgroup1_hierarchy_id("rw,cpu,cpuacct", &text), Some(12));
    }
    for (path, bytes) in seeds("audit") {
        let mut audit = crate::auditlog::AuditEvidence::default();
        audit.read_bytes("seed", &bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(audit.pods.len(), 1, "{}", path.display());
    }
    for (path, bytes) in seeds("audit-policy") {
        crate::auditlog::policy_coverage("seed", &String::from_utf8_lossy(&bytes))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    #[cfg(feature = "agent")]
    for (path, bytes) in seeds("btf") {
        crate::btf::Btf::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

proptest! {
    #[test]
    fn evidence_files(input in mutated("evidence")) {
        let (path, bytes) = input;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("seed").to_owned();
        let (result, peak) = peak_during(|| match std::str::from_utf8(&bytes) {
            Ok(text) => crate::plan::inputs::parse_evidence(&name, text).map(drop),
            Err(_) => crate::plan::inputs::read_evidence(&name, bytes.as_slice()).map(drop),
        });
        bounded("evidence", STREAMING, bytes.len(), peak);
        if let Err(e) = result {
            clear(&e, &name);
        }
    }

    #[test]
    fn object_lists(input in mutated("objects")) {
        let (path, bytes) = input;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("seed").to_owned();
        let mut inputs = crate::plan::Inputs::default();
        let (result, peak) = peak_during(|| match std::str::from_utf8(&bytes) {
            Ok(text) => crate::plan::inputs::parse_objects(&name, text, &mut inputs),
            Err(_) => crate::plan::inputs::read_objects(&name, bytes.as_slice(), &mut inputs),
        });
        bounded("objects", STREAMING, bytes.len(), peak);
        if let Err(e) = result {
            clear(&e, &name);
        }
        // Whatever was read is usable: the planner runs on it.
        std::hint::black_box(crate::plan::plan(&inputs, &crate::plan::Policy::default()));
    }

    #[test]
    fn mount_tables(input in mutated("mountinfo")) {
        let text = String::from_utf8_lossy(&input.1);
        let ((entries, errors), peak) = peak_during(|| crate::mountinfo::parse(&text));
        bounded("mountinfo", FIXED, input.1.len(), peak);
        for e in &errors {
            prop_assert!(e.line_no >= 1);
        }
        std::hint::black_box(crate::mountinfo::cgroup2_mount(&entries));
        std::hint::black_box(crate::mountinfo::cgroup1_mounts(&entries));
        std::hint::black_box(crate::mountinfo::service_account_mount(&entries));
        for entry in &entries {
            std::hint::black_box(crate::mountinfo::pod_volume(entry, Path::new("/var/lib/kubelet")));
        }
    }

    #[test]
    fn cgroup_paths(input in mutated("cgroup-paths")) {
        for line in String::from_utf8_lossy(&input.1).lines() {
            std::hint::black_box(crate::cgroup::parse_path(line));
        }
    }

    #[test]
    fn audit_events(input in mutated("audit")) {
        let (path, bytes) = input;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("seed").to_owned();
        let mut audit = crate::auditlog::AuditEvidence::default();
        let (result, peak) = peak_during(|| audit.read_bytes(&name, &bytes));
        bounded("audit events", FIXED, bytes.len(), peak);
        if let Err(e) = result {
            let text = e.to_string();
            prop_assert!(text.contains(&name) && text.len() > name.len() + 5, "{}", text);
        }
    }

    #[test]
    fn audit_policies(input in mutated("audit-policy")) {
        let (result, peak) = peak_during(|| crate::auditlog::policy_coverage("policy.yaml", &String::from_utf8_lossy(&input.1)));
        bounded("audit policy", FIXED, input.1.len(), peak);
        if let Err(e) = result {
            prop_assert!(e.to_string().contains("policy.yaml"));
        }
    }

    #[test]
    fn proc_files(stat in mutated("proc-stat"), cgroup in mutated("proc-cgroup")) {
        std::hint::black_box(crate::clock::start_ticks_from_stat(&String::from_utf8_lossy(&stat.1)));
        std::hint::black_box(crate::mountinfo::cgroup1_hierarchy_id("rw,cpu,cpuacct", &String::from_utf8_lossy(&cgroup.1)));
    }
}

#[cfg(feature = "agent")]
proptest! {
    #[test]
    fn btf_blobs(input in mutated("btf")) {
        let (parsed, peak) = peak_during(|| crate::btf::Btf::parse(&input.1));
        bounded("BTF", FIXED, input.1.len(), peak);
        if let Ok(btf) = parsed {
            // Offsets from a damaged blob: a value or an error, never a panic.
            if let Err(e) = crate::offsets::resolve(&btf) {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}

#[test]
fn the_allocation_count_sees_allocations() {
    let (v, peak) = peak_during(|| vec![0_u8; 3 << 20]);
    assert!(peak >= 3 << 20, "{peak}");
    drop(v);
    let ((), none) = peak_during(|| ());
    assert_eq!(none, 0);
}
