//! tracefs: mounted when absent (syscall tracepoints need it), and the tracepoint record layout
//! checked against what the kernel programs assume.

use std::path::{Path, PathBuf};

const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// Returns the tracefs mount, mounting tracefs at `/sys/kernel/tracing` when neither usual place
/// has it.
///
/// # Errors
/// A message saying why tracefs could not be had.
pub fn ensure_mounted() -> Result<PathBuf, String> {
    for dir in [TRACEFS, DEBUGFS_TRACING] {
        if Path::new(dir).join("events").is_dir() {
            return Ok(PathBuf::from(dir));
        }
    }
    nix::mount::mount(Some("nodev"), TRACEFS, Some("tracefs"), nix::mount::MsFlags::empty(), None::<&str>)
        .map_err(|e| format!("tracefs is not mounted and mounting it at {TRACEFS} failed: {e}"))?;
    tracing::info!(path = TRACEFS, "mounted tracefs");
    if Path::new(TRACEFS).join("events").is_dir() {
        Ok(PathBuf::from(TRACEFS))
    } else {
        Err(format!("tracefs mounted at {TRACEFS} has no events directory"))
    }
}

/// Parses a tracepoint `format` file and returns the byte offset of field `name`.
#[must_use]
pub fn field_offset(format: &str, name: &str) -> Option<(usize, usize)> {
    for line in format.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else { continue };
        let mut parts = rest.split(';').map(str::trim);
        let decl = parts.next()?;
        if decl.rsplit([' ', '*']).next() != Some(name) {
            continue;
        }
        let mut offset = None;
        let mut size = None;
        for part in parts {
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.trim().parse().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.trim().parse().ok();
            }
        }
        return offset.zip(size);
    }
    None
}

/// Checks that `field` of a syscall tracepoint sits at `offset` (8 bytes), as a program assumes.
///
/// # Errors
/// When the format cannot be read or the field is elsewhere.
pub fn check_field(tracefs: &Path, event: &str, field: &str, offset: usize) -> Result<(), String> {
    let path = tracefs.join("events/syscalls").join(event).join("format");
    let format = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match field_offset(&format, field) {
        Some((o, 8)) if o == offset => Ok(()),
        Some((o, size)) => {
            Err(format!("{event}: `{field}` is at offset {o} size {size}; the program expects {offset} size 8"))
        }
        None => Err(format!("{event}: no `{field}` field in {}", path.display())),
    }
}

/// The tracepoint program reads `ret` straight from the record at a fixed offset; refuse the
/// mode on a kernel whose layout differs.
///
/// # Errors
/// When the format cannot be read or `ret` is elsewhere.
pub fn check_sys_exit_ret_offset(tracefs: &Path, event: &str) -> Result<(), String> {
    let path = tracefs.join("events/syscalls").join(event).join("format");
    let format = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let expected = probe_common::config::SYS_EXIT_RET_OFFSET;
    match field_offset(&format, "ret") {
        Some((offset, 8)) if offset == expected => Ok(()),
        Some((offset, size)) => Err(format!(
            "{event}: `ret` is at offset {offset} size {size}; the program expects offset {expected} size 8"
        )),
        None => Err(format!("{event}: no `ret` field in {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ret_in_a_sys_exit_format() {
        let format = "name: sys_exit_openat\nID: 700\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;\n";
        assert_eq!(field_offset(format, "ret"), Some((16, 8)));
        assert_eq!(field_offset(format, "__syscall_nr"), Some((8, 4)));
        assert_eq!(field_offset(format, "nope"), None);
        assert_eq!(field_offset("field:long ret;\toffset:x;\tsize:8;", "ret"), None);
    }
}
