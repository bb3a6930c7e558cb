//! A small reader of kernel BTF: just enough to find struct member offsets.
//!
//! rustc and bpf-linker emit no CO-RE relocations, so the agent resolves the offsets its
//! programs need from the running kernel's `/sys/kernel/btf/vmlinux` at load time. Members may
//! sit inside anonymous structs and unions (6.18 puts `file.f_path` and `dentry.d_name` there);
//! member types are followed through typedef, const, volatile, restrict and type tags.

use std::{collections::HashMap, path::Path};

/// Errors reading BTF or finding a member in it.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read BTF from {path} (the kernel needs CONFIG_DEBUG_INFO_BTF=y)")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed BTF: {what}")]
    Malformed { what: String },
    #[error("{path} is not usable BTF: {what} (tokenprobe needs the kernel's own BTF: CONFIG_DEBUG_INFO_BTF=y)")]
    MalformedFile { path: String, what: String },
    #[error("BTF has no struct or union named `{name}`")]
    NoSuchType { name: String },
    #[error("`{ty}` has no member `{member}` in this kernel's BTF")]
    NoSuchMember { ty: String, member: String },
    #[error("`{ty}.{member}` is a bitfield or not byte-aligned")]
    NotByteAligned { ty: String, member: String },
    #[error("`{ty}.{member}` is not a struct or union, cannot look inside it")]
    NotComposite { ty: String, member: String },
}

const MAGIC: u16 = 0xeb9f;
const HEADER_MIN: usize = 24;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone, Copy)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Bit offset, or (with the kind flag) `bitfield_size << 24 | bit_offset`.
    offset: u32,
}

#[derive(Debug, Clone)]
enum Type {
    Composite {
        name_off: u32,
        kind_flag: bool,
        members: Vec<Member>,
    },
    /// typedef, const, volatile, restrict, type tag: refers to another type.
    Alias {
        to: u32,
    },
    Other,
}

/// Parsed BTF: types by id and an index of struct/union names.
#[derive(Debug)]
pub struct Btf {
    strings: Vec<u8>,
    /// `types[id - 1]`; id 0 is void.
    types: Vec<Type>,
    composites: HashMap<String, Vec<u32>>,
}

fn malformed(what: impl Into<String>) -> BtfError {
    BtfError::Malformed { what: what.into() }
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn u32(&mut self) -> Result<u32, BtfError> {
        let bytes = self
            .data
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| malformed(format!("type section truncated at byte {}", self.pos)))?;
        self.pos += 4;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn skip(&mut self, n: usize) -> Result<(), BtfError> {
        if self.pos + n > self.data.len() {
            return Err(malformed(format!("type section truncated at byte {}", self.pos)));
        }
        self.pos += n;
        Ok(())
    }
}

fn le_u32(data: &[u8], at: usize) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| malformed("header truncated"))
}

impl Btf {
    /// Reads and parses the BTF at `path` (normally `/sys/kernel/btf/vmlinux`).
    ///
    /// # Errors
    /// [`BtfError::Read`] when the file cannot be read, [`BtfError::Malformed`] when it is not BTF.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read { path: path.display().to_string(), source })?;
        Self::parse(&data).map_err(|e| match e {
            BtfError::Malformed { what } => BtfError::MalformedFile { path: path.display().to_string(), what },
            other => other,
        })
    }

    /// Parses raw little-endian BTF.
    ///
    /// # Errors
    /// [`BtfError::Malformed`] for anything that is not well-formed BTF.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if data.len() < HEADER_MIN {
            return Err(malformed("shorter than a BTF header"));
        }
        let magic = u16::from_le_bytes([data[0], data[1]]);
        if magic != MAGIC {
            return Err(malformed(format!("bad magic {magic:#x} (big-endian BTF is not supported)")));
        }
        let hdr_len = le_u32(data, 4)? as usize;
        let section = |off_at: usize, len_at: usize, name: &str| -> Result<&[u8], BtfError> {
            let off = le_u32(data, off_at)? as usize;
            let len = le_u32(data, len_at)? as usize;
            let start = hdr_len.checked_add(off).ok_or_else(|| malformed(format!("{name} offset overflows")))?;
            let end = start.checked_add(len).ok_or_else(|| malformed(format!("{name} length overflows")))?;
            data.get(start..end).ok_or_else(|| malformed(format!("{name} section out of bounds")))
        };
        let type_section = section(8, 12, "type")?;
        let strings = section(16, 20, "string")?.to_vec();

        let mut cursor = Cursor { data: type_section, pos: 0 };
        let mut types = Vec::new();
        while cursor.pos < type_section.len() {
            types.push(Self::parse_type(&mut cursor)?);
        }
        let mut btf = Self { strings, types, composites: HashMap::new() };
        for (index, ty) in btf.types.iter().enumerate() {
            if let Type::Composite { name_off, .. } = ty
                && *name_off != 0
            {
                let name = btf.string(*name_off)?.to_owned();
                let id = u32::try_from(index + 1).map_err(|_| malformed("too many types"))?;
                btf.composites.entry(name).or_default().push(id);
            }
        }
        Ok(btf)
    }

    fn parse_type(c: &mut Cursor<'_>) -> Result<Type, BtfError> {
        let name_off = c.u32()?;
        let info = c.u32()?;
        let size_or_type = c.u32()?;
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        let kind_flag = info >> 31 == 1;
        Ok(match kind {
            KIND_STRUCT | KIND_UNION => {
                // Never more than the bytes left can hold: a forged count allocates nothing.
                let mut members = Vec::with_capacity(vlen.min(c.data.len().saturating_sub(c.pos) / 12));
                for _ in 0..vlen {
                    members.push(Member { name_off: c.u32()?, type_id: c.u32()?, offset: c.u32()? });
                }
                Type::Composite { name_off, kind_flag, members }
            }
            KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                Type::Alias { to: size_or_type }
            }
            KIND_INT | KIND_VAR | KIND_DECL_TAG => {
                c.skip(4)?;
                Type::Other
            }
            KIND_ARRAY => {
                c.skip(12)?;
                Type::Other
            }
            KIND_ENUM | KIND_FUNC_PROTO => {
                c.skip(8 * vlen)?;
                Type::Other
            }
            KIND_DATASEC | KIND_ENUM64 => {
                c.skip(12 * vlen)?;
                Type::Other
            }
            KIND_PTR | KIND_FWD | KIND_FUNC | KIND_FLOAT => Type::Other,
            other => return Err(malformed(format!("unknown BTF kind {other}"))),
        })
    }

    fn string(&self, off: u32) -> Result<&str, BtfError> {
        let rest =
            self.strings.get(off as usize..).ok_or_else(|| malformed(format!("string offset {off} out of bounds")))?;
        let end = rest.iter().position(|&b| b == 0).ok_or_else(|| malformed("unterminated string"))?;
        std::str::from_utf8(&rest[..end]).map_err(|_| malformed("string is not UTF-8"))
    }

    fn get(&self, id: u32) -> Result<&Type, BtfError> {
        id.checked_sub(1)
            .and_then(|i| self.types.get(i as usize))
            .ok_or_else(|| malformed(format!("type id {id} out of range")))
    }

    /// Follows aliases (typedef, const, …) to the underlying type id; bounded against cycles.
    fn resolve(&self, mut id: u32) -> Result<u32, BtfError> {
        for _ in 0..32 {
            match self.get(id)? {
                Type::Alias { to } => id = *to,
                _ => return Ok(id),
            }
        }
        Err(malformed(format!("alias chain from type {id} too long")))
    }

    /// The id of the struct or union called `name` that has members (skipping empty forward
    /// declarations when several share the name).
    fn composite(&self, name: &str) -> Result<u32, BtfError> {
        let ids = self.composites.get(name).ok_or_else(|| BtfError::NoSuchType { name: name.to_owned() })?;
        ids.iter()
            .copied()
            .find(|&id| matches!(self.get(id), Ok(Type::Composite { members, .. }) if !members.is_empty()))
            .or_else(|| ids.first().copied())
            .ok_or_else(|| BtfError::NoSuchType { name: name.to_owned() })
    }

    /// Finds `member` in composite `id`, descending into anonymous members.
    /// Returns (bit offset, member type id).
    fn find_member(&self, id: u32, member: &str, path: &mut Vec<u32>) -> Result<Option<(u32, u32)>, BtfError> {
        // Anonymous members nest a few levels deep in real kernels; a cycle or an absurd depth
        // means corrupt BTF.
        if path.len() > 8 || path.contains(&id) {
            return Ok(None);
        }
        let Type::Composite { kind_flag, members, .. } = self.get(id)? else {
            return Ok(None);
        };
        for m in members {
            let bits = if *kind_flag { m.offset & 0x00ff_ffff } else { m.offset };
            let bitfield = *kind_flag && (m.offset >> 24) != 0;
            if m.name_off != 0 && self.string(m.name_off)? == member {
                let offset = if bitfield { u32::MAX } else { bits };
                return Ok(Some((offset, m.type_id)));
            }
            if m.name_off == 0 {
                let inner = self.resolve(m.type_id)?;
                path.push(id);
                let found = self.find_member(inner, member, path)?;
                path.pop();
                if let Some((off, ty)) = found {
                    return Ok(Some((off.saturating_add(bits), ty)));
                }
            }
        }
        Ok(None)
    }

    /// Byte offset of a (possibly dotted) member path in struct or union `ty`, e.g.
    /// `member_offset("file", "f_path.dentry")`.
    ///
    /// # Errors
    /// When the type or a member is missing, a member is a bitfield, or a path step is not a
    /// struct or union.
    pub fn member_offset(&self, ty: &str, path: &str) -> Result<u32, BtfError> {
        let mut id = self.composite(ty)?;
        let mut total_bits = 0u32;
        let mut current = ty.to_owned();
        for (i, member) in path.split('.').enumerate() {
            if i > 0 {
                let resolved = self.resolve(id)?;
                if !matches!(self.get(resolved)?, Type::Composite { .. }) {
                    return Err(BtfError::NotComposite { ty: current, member: member.to_owned() });
                }
                id = resolved;
            }
            let (bits, member_type) = self
                .find_member(id, member, &mut Vec::new())?
                .ok_or_else(|| BtfError::NoSuchMember { ty: current.clone(), member: member.to_owned() })?;
            if bits == u32::MAX || bits % 8 != 0 {
                return Err(BtfError::NotByteAligned { ty: current, member: member.to_owned() });
            }
            total_bits += bits;
            id = member_type;
            current = format!("{current}.{member}");
        }
        Ok(total_bits / 8)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds little BTF blobs for tests.
    #[derive(Default)]
    pub struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        pub fn new() -> Self {
            Self { types: Vec::new(), strings: vec![0], next_id: 1 }
        }

        fn name(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = u32::try_from(self.strings.len()).unwrap();
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            off
        }

        fn push(&mut self, words: &[u32]) -> u32 {
            for w in words {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        }

        pub fn int(&mut self, name: &str, size: u32) -> u32 {
            let n = self.name(name);
            self.push(&[n, KIND_INT << 24, size, size * 8])
        }

        pub fn ptr(&mut self, to: u32) -> u32 {
            self.push(&[0, KIND_PTR << 24, to])
        }

        pub fn typedef(&mut self, name: &str, to: u32) -> u32 {
            let n = self.name(name);
            self.push(&[n, KIND_TYPEDEF << 24, to])
        }

        /// `members`: (name, type id, bit offset).
        pub fn composite(&mut self, union: bool, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            let n = self.name(name);
            let kind = if union { KIND_UNION } else { KIND_STRUCT };
            let mut words = vec![n, (kind << 24) | u32::try_from(members.len()).unwrap(), size];
            for (name, ty, off) in members {
                let mn = self.name(name);
                words.extend_from_slice(&[mn, *ty, *off]);
            }
            self.push(&words)
        }

        pub fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            out.extend_from_slice(&24u32.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&u32::try_from(self.types.len()).unwrap().to_le_bytes());
            out.extend_from_slice(&u32::try_from(self.types.len()).unwrap().to_le_bytes());
            out.extend_from_slice(&u32::try_from(self.strings.len()).unwrap().to_le_bytes());
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    fn sample() -> Btf {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let dentry_ptr = b.ptr(0);
        let path = b.composite(false, "path", 16, &[("mnt", dentry_ptr, 0), ("dentry", dentry_ptr, 64)]);
        let path_t = b.typedef("path_t", path);
        // file { int f_count; union { struct path f_path; int alt; }; int f_flags; }
        let anon = b.composite(true, "", 16, &[("f_path", path_t, 0), ("alt", int, 0)]);
        b.composite(false, "file", 40, &[("f_count", int, 0), ("", anon, 64), ("f_flags", int, 256)]);
        Btf::parse(&b.build()).unwrap()
    }

    #[test]
    fn finds_plain_and_nested_members() {
        let btf = sample();
        assert_eq!(btf.member_offset("file", "f_count").unwrap(), 0);
        assert_eq!(btf.member_offset("file", "f_flags").unwrap(), 32);
        assert_eq!(btf.member_offset("path", "dentry").unwrap(), 8);
    }

    #[test]
    fn descends_into_anonymous_unions_and_typedefs() {
        let btf = sample();
        assert_eq!(btf.member_offset("file", "f_path").unwrap(), 8);
        assert_eq!(btf.member_offset("file", "f_path.dentry").unwrap(), 16);
    }

    #[test]
    fn missing_things_are_named() {
        let btf = sample();
        let err = btf.member_offset("file", "f_nope").unwrap_err();
        assert!(matches!(err, BtfError::NoSuchMember { ref member, .. } if member == "f_nope"), "{err}");
        assert!(matches!(btf.member_offset("inode", "i_sb"), Err(BtfError::NoSuchType { .. })));
        assert!(matches!(btf.member_offset("file", "f_count.x"), Err(BtfError::NotComposite { .. })));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(Btf::parse(b"").is_err());
        assert!(Btf::parse(&[0u8; 64]).is_err());
        let mut blob = Builder::new().build();
        blob[12] = 0xff; // type_len beyond the end
        assert!(Btf::parse(&blob).is_err());
        let mut b = Builder::new();
        b.int("int", 4);
        let mut blob = b.build();
        let len = blob.len();
        blob.truncate(len - 3); // cut into the string section
        assert!(Btf::parse(&blob).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            drop(Btf::parse(&data));
        }

        #[test]
        fn corrupted_valid_blobs_never_panic(flip in 0usize..200, byte in proptest::num::u8::ANY) {
            let mut b = Builder::new();
            let int = b.int("int", 4);
            let p = b.ptr(int);
            b.composite(false, "s", 16, &[("a", int, 0), ("b", p, 64)]);
            let mut blob = b.build();
            let at = flip % blob.len();
            blob[at] = byte;
            if let Ok(btf) = Btf::parse(&blob) {
                drop(btf.member_offset("s", "b"));
                drop(btf.member_offset("s", "a.b"));
            }
        }
    }

    #[test]
    fn reads_this_kernels_vmlinux_when_present() {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            eprintln!("SKIPPED: {} absent on this machine", path.display());
            return;
        }
        let btf = Btf::from_file(path).unwrap();
        // Offsets differ per kernel; what holds everywhere is that they resolve and are sane.
        let f_inode = btf.member_offset("file", "f_inode").unwrap();
        let dentry = btf.member_offset("file", "f_path.dentry").unwrap();
        assert!(f_inode > 0 && f_inode < 512, "{f_inode}");
        assert!(dentry > 0 && dentry < 512, "{dentry}");
        assert!(btf.member_offset("dentry", "d_name.name").is_ok());
        assert!(btf.member_offset("super_block", "s_dev").is_ok());
    }
}
