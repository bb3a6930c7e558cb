//! The kernel struct offsets the programs need, resolved from BTF.

use probe_common::config::Offsets;

use crate::btf::{Btf, BtfError};

/// Resolves every offset in [`Offsets`] from `btf`.
///
/// # Errors
/// The first member the running kernel's BTF does not have, named.
pub fn resolve(btf: &Btf) -> Result<Offsets, BtfError> {
    Ok(Offsets {
        task_files: btf.member_offset("task_struct", "files")?,
        files_fdt: btf.member_offset("files_struct", "fdt")?,
        fdt_max_fds: btf.member_offset("fdtable", "max_fds")?,
        fdt_fd: btf.member_offset("fdtable", "fd")?,
        file_f_inode: btf.member_offset("file", "f_inode")?,
        file_f_flags: btf.member_offset("file", "f_flags")?,
        file_f_path_dentry: btf.member_offset("file", "f_path.dentry")?,
        inode_i_sb: btf.member_offset("inode", "i_sb")?,
        inode_i_mode: btf.member_offset("inode", "i_mode")?,
        sb_s_dev: btf.member_offset("super_block", "s_dev")?,
        dentry_d_name_name: btf.member_offset("dentry", "d_name.name")?,
        task_nsproxy: btf.member_offset("task_struct", "nsproxy")?,
        nsproxy_mnt_ns: btf.member_offset("nsproxy", "mnt_ns")?,
        mnt_ns_inum: btf.member_offset("mnt_namespace", "ns.inum")?,
        task_tgid: btf.member_offset("task_struct", "tgid")?,
        task_pid: btf.member_offset("task_struct", "pid")?,
        cgroup_kn: btf.member_offset("cgroup", "kn")?,
        kn_id: btf.member_offset("kernfs_node", "id")?,
        cgroup_root: btf.member_offset("cgroup", "root")?,
        root_hierarchy_id: btf.member_offset("cgroup_root", "hierarchy_id")?,
        regs_orig_ax: btf.member_offset("pt_regs", "orig_ax").unwrap_or(Offsets::ABSENT),
        files_fd_array: btf.member_offset("files_struct", "fd_array")?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn resolves_on_this_kernel() {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            eprintln!("SKIPPED: {} absent on this machine", path.display());
            return;
        }
        let offsets = resolve(&Btf::from_file(path).unwrap()).unwrap();
        // Both members lead their structs on every kernel tokenprobe supports.
        assert_eq!(offsets.fdt_max_fds, 0);
        assert!(offsets.fdt_fd >= 4);
        assert!(offsets.file_f_path_dentry > 0);
        eprintln!("{offsets:?}");
    }
}
