//! A writer of "newc" cpio archives, the format the kernel unpacks as an initramfs.

use std::io::{self, Write};

/// Writes entries one after another; [`Cpio::finish`] writes the trailer.
pub struct Cpio<W: Write> {
    out: W,
    next_ino: u32,
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

impl<W: Write> Cpio<W> {
    pub fn new(out: W) -> Self {
        Self { out, next_ino: 1 }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let name_len = u32::try_from(name.len() + 1).map_err(io::Error::other)?;
        let size = u32::try_from(data.len()).map_err(|_| io::Error::other(format!("{name} is too large for cpio")))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
        // rdevminor, namesize, check
        let header = format!(
            "070701{ino:08X}{mode:08X}{:08X}{:08X}{:08X}{:08X}{size:08X}{:08X}{:08X}{:08X}{:08X}{name_len:08X}{:08X}",
            0, 0, 1, 0, 0, 0, 0, 0, 0
        );
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.pad(header.len() + name.len() + 1)?;
        self.out.write_all(data)?;
        self.pad(data.len())
    }

    fn pad(&mut self, len: usize) -> io::Result<()> {
        let pad = (4 - len % 4) % 4;
        self.out.write_all(&[0; 3][..pad])
    }

    pub fn dir(&mut self, name: &str) -> io::Result<()> {
        self.entry(name, S_IFDIR | 0o755, &[])
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, S_IFREG | mode, data)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, S_IFLNK | 0o777, target.as_bytes())
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, &[])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_well_formed() {
        let mut cpio = Cpio::new(Vec::new());
        cpio.dir("bin").unwrap();
        cpio.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        cpio.symlink("bin/sh", "busybox").unwrap();
        let out = cpio.finish().unwrap();
        assert_eq!(out.len() % 4, 0);
        assert!(out.starts_with(b"070701"));
        // Every header starts on a 4-byte boundary with the magic.
        let headers = out.windows(6).enumerate().filter(|(_, w)| *w == b"070701").map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(headers.len(), 4);
        assert!(headers.iter().all(|i| i % 4 == 0), "{headers:?}");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("init\0"));
        assert!(text.contains("TRAILER!!!\0"));
        // The file's size field (8 hex digits after 6+6*8 characters of its header).
        let init = headers[1];
        assert_eq!(&out[init + 54..init + 62], b"0000000A");
    }
}
