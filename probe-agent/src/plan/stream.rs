//! Reading `kubectl get -o json` output and evidence exports object by object.
//!
//! A 5,000-node cluster's pods are gigabytes of JSON: parsed whole into a JSON tree they would
//! need many times that in memory. [`for_each_object`] reads a file in chunks and hands each
//! object of a List (or of a top-level array, or the single object a file holds) to its
//! caller as a byte slice, with its `kind` and `apiVersion`, so it can be parsed into the type
//! it needs — or a compact record — and dropped before the next. [`par_map_objects`] parses
//! them on every core.
//!
//! The scanner finds the objects without looking at every byte: it classifies 64 bytes at a
//! time into bit masks (quotes, backslashes, the structural characters `{}[]:,`), works out
//! from them which bytes are inside strings, and then visits only the structural characters
//! outside strings and the quotes — one in several bytes of indented JSON. Whitespace and the
//! insides of strings are never visited one by one.

use std::io::Read;

/// One object of a document.
pub struct Object<'a> {
    pub kind: Option<&'a str>,
    pub api_version: Option<&'a str>,
    pub bytes: &'a [u8],
}

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("invalid JSON near byte {offset}: {what}")]
    Syntax { offset: u64, what: &'static str },
    #[error("{0}")]
    Object(String),
}

/// Bytes read at a time.
const CHUNK: usize = 4 << 20;
/// Bytes classified at a time: one bit of a `u64` each.
const BLOCK: usize = 64;

/// Bit masks of one block: bit `i` stands for byte `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Masks {
    quote: u64,
    backslash: u64,
    /// `{`, `}`, `[`, `]`, `:` and `,`, inside strings or not.
    structural: u64,
    /// `{`, `}`, `[` and `]`.
    brackets: u64,
}

impl Masks {
    /// One byte at a time: the reference, and the fallback on other architectures.
    #[cfg_attr(target_arch = "x86_64", allow(dead_code, reason = "the reference the SSE2 version is tested against"))]
    fn scalar(block: &[u8; BLOCK]) -> Self {
        let mut m = Self { quote: 0, backslash: 0, structural: 0, brackets: 0 };
        for (i, &b) in block.iter().enumerate() {
            let bit = 1u64 << i;
            match b {
                b'"' => m.quote |= bit,
                b'\\' => m.backslash |= bit,
                b'{' | b'}' | b'[' | b']' => {
                    m.structural |= bit;
                    m.brackets |= bit;
                }
                b':' | b',' => m.structural |= bit,
                _ => {}
            }
        }
        m
    }

    #[cfg(target_arch = "x86_64")]
    fn of(block: &[u8; BLOCK]) -> Self {
        // SAFETY: SSE2 is part of the x86-64 baseline: every x86-64 processor has it.
        unsafe { Self::sse2(block) }
    }

    /// Sixteen bytes at a time with SSE2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "sse2")]
    fn sse2(block: &[u8; BLOCK]) -> Self {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        };
        macro_rules! splat {
            ($c:expr) => {
                _mm_set1_epi8(i8::from_ne_bytes([$c]))
            };
        }
        // The 16 comparison results' top bits, as the 16 bits of lane `k`.
        macro_rules! bits {
            ($x:expr, $k:expr) => {
                u64::from(_mm_movemask_epi8($x).cast_unsigned() & 0xffff) << (16 * $k)
            };
        }
        let mut m = Self { quote: 0, backslash: 0, structural: 0, brackets: 0 };
        for (k, lane) in block.chunks_exact(16).enumerate() {
            // SAFETY: `lane` is 16 readable bytes, and the load is the unaligned one (no alignment
            // is required of the pointer).
            #[expect(clippy::cast_ptr_alignment, reason = "an unaligned load")]
            let v = unsafe { _mm_loadu_si128(lane.as_ptr().cast::<__m128i>()) };
            // Setting bit 5 turns `[` into `{` and `]` into `}`, and nothing else into either.
            let folded = _mm_or_si128(v, splat!(0x20));
            let brackets = _mm_or_si128(_mm_cmpeq_epi8(folded, splat!(b'{')), _mm_cmpeq_epi8(folded, splat!(b'}')));
            let punctuation = _mm_or_si128(_mm_cmpeq_epi8(v, splat!(b':')), _mm_cmpeq_epi8(v, splat!(b',')));
            m.quote |= bits!(_mm_cmpeq_epi8(v, splat!(b'"')), k);
            m.backslash |= bits!(_mm_cmpeq_epi8(v, splat!(b'\\')), k);
            m.structural |= bits!(_mm_or_si128(brackets, punctuation), k);
            m.brackets |= bits!(brackets, k);
        }
        m
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn of(block: &[u8; BLOCK]) -> Self {
        Self::scalar(block)
    }
}

/// Bit `i` set: an odd number of the bits `0..=i` are set.
const fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// The bytes a backslash escapes: each backslash that is not itself escaped escapes the byte
/// after it. `carry` says the block's first byte is escaped on the way in, and the next block's
/// on the way out. Backslashes are rare, so they are taken one at a time.
fn escaped(backslash: u64, carry: &mut bool) -> u64 {
    let mut escaped = u64::from(*carry);
    *carry = false;
    let mut rest = backslash;
    while rest != 0 {
        let i = rest.trailing_zeros();
        rest &= rest - 1;
        if escaped & (1 << i) != 0 {
            continue;
        }
        if i == 63 {
            *carry = true;
        } else {
            escaped |= 1 << (i + 1);
        }
    }
    escaped
}

/// Where a key's value is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Key,
    Colon,
    Value,
    /// After a value: a comma or the end of the object.
    Next,
}

/// A byte range of a [`Chunk`].
type Range = (usize, usize);

/// An object found in a [`Chunk`]: its kind, `apiVersion` and bytes.
#[derive(Clone, Copy)]
struct Item {
    kind: Option<Range>,
    api_version: Option<Range>,
    bytes: Range,
}

/// Bytes read, and the objects the scanner found whole in them.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    items: Vec<Item>,
}

impl Chunk {
    fn objects(&self) -> impl Iterator<Item = Object<'_>> {
        let text = |r: Option<Range>| r.and_then(|(a, z)| std::str::from_utf8(&self.bytes[a..z]).ok());
        self.items.iter().map(move |item| Object {
            kind: text(item.kind),
            api_version: text(item.api_version),
            bytes: &self.bytes[item.bytes.0..item.bytes.1],
        })
    }
}

/// The structure of the document around the scanner.
#[expect(clippy::struct_excessive_bools, reason = "the scanner's state, one flag per fact of the grammar")]
struct Scanner {
    /// Open brackets.
    depth: u32,
    /// The last block scanned ended inside a string (from its masks).
    in_string: bool,
    /// The next block's first byte is escaped.
    escape_carry: bool,
    /// Depth of the items' container (1: a top-level array; 2: an `items` array of the top
    /// object); 0 until one is found.
    items_depth: u32,
    /// Inside an item: its start in the buffer.
    item_start: Option<usize>,
    /// Object-key tracking at depth 1 (the document) and at the item's top level.
    expect: Expect,
    key_start: usize,
    key: Key,
    value_start: usize,
    /// `kind` and `apiVersion` of the current item, as buffer ranges.
    kind: Option<Range>,
    api_version: Option<Range>,
    /// The document's top-level key whose value is being read is `items`.
    top_key_items: bool,
    saw_items: bool,
    first: Option<u8>,
    /// Just after the last character visited: between items, what lies from here to the next
    /// one must be whitespace.
    gap_from: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Other,
    Kind,
    ApiVersion,
}

/// Calls `each` with every object of the JSON document `reader` holds: the items of a List (any
/// object with an `items` array), the elements of a top-level array, or the document itself.
/// Objects are visited in order; the document is never held whole, only the object being
/// visited.
///
/// # Errors
/// Read errors, JSON that is not a document of objects, and `each`'s errors.
pub fn for_each_object(
    reader: impl Read,
    mut each: impl FnMut(Object<'_>) -> Result<(), String>,
) -> Result<(), StreamError> {
    scan(reader, CHUNK, |chunk| chunk.objects().try_for_each(&mut each))
}

/// Reads the document `size` bytes at a time and hands `sink` each chunk with the objects that
/// ended in it. The sink may take the chunk's buffers (and leave others to reuse).
fn scan(
    mut reader: impl Read,
    size: usize,
    mut sink: impl FnMut(&mut Chunk) -> Result<(), String>,
) -> Result<(), StreamError> {
    let mut buf: Vec<u8> = Vec::with_capacity(size + BLOCK);
    let mut items: Vec<Item> = Vec::new();
    let mut spare: Option<Vec<u8>> = None;
    // Bytes of the document outside items (the whole document when it is a single object).
    let mut rest: Vec<u8> = Vec::new();
    let mut s = Scanner {
        depth: 0,
        in_string: false,
        escape_carry: false,
        items_depth: 0,
        item_start: None,
        expect: Expect::Value,
        key_start: 0,
        key: Key::Other,
        value_start: 0,
        kind: None,
        api_version: None,
        top_key_items: false,
        saw_items: false,
        first: None,
        gap_from: 0,
    };
    // Bytes dropped from the buffer's front so far (for error offsets).
    let mut consumed: u64 = 0;
    // Where scanning resumes: everything before it was scanned.
    let mut pos = 0;
    loop {
        let eof = (&mut reader).take(size as u64).read_to_end(&mut buf)? == 0;
        let end = buf.len();
        let started = pos;
        while pos + BLOCK <= end {
            let block: &[u8; BLOCK] = buf[pos..pos + BLOCK].try_into().unwrap_or(&[b' '; BLOCK]);
            s.block(&buf, pos, Masks::of(block), &mut items).map_err(|what| syntax(consumed, what))?;
            pos += BLOCK;
        }
        if eof && pos < end {
            // The last bytes, padded with spaces (which are never visited).
            let mut last = [b' '; BLOCK];
            last[..end - pos].copy_from_slice(&buf[pos..end]);
            s.block(&buf, pos, Masks::of(&last), &mut items).map_err(|what| syntax(consumed, what))?;
            pos = end;
        }
        if s.between_items() {
            s.gap(&buf, pos).map_err(|what| syntax(consumed, what))?;
        }
        // What was scanned outside items goes to `rest`; the buffer keeps the item in progress,
        // a tracked key being read, and what is not scanned yet.
        if s.item_start.is_none() && !s.in_items() {
            rest.extend_from_slice(&buf[started..pos]);
        }
        let mut keep_from = s.item_start.unwrap_or(pos);
        if s.in_string && s.tracked() && s.expect == Expect::Key {
            keep_from = keep_from.min(s.key_start);
        }
        if items.is_empty() {
            buf.drain(..keep_from);
        } else {
            let mut next = spare.take().unwrap_or_else(|| Vec::with_capacity(size + BLOCK + (end - keep_from)));
            next.clear();
            next.extend_from_slice(&buf[keep_from..]);
            let mut chunk = Chunk { bytes: std::mem::replace(&mut buf, next), items: std::mem::take(&mut items) };
            sink(&mut chunk).map_err(StreamError::Object)?;
            chunk.bytes.clear();
            chunk.items.clear();
            spare = (chunk.bytes.capacity() > 0).then_some(chunk.bytes);
            items = chunk.items;
        }
        consumed += keep_from as u64;
        pos -= keep_from;
        s.shift(keep_from);
        if eof {
            break;
        }
    }
    if s.depth != 0 || s.in_string {
        return Err(syntax(consumed, (buf.len(), "the document ends early")));
    }
    match s.first {
        None => Ok(()),
        Some(_) if s.saw_items => Ok(()),
        Some(_) => {
            // A single object: parse its head from the whole document.
            #[derive(serde::Deserialize)]
            struct Head {
                kind: Option<String>,
                #[serde(rename = "apiVersion")]
                api_version: Option<String>,
            }
            let head: Head =
                serde_json::from_slice(&rest).map_err(|e| StreamError::Object(format!("invalid JSON: {e}")))?;
            let object = (0, rest.len());
            let mut put = |text: Option<String>| {
                text.map(|t| {
                    let start = rest.len();
                    rest.extend_from_slice(t.as_bytes());
                    (start, rest.len())
                })
            };
            let item = Item { kind: put(head.kind), api_version: put(head.api_version), bytes: object };
            sink(&mut Chunk { bytes: rest, items: vec![item] }).map_err(StreamError::Object)
        }
    }
}

/// A syntax error at buffer offset `at` (the scanner's errors carry it), `consumed` bytes into
/// the document.
fn syntax(consumed: u64, (at, what): (usize, &'static str)) -> StreamError {
    StreamError::Syntax { offset: consumed + at as u64, what }
}

/// A scanner's error: where in the buffer, and what.
type ScanError = (usize, &'static str);

const NOT_AN_OBJECT: &str = "a list item that is not an object";

impl Scanner {
    /// Visits the structural characters outside strings and the quotes of the block at `base`.
    /// Inside an item's nested values only brackets matter (to find where the value ends), so
    /// there only they are visited.
    fn block(&mut self, buf: &[u8], base: usize, m: Masks, items: &mut Vec<Item>) -> Result<(), ScanError> {
        let quotes = m.quote & !escaped(m.backslash, &mut self.escape_carry);
        let inside = prefix_xor(quotes) ^ if self.in_string { u64::MAX } else { 0 };
        let all = (m.structural & !inside) | quotes;
        let brackets = m.brackets & !inside;
        let mut events = if self.deep() { brackets } else { all };
        while events != 0 {
            let bit = events.trailing_zeros();
            let i = base + bit as usize;
            if self.between_items() {
                self.gap(buf, i)?;
            }
            self.gap_from = i + 1;
            // A quote inside the string mask opens a string; one outside closes it.
            self.visit(buf, i, inside & (1 << bit) != 0, items)?;
            // The events after this one.
            let after = if bit == 63 { 0 } else { u64::MAX << (bit + 1) };
            events = if self.deep() { brackets & after } else { all & after };
        }
        self.in_string = inside >> 63 != 0;
        Ok(())
    }

    /// Inside a value nested in an item (not at the item's top level, where its keys are).
    const fn deep(&self) -> bool {
        self.item_start.is_some() && self.depth > self.items_depth + 1
    }

    /// Between items: only whitespace from the last character visited to `to`.
    fn gap(&mut self, buf: &[u8], to: usize) -> Result<(), ScanError> {
        let from = self.gap_from.min(to);
        if let Some(at) = buf[from..to].iter().position(|b| !b.is_ascii_whitespace()) {
            return Err((from + at, NOT_AN_OBJECT));
        }
        self.gap_from = to;
        Ok(())
    }

    fn visit(&mut self, buf: &[u8], i: usize, opens: bool, items: &mut Vec<Item>) -> Result<(), ScanError> {
        let b = buf[i];
        match b {
            b'"' if opens => {
                if self.between_items() {
                    return Err((i, NOT_AN_OBJECT));
                }
                self.string_started(i);
            }
            b'"' => {
                self.string_ended(buf, i);
            }
            b'{' | b'[' => {
                if self.first.is_none() {
                    self.first = Some(b);
                    if b == b'[' {
                        self.items_depth = 1;
                        self.saw_items = true;
                    }
                }
                if self.depth == self.items_depth && self.items_depth > 0 && self.in_items() {
                    if b != b'{' {
                        return Err((i, NOT_AN_OBJECT));
                    }
                    self.item_start = Some(i);
                    self.kind = None;
                    self.api_version = None;
                }
                self.depth += 1;
                if self.depth == 2 && self.first == Some(b'{') && self.top_key_items && b == b'[' {
                    self.items_depth = 2;
                    self.saw_items = true;
                }
                self.expect = if b == b'{' { Expect::Key } else { Expect::Value };
            }
            b'}' | b']' => {
                if self.depth == 0 {
                    return Err((i, "unbalanced brackets"));
                }
                self.depth -= 1;
                if self.depth == self.items_depth
                    && let Some(start) = self.item_start.take()
                {
                    items.push(Item { kind: self.kind, api_version: self.api_version, bytes: (start, i + 1) });
                } else if self.items_depth == 2 && self.depth == 1 && b == b']' {
                    // The items array ended.
                    self.items_depth = u32::MAX;
                }
                self.expect = Expect::Next;
            }
            b':' => self.expect = Expect::Value,
            // A comma.
            _ => self.expect = if self.tracked() { Expect::Key } else { Expect::Value },
        }
        Ok(())
    }

    fn in_items(&self) -> bool {
        self.items_depth > 0 && self.items_depth != u32::MAX && self.depth >= self.items_depth
    }

    /// The depth whose keys are tracked: the document's top object (for `items`) and each
    /// item's top level (for `kind` and `apiVersion`).
    fn tracked(&self) -> bool {
        (self.depth == 1 && self.first == Some(b'{'))
            || (self.item_start.is_some() && self.depth == self.items_depth + 1)
    }

    /// In an items array, outside any item: only commas and whitespace belong here.
    fn between_items(&self) -> bool {
        self.in_items() && self.depth == self.items_depth && self.item_start.is_none()
    }

    fn string_started(&mut self, i: usize) {
        if !self.tracked() {
            return;
        }
        match self.expect {
            Expect::Key => self.key_start = i + 1,
            Expect::Value => self.value_start = i + 1,
            Expect::Colon | Expect::Next => {}
        }
    }

    fn string_ended(&mut self, buf: &[u8], i: usize) {
        if !self.tracked() {
            return;
        }
        match self.expect {
            Expect::Key => {
                let key = &buf[self.key_start..i];
                self.key = match key {
                    b"kind" => Key::Kind,
                    b"apiVersion" => Key::ApiVersion,
                    _ => Key::Other,
                };
                if self.depth == 1 && self.item_start.is_none() {
                    self.top_key_items = key == b"items";
                }
                self.expect = Expect::Colon;
            }
            Expect::Value => {
                if self.item_start.is_some() && self.depth == self.items_depth + 1 {
                    let range = Some((self.value_start, i));
                    match self.key {
                        Key::Kind => self.kind = range,
                        Key::ApiVersion => self.api_version = range,
                        Key::Other => {}
                    }
                }
                self.key = Key::Other;
                self.expect = Expect::Next;
            }
            Expect::Colon | Expect::Next => {}
        }
    }

    /// The buffer lost its first `n` bytes.
    fn shift(&mut self, n: usize) {
        let back = |x: usize| x.saturating_sub(n);
        self.item_start = self.item_start.map(back);
        self.key_start = back(self.key_start);
        self.value_start = back(self.value_start);
        self.kind = self.kind.map(|(a, z)| (back(a), back(z)));
        self.api_version = self.api_version.map(|(a, z)| (back(a), back(z)));
        self.gap_from = back(self.gap_from);
    }
}

/// Results of a chunk's objects, by the chunk's sequence number.
type Done<T> = (u64, Vec<Result<T, String>>);

/// [`for_each_object`], with the objects parsed by `parse` on every core while the document is
/// scanned, and the results handed to `apply` in document order. Chunks go to the parsing
/// threads as read — objects are never copied — and their buffers come back to be read into.
///
/// # Errors
/// As [`for_each_object`]; the first error of `parse` or `apply` stops the reading.
pub fn par_map_objects<T: Send>(
    reader: impl Read,
    parse: impl Fn(Object<'_>) -> Result<T, String> + Sync,
    mut apply: impl FnMut(T) -> Result<(), String>,
) -> Result<(), StreamError> {
    use std::{
        collections::BTreeMap,
        sync::{Mutex, mpsc},
    };
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let (work_tx, work_rx) = mpsc::sync_channel::<(u64, Chunk)>(workers);
    let work_rx = Mutex::new(work_rx);
    let (spare_tx, spare_rx) = mpsc::channel::<Chunk>();
    std::thread::scope(|scope| {
        // Unbounded, so a worker never waits on the scanner while the scanner waits on a worker;
        // the bounded work queue keeps it short.
        let (done_tx, done_rx) = mpsc::channel::<Done<T>>();
        for _ in 0..workers {
            let (work_rx, done_tx, spare_tx, parse) = (&work_rx, done_tx.clone(), spare_tx.clone(), &parse);
            scope.spawn(move || {
                loop {
                    let Ok(Ok((seq, chunk))) = work_rx.lock().map(|rx| rx.recv()) else { return };
                    let results = chunk.objects().map(parse).collect();
                    // The scanner may have finished: then the buffer is simply freed.
                    spare_tx.send(chunk).ok();
                    if done_tx.send((seq, results)).is_err() {
                        return;
                    }
                }
            });
        }
        drop((done_tx, spare_tx));
        // Results arrive in any order; they are applied in document order.
        let mut pending: BTreeMap<u64, Vec<Result<T, String>>> = BTreeMap::new();
        let mut next = 0u64;
        let mut failed: Option<String> = None;
        let mut settle = |pending: &mut BTreeMap<u64, Vec<Result<T, String>>>, failed: &mut Option<String>| {
            while let Some(results) = pending.remove(&next) {
                next += 1;
                for r in results {
                    if failed.is_none()
                        && let Err(e) = r.and_then(&mut apply)
                    {
                        *failed = Some(e);
                    }
                }
            }
        };
        let mut seq = 0u64;
        // A fixed set of buffers goes round: read into, parsed from, returned. Beyond it the
        // scanner waits for one, so memory stays bounded and pages are not faulted in anew.
        let buffers = 2 * workers + 2;
        let mut made = 1;
        let scanned = scan(reader, CHUNK, |chunk| {
            let spare = if made < buffers {
                made += 1;
                Chunk::default()
            } else {
                spare_rx.recv().map_err(|_| "a parsing thread stopped".to_owned())?
            };
            let full = std::mem::replace(chunk, spare);
            work_tx.send((seq, full)).map_err(|_| "a parsing thread stopped".to_owned())?;
            seq += 1;
            while let Ok((s, results)) = done_rx.try_recv() {
                pending.insert(s, results);
            }
            settle(&mut pending, &mut failed);
            failed.take().map_or(Ok(()), Err)
        });
        drop(work_tx);
        for (s, results) in done_rx {
            pending.insert(s, results);
            settle(&mut pending, &mut failed);
        }
        scanned?;
        failed.map_or(Ok(()), |e| Err(StreamError::Object(e)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(text: &str) -> Result<Vec<(Option<String>, String)>, StreamError> {
        let mut out = Vec::new();
        for_each_object(text.as_bytes(), |o| {
            out.push((o.kind.map(str::to_owned), String::from_utf8(o.bytes.to_vec()).expect("utf-8")));
            Ok(())
        })?;
        Ok(out)
    }

    /// A reader that hands out one byte at a time: every boundary falls mid-token somewhere.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let Some((&b, rest)) = self.0.split_first() else { return Ok(0) };
            out[0] = b;
            self.0 = rest;
            Ok(1)
        }
    }

    #[test]
    fn list_items_with_their_kinds() {
        let text = r#"{"apiVersion": "v1", "items": [
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "labels": {"kind": "x"}}, "data": "}]{\"["},
            {"metadata": {"name": "b"}, "kind": "ServiceAccount"}
        ], "kind": "List", "metadata": {"resourceVersion": ""}}"#;
        let got = objects(text).expect("list");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.as_deref(), Some("Pod"), "the item's own kind, not a nested one");
        assert_eq!(got[1].0.as_deref(), Some("ServiceAccount"));
        let first: serde_json::Value = serde_json::from_str(&got[0].1).expect("an item is a whole object");
        assert_eq!(first["data"], "}]{\"[");
        let mut trickled = Vec::new();
        for_each_object(Trickle(text.as_bytes()), |o| {
            trickled.push((o.kind.map(str::to_owned), String::from_utf8(o.bytes.to_vec()).expect("utf-8")));
            Ok(())
        })
        .expect("byte by byte");
        assert_eq!(trickled, got);
    }

    #[test]
    fn arrays_single_objects_and_empty_documents() {
        let got = objects(r#"[{"kind": "Pod"}, {"kind": "Job"}]"#).expect("array");
        assert_eq!(got.iter().map(|g| g.0.as_deref()).collect::<Vec<_>>(), [Some("Pod"), Some("Job")]);
        let got = objects(r#"{"kind": "Deployment", "metadata": {"name": "d"}}"#).expect("one object");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.as_deref(), Some("Deployment"));
        assert!(objects("  \n").expect("empty").is_empty());
        assert!(objects(r#"{"kind": "List", "items": []}"#).expect("empty list").is_empty());
    }

    /// An object found: (kind, apiVersion, text).
    type Found = (Option<String>, Option<String>, String);

    /// The objects `scan` finds reading `size` bytes at a time.
    fn scanned(text: &str, size: usize) -> Result<Vec<Found>, StreamError> {
        let mut out = Vec::new();
        scan(text.as_bytes(), size, |chunk| {
            for o in chunk.objects() {
                let bytes = String::from_utf8(o.bytes.to_vec()).map_err(|e| e.to_string())?;
                out.push((o.kind.map(str::to_owned), o.api_version.map(str::to_owned), bytes));
            }
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn sse2_masks_match_the_byte_by_byte_ones() {
        let mut block = [0u8; BLOCK];
        // Every byte value in every position, and the characters that matter next to each other.
        for round in 0..=255u8 {
            for (i, b) in block.iter_mut().enumerate() {
                *b = round.wrapping_add(u8::try_from(i).unwrap_or(0).wrapping_mul(37));
            }
            assert_eq!(Masks::of(&block), Masks::scalar(&block), "round {round}");
        }
        let special = br#"{}[]:,"\ {"a":["\"]},"#;
        for (i, b) in block.iter_mut().enumerate() {
            *b = special[i % special.len()];
        }
        assert_eq!(Masks::of(&block), Masks::scalar(&block));
    }

    #[test]
    fn escapes_are_followed_across_blocks() {
        let mut carry = false;
        // `\\\"` (an escaped backslash, then an escaped quote) ending a block.
        let backslashes = 0b111u64 << 61;
        assert_eq!(escaped(backslashes, &mut carry), 1 << 62, "the second backslash is escaped");
        assert!(carry, "the third escapes the next block's first byte");
        assert_eq!(escaped(0, &mut carry), 1);
        assert!(!carry);
        // A string holding `\\` and `\"` and brackets, placed to straddle every block offset.
        for pad in 0..BLOCK {
            let text = format!(
                r#"{{"items": [{{"kind": "Pod", "x": "{}a\\", "y": "b\"}}]{{[\\\"", "apiVersion": "v1"}}, {{"kind": "Job"}}]}}"#,
                " ".repeat(pad)
            );
            for size in [1, 3, 64, 1 << 10] {
                let got = scanned(&text, size).expect("scanned");
                let kinds: Vec<_> = got.iter().map(|g| g.0.as_deref()).collect();
                assert_eq!(kinds, [Some("Pod"), Some("Job")], "pad {pad} size {size}");
                assert_eq!(got[0].1.as_deref(), Some("v1"));
                let first: serde_json::Value = serde_json::from_str(&got[0].2).expect("a whole object");
                assert_eq!(first["y"], "b\"}]{[\\\"");
            }
        }
    }

    proptest::proptest! {
        /// Whatever the objects hold and however the reads fall, the scanner finds exactly the
        /// items a JSON parser finds, with their kinds.
        #[test]
        fn finds_what_a_parser_finds(
            items in proptest::collection::vec(
                (proptest::option::of("[A-Za-z]{1,8}"),
                 proptest::collection::vec(("[a-z\\\\\"{}\\[\\]:, ]{0,6}", "[ -~é\\\\\"{}\\[\\]]{0,40}"), 0..6)),
                0..8),
            pretty in proptest::bool::ANY,
            size in 1usize..300,
        ) {
            let values: Vec<serde_json::Value> = items
                .iter()
                .map(|(kind, fields)| {
                    let mut o = serde_json::Map::new();
                    for (k, v) in fields {
                        o.insert(format!("f{k}"), serde_json::json!({"v": v, "a": [v, {"w": 1}]}));
                    }
                    if let Some(kind) = kind {
                        o.insert("kind".into(), kind.as_str().into());
                    }
                    serde_json::Value::Object(o)
                })
                .collect();
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": values});
            let text = if pretty { serde_json::to_string_pretty(&list) } else { serde_json::to_string(&list) }
                .expect("json");
            let got = scanned(&text, size).expect("scanned");
            proptest::prop_assert_eq!(got.len(), values.len());
            for (g, want) in got.iter().zip(&values) {
                let parsed: serde_json::Value = serde_json::from_str(&g.2).expect("a whole object");
                proptest::prop_assert_eq!(&parsed, want);
                proptest::prop_assert_eq!(g.0.as_deref(), want.get("kind").and_then(serde_json::Value::as_str));
            }
        }
    }

    #[test]
    fn broken_documents_are_errors() {
        for bad in [
            r#"{"items": [{"kind": "Pod"}"#,
            r#"{"items": [1, 2]}"#,
            r#"{"items": [{"kind": "Pod"}, true]}"#,
            r#"{"items": [{}, "x"]}"#,
            r"[{} 7]",
            "]",
            r#"{"kind": "Pod", "#,
            r#"{"items": [{"kind": "Po"#,
        ] {
            assert!(objects(bad).is_err(), "{bad}");
            for size in [1, 2, 64] {
                assert!(scanned(bad, size).is_err(), "{bad} read {size} bytes at a time");
            }
        }
    }
}
