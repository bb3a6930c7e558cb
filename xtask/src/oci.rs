//! OCI image archives, written by hand so the bytes depend only on the inputs: one layer (a tar
//! with fixed times and owners, entries in the order given), an image config, a manifest and an
//! index in the OCI image layout, plus the `manifest.json` of Docker archives, all in one tar
//! that `ctr images import`, `podman load` and `skopeo copy oci-archive:` accept.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// A file system entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir { path: String },
    File { path: String, mode: u32, data: Vec<u8> },
    Symlink { path: String, target: String },
}

const BLOCK: usize = 512;

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// One ustar header: owner root, mtime 0.
fn header(path: &str, mode: u32, size: u64, kind: u8, link: &str) -> anyhow::Result<[u8; BLOCK]> {
    anyhow::ensure!(path.len() <= 100 && link.len() <= 100, "tar name too long: {path} -> {link}");
    let mut h = [0u8; BLOCK];
    h[..path.len()].copy_from_slice(path.as_bytes());
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 0);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    Ok(h)
}

/// A tar of `entries`, in their order.
///
/// # Errors
/// A name longer than ustar allows.
pub fn tar(entries: &[Entry]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for e in entries {
        match e {
            Entry::Dir { path } => out.extend(header(&format!("{}/", path.trim_end_matches('/')), 0o755, 0, b'5', "")?),
            Entry::Symlink { path, target } => out.extend(header(path, 0o777, 0, b'2', target)?),
            Entry::File { path, mode, data } => {
                out.extend(header(path, *mode, data.len() as u64, b'0', "")?);
                out.extend(data);
                out.resize(out.len().next_multiple_of(BLOCK), 0);
            }
        }
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    Ok(out)
}

/// `sha256:<hex>`.
#[must_use]
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    hash.iter().fold(String::from("sha256:"), |mut out, b| {
        use std::fmt::Write as _;
        write!(out, "{b:02x}").expect("write to a String");
        out
    })
}

/// What the image runs.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// An image archive: `reference` (`registry/name:tag`), one layer of `entries`.
///
/// # Errors
/// A layer entry tar cannot hold.
pub fn archive(reference: &str, entries: &[Entry], config: &Config) -> anyhow::Result<Vec<u8>> {
    const EPOCH: &str = "1970-01-01T00:00:00Z";
    let layer = tar(entries)?;
    let layer_digest = digest(&layer);
    let image_config = json!({
        "created": EPOCH,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": config.entrypoint,
            "Cmd": config.cmd,
            "Env": config.env,
            "Labels": config.labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": EPOCH, "created_by": "cargo xtask image"}],
    });
    let config_bytes = serde_json::to_vec(&image_config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config_bytes), "size": config_bytes.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    });
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&manifest_bytes),
            "size": manifest_bytes.len(),
            "annotations": {"io.containerd.image.name": reference, "org.opencontainers.image.ref.name": reference},
        }],
    });
    let blob = |bytes: &[u8]| format!("blobs/sha256/{}", digest(bytes).trim_start_matches("sha256:"));
    let docker: Value = json!([{
        "Config": blob(&config_bytes),
        "RepoTags": [reference],
        "Layers": [blob(&layer)],
    }]);
    let file = |path: String, data: Vec<u8>| Entry::File { path, mode: 0o644, data };
    tar(&[
        file("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        file("index.json".into(), serde_json::to_vec(&index)?),
        file("manifest.json".into(), serde_json::to_vec(&docker)?),
        Entry::Dir { path: "blobs".into() },
        Entry::Dir { path: "blobs/sha256".into() },
        file(blob(&manifest_bytes), manifest_bytes.clone()),
        file(blob(&config_bytes), config_bytes.clone()),
        file(blob(&layer), layer),
    ])
}

/// Whether an ELF executable asks for a program interpreter (a dynamic loader): a static
/// binary has no `PT_INTERP` program header.
///
/// # Errors
/// When `elf` is not a 64-bit little-endian ELF file.
pub fn has_interpreter(elf: &[u8]) -> anyhow::Result<bool> {
    const PT_INTERP: u32 = 3;
    anyhow::ensure!(
        elf.len() >= 64 && elf[..4] == *b"\x7fELF" && elf[4] == 2 && elf[5] == 1,
        "not a 64-bit little-endian ELF file"
    );
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]);
    let phoff = usize::try_from(u64::from_le_bytes(elf[32..40].try_into()?))?;
    let (phentsize, phnum) = (usize::from(u16_at(54)), usize::from(u16_at(56)));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        anyhow::ensure!(at + 4 <= elf.len(), "truncated program headers");
        if u32::from_le_bytes(elf[at..at + 4].try_into()?) == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Entry> {
        vec![
            Entry::Dir { path: "bin".into() },
            Entry::File { path: "bin/busybox".into(), mode: 0o755, data: b"#!fake".to_vec() },
            Entry::Symlink { path: "bin/sh".into(), target: "busybox".into() },
        ]
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        let config = Config { cmd: vec!["sh".into()], ..Config::default() };
        let a = archive("tokenprobe.local/w:1", &entries(), &config).unwrap();
        let b = archive("tokenprobe.local/w:1", &entries(), &config).unwrap();
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&archive("tokenprobe.local/w:2", &entries(), &config).unwrap()));
    }

    #[test]
    fn tar_headers_are_valid_ustar() {
        let t = tar(&entries()).unwrap();
        assert_eq!(t.len() % BLOCK, 0);
        assert_eq!(&t[257..262], b"ustar");
        // The checksum field holds the sum of the header with that field as spaces.
        let mut h = t[..BLOCK].to_vec();
        let stored = u64::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        h[148..156].fill(b' ');
        assert_eq!(stored, h.iter().map(|b| u64::from(*b)).sum::<u64>());
        assert_eq!(t[156], b'5', "a directory");
        // The file's data follows its header, padded to a block.
        assert_eq!(&t[2 * BLOCK..2 * BLOCK + 6], b"#!fake");
        assert_eq!(t[3 * BLOCK + 156], b'2', "a symlink");
        assert_eq!(&t[3 * BLOCK + 157..3 * BLOCK + 164], b"busybox");
    }

    #[test]
    fn tells_static_from_dynamic_executables() {
        let this = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(has_interpreter(&this).unwrap(), "the test binary is dynamically linked");
        assert!(has_interpreter(b"not an elf file at all, but long enough to be checked properly...").is_err());
    }
}
