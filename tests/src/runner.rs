//! A minimal test runner: named cases, panics caught and reported, skips with reasons, and the
//! closing line `N passed, N failed, N skipped`.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    process::ExitCode,
    time::Instant,
};

#[derive(Debug)]
enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

/// For suites that need root: `Some` exit code when not root — a failure in CI (where a skip
/// would hide that nothing ran), a loud skip elsewhere.
#[must_use]
pub fn without_root(suite: &str) -> Option<ExitCode> {
    if nix::unistd::Uid::effective().is_root() {
        return None;
    }
    if std::env::var_os("CI").is_some() {
        eprintln!("error: the {suite} tests need root (CI is set, so this is a failure)");
        return Some(ExitCode::FAILURE);
    }
    println!("SKIPPED: the {suite} tests need root; run `cargo xtask test`\n\n0 passed, 0 failed, 1 skipped");
    Some(ExitCode::SUCCESS)
}

/// Collects outcomes of cases.
#[derive(Debug, Default)]
pub struct Suite {
    filter: Option<String>,
    results: Vec<(String, Outcome)>,
}

impl Suite {
    /// A suite; the first free command-line argument filters case names by substring.
    #[must_use]
    pub fn from_args() -> Self {
        // The runner prints each failure's message; the location is enough from the hook.
        std::panic::set_hook(Box::new(|info| {
            if let Some(location) = info.location() {
                eprintln!("    panicked at {location}");
            }
        }));
        let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
        Self { filter, results: Vec::new() }
    }

    fn selected(&self, name: &str) -> bool {
        self.filter.as_ref().is_none_or(|f| name.contains(f.as_str()))
    }

    /// Runs one case, catching its panic.
    pub fn run(&mut self, name: &str, case: impl FnOnce()) {
        if !self.selected(name) {
            return;
        }
        let start = Instant::now();
        let outcome = match catch_unwind(AssertUnwindSafe(case)) {
            Ok(()) => Outcome::Passed,
            Err(panic) => Outcome::Failed(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panicked".to_owned()),
            ),
        };
        let ms = start.elapsed().as_millis();
        match &outcome {
            Outcome::Passed => println!("test {name} ... ok ({ms} ms)"),
            Outcome::Failed(msg) => println!("test {name} ... FAILED ({ms} ms)\n    {}", msg.replace('\n', "\n    ")),
            Outcome::Skipped(_) => {}
        }
        self.results.push((name.to_owned(), outcome));
    }

    /// Records a case as skipped, with the reason.
    pub fn skip(&mut self, name: &str, reason: &str) {
        if !self.selected(name) {
            return;
        }
        println!("test {name} ... SKIPPED: {reason}");
        self.results.push((name.to_owned(), Outcome::Skipped(reason.to_owned())));
    }

    /// Like [`Suite::finish`], but a run where everything was skipped succeeds (it says so).
    #[must_use]
    pub fn finish_allowing_skips(self) -> ExitCode {
        let all_skipped =
            !self.results.is_empty() && self.results.iter().all(|(_, o)| matches!(o, Outcome::Skipped(_)));
        let code = self.finish();
        if all_skipped { ExitCode::SUCCESS } else { code }
    }

    /// Prints the summary and returns the exit code (failure when any case failed, or when
    /// nothing at all passed).
    #[must_use]
    pub fn finish(self) -> ExitCode {
        if self.results.is_empty()
            && let Some(filter) = &self.filter
        {
            println!("no case matches {filter:?}\n\n0 passed, 0 failed, 0 skipped");
            return ExitCode::SUCCESS;
        }
        let passed = self.results.iter().filter(|(_, o)| matches!(o, Outcome::Passed)).count();
        let failed: Vec<&str> =
            self.results.iter().filter(|(_, o)| matches!(o, Outcome::Failed(_))).map(|(n, _)| n.as_str()).collect();
        let skipped = self.results.iter().filter(|(_, o)| matches!(o, Outcome::Skipped(_))).count();
        // One line per group of skipped cases (`file/lsm/…` → `file/lsm`), with its reason.
        let reasons: std::collections::BTreeMap<&str, &str> = self
            .results
            .iter()
            .filter_map(|(name, o)| match o {
                Outcome::Skipped(r) => Some((name.rsplit_once('/').map_or(name.as_str(), |(g, _)| g), r.as_str())),
                _ => None,
            })
            .collect();
        if !reasons.is_empty() {
            println!("\nskipped:");
            for (group, reason) in reasons {
                println!("    {group}: {reason}");
            }
        }
        if !failed.is_empty() {
            println!("\nfailures:\n    {}", failed.join("\n    "));
        }
        println!("\n{passed} passed, {} failed, {skipped} skipped", failed.len());
        if failed.is_empty() && passed > 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    }
}
