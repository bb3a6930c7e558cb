//! Loading, attaching and unloading single programs, with readable errors.

use aya::{
    Ebpf,
    programs::{BtfTracePoint, CgroupSockAddr, FEntry, KProbe, Lsm, ProgramError, RawTracePoint, TracePoint},
};

pub(super) fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or_else(|| format!("the object has no program {name}"))?;
    program.try_into().map_err(describe)
}

pub(super) trait Unload {
    fn unload_now(&mut self) -> Result<(), ProgramError>;
}

macro_rules! impl_unload {
    ($($t:ty),*) => {$(impl Unload for $t {
        fn unload_now(&mut self) -> Result<(), ProgramError> { self.unload() }
    })*};
}
impl_unload!(Lsm, FEntry, KProbe, TracePoint, CgroupSockAddr, RawTracePoint, BtfTracePoint);

pub(super) fn unload<T: Unload>(program: &mut T) {
    if let Err(e) = program.unload_now() {
        tracing::debug!(error = %describe(e), "unloading a rejected program failed");
    }
}

/// A program error with its whole source chain (aya's top-level messages alone hide the errno).
pub(super) fn describe<E: std::error::Error>(error: E) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let message = s.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = s.source();
    }
    // aya appends the verifier log, empty when the kernel refused before verifying.
    if let Some(stripped) = text.strip_suffix(". Verifier output: ") {
        text = stripped.to_owned();
    }
    if text.len() > 400 {
        // Verifier logs can be long; the first lines say what matters.
        let mut cut = 400;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}
