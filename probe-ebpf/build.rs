//! Rebuild the kernel programs when bpf-linker changes (it is what links them).
use which::which;

fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo:warning=bpf-linker not found on PATH ({err}); run `cargo xtask setup`"),
    }
}
