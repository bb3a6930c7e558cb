//! Reading `kubectl get -o json` output and evidence exports object by object.
//!
//! A 5,000-node cluster's pods are gigabytes of JSON: parsed whole into a JSON tree they would
//! need many times that in memory. [`for_each_object`] reads a file in chunks and hands each
//! object of a List (or of a top-level array, or the single object a file holds) to its
//! caller as a byte slice, with its `kind` and `apiVersion`, so it can be parsed into the type
//! it needs — or a compact record — and dropped before the next.

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

/// [`CLASS`] of `"` and `\\`, the bytes that end a run inside a string.
const QUOTE_OR_ESCAPE: u8 = 1;
static CLASS: [u8; 256] = {
    let mut class = [0u8; 256];
    class[b'"' as usize] = QUOTE_OR_ESCAPE;
    class[b'\\' as usize] = QUOTE_OR_ESCAPE;
    class
};

/// Where a key's value is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Key,
    Colon,
    Value,
    /// After a value: a comma or the end of the object.
    Next,
}

/// The structure of the document around the scanner.
#[expect(clippy::struct_excessive_bools, reason = "the scanner's state, one flag per fact of the grammar")]
struct Scanner {
    /// Open brackets.
    depth: u32,
    in_string: bool,
    escaped: bool,
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
    kind: Option<(usize, usize)>,
    api_version: Option<(usize, usize)>,
    /// The document's top-level key whose value is being read is `items`.
    top_key_items: bool,
    saw_items: bool,
    first: Option<u8>,
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
#[expect(clippy::too_many_lines, reason = "one byte loop: split, it would be slower to read and to run")]
pub fn for_each_object(
    mut reader: impl Read,
    mut each: impl FnMut(Object<'_>) -> Result<(), String>,
) -> Result<(), StreamError> {
    const CHUNK: usize = 4 << 20;
    let mut buf: Vec<u8> = Vec::with_capacity(2 * CHUNK);
    // Bytes of the document outside items (the whole document when it is a single object).
    let mut rest: Vec<u8> = Vec::new();
    let mut s = Scanner {
        depth: 0,
        in_string: false,
        escaped: false,
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
    };
    // Bytes dropped from the buffer's front so far (for error offsets).
    let mut consumed: u64 = 0;
    let mut pos = 0;
    loop {
        let n = (&mut reader).take(CHUNK as u64).read_to_end(&mut buf)?;
        if n == 0 {
            break;
        }
        let end = buf.len();
        let mut i = pos;
        while i < end {
            if s.in_string {
                if s.escaped {
                    s.escaped = false;
                    i += 1;
                    continue;
                }
                // Strings are short: a plain loop beats a vectorised search's set-up.
                while i < end && CLASS[usize::from(buf[i])] != QUOTE_OR_ESCAPE {
                    i += 1;
                }
                if i == end {
                    break;
                }
                if buf[i] == b'\\' {
                    s.escaped = true;
                } else {
                    s.in_string = false;
                    s.string_ended(&buf, i);
                }
                i += 1;
                continue;
            }
            let b = buf[i];
            match b {
                b' ' | b'\n' | b'\r' | b'\t' => {
                    // Indentation comes in runs.
                    i += 1;
                    while i < end && matches!(buf[i], b' ' | b'\n' | b'\r' | b'\t') {
                        i += 1;
                    }
                    continue;
                }
                b'"' => {
                    if s.between_items() {
                        return Err(StreamError::Syntax {
                            offset: consumed + i as u64,
                            what: "a list item that is not an object",
                        });
                    }
                    s.in_string = true;
                    s.string_started(i);
                }
                b'{' | b'[' => {
                    if s.first.is_none() {
                        s.first = Some(b);
                        if b == b'[' {
                            s.items_depth = 1;
                            s.saw_items = true;
                        }
                    }
                    if s.depth == s.items_depth && s.items_depth > 0 && s.in_items() {
                        if b != b'{' {
                            return Err(StreamError::Syntax {
                                offset: consumed + i as u64,
                                what: "a list item that is not an object",
                            });
                        }
                        s.item_start = Some(i);
                        s.kind = None;
                        s.api_version = None;
                    }
                    s.depth += 1;
                    if s.depth == 2 && s.first == Some(b'{') && s.top_key_items && b == b'[' {
                        s.items_depth = 2;
                        s.saw_items = true;
                    }
                    s.expect = if b == b'{' { Expect::Key } else { Expect::Value };
                }
                b'}' | b']' => {
                    if s.depth == 0 {
                        return Err(StreamError::Syntax { offset: consumed + i as u64, what: "unbalanced brackets" });
                    }
                    s.depth -= 1;
                    if s.depth == s.items_depth
                        && let Some(start) = s.item_start.take()
                    {
                        let text =
                            |r: Option<(usize, usize)>| r.and_then(|(a, z)| std::str::from_utf8(&buf[a..z]).ok());
                        each(Object { kind: text(s.kind), api_version: text(s.api_version), bytes: &buf[start..=i] })
                            .map_err(StreamError::Object)?;
                    } else if s.items_depth == 2 && s.depth == 1 && b == b']' {
                        // The items array ended.
                        s.items_depth = u32::MAX;
                    }
                    s.expect = Expect::Next;
                }
                b':' => s.expect = Expect::Value,
                b',' => s.expect = if s.tracked() { Expect::Key } else { Expect::Value },
                _ if s.between_items() => {
                    return Err(StreamError::Syntax {
                        offset: consumed + i as u64,
                        what: "a list item that is not an object",
                    });
                }
                _ => {}
            }
            i += 1;
        }
        // What was scanned outside items goes to `rest`; the buffer keeps the item in progress,
        // or a tracked key being read.
        if s.item_start.is_none() && !s.in_items() {
            rest.extend_from_slice(&buf[pos..end]);
        }
        let mut keep_from = s.item_start.unwrap_or(end);
        if s.in_string && s.tracked() && s.expect == Expect::Key {
            keep_from = keep_from.min(s.key_start);
        }
        buf.drain(..keep_from);
        consumed += keep_from as u64;
        pos = end - keep_from;
        s.shift(keep_from);
    }
    if s.depth != 0 || s.in_string {
        return Err(StreamError::Syntax { offset: consumed + buf.len() as u64, what: "the document ends early" });
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
            each(Object { kind: head.kind.as_deref(), api_version: head.api_version.as_deref(), bytes: &rest })
                .map_err(StreamError::Object)
        }
    }
}

/// Objects copied out of the scanner's buffer, to be parsed elsewhere.
#[derive(Default)]
struct Batch {
    seq: u64,
    bytes: Vec<u8>,
    objects: Vec<Copied>,
}

/// A byte range of a [`Batch`].
type Range = (usize, usize);

/// An object in a [`Batch`]: its kind, `apiVersion` and bytes.
type Copied = (Option<Range>, Option<Range>, Range);

/// Results of a batch, by its sequence number.
type Done<T> = (u64, Vec<Result<T, String>>);

impl Batch {
    fn push(&mut self, o: &Object<'_>) {
        let mut put = |b: &[u8]| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(b);
            (start, self.bytes.len())
        };
        let kind = o.kind.map(|k| put(k.as_bytes()));
        let api_version = o.api_version.map(|a| put(a.as_bytes()));
        let object = put(o.bytes);
        self.objects.push((kind, api_version, object));
    }

    fn each(&self) -> impl Iterator<Item = Object<'_>> {
        let text = |r: Option<(usize, usize)>| r.and_then(|(a, z)| std::str::from_utf8(&self.bytes[a..z]).ok());
        self.objects.iter().map(move |&(kind, api_version, (a, z))| Object {
            kind: text(kind),
            api_version: text(api_version),
            bytes: &self.bytes[a..z],
        })
    }
}

/// [`for_each_object`], with the objects parsed by `parse` on every core while the document is
/// scanned, and the results handed to `apply` in document order.
///
/// # Errors
/// As [`for_each_object`]; the first error of `parse` or `apply` stops the reading.
pub fn par_map_objects<T: Send>(
    reader: impl Read,
    parse: impl Fn(Object<'_>) -> Result<T, String> + Sync,
    mut apply: impl FnMut(T) -> Result<(), String>,
) -> Result<(), StreamError> {
    use std::sync::{Mutex, mpsc};
    const BATCH_BYTES: usize = 1 << 20;
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let (work_tx, work_rx) = mpsc::sync_channel::<Batch>(2 * workers);
    let work_rx = Mutex::new(work_rx);
    std::thread::scope(|scope| {
        // Unbounded, so a worker never waits on the scanner while the scanner waits on a worker;
        // the bounded work queue keeps it short.
        let (done_tx, done_rx) = mpsc::channel::<Done<T>>();
        for _ in 0..workers {
            let (work_rx, done_tx, parse) = (&work_rx, done_tx.clone(), &parse);
            scope.spawn(move || {
                loop {
                    let Ok(Ok(batch)) = work_rx.lock().map(|rx| rx.recv()) else { return };
                    let results = batch.each().map(parse).collect();
                    if done_tx.send((batch.seq, results)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        // Results arrive in any order; they are applied in document order.
        let mut pending: std::collections::BTreeMap<u64, Vec<Result<T, String>>> = std::collections::BTreeMap::new();
        let mut next = 0u64;
        let mut failed: Option<String> = None;
        let mut settle = |pending: &mut std::collections::BTreeMap<u64, Vec<Result<T, String>>>,
                          next: &mut u64,
                          failed: &mut Option<String>| {
            while let Some(results) = pending.remove(next) {
                *next += 1;
                for r in results {
                    if failed.is_none()
                        && let Err(e) = r.and_then(&mut apply)
                    {
                        *failed = Some(e);
                    }
                }
            }
        };
        let mut batch = Batch::default();
        let mut seq = 0u64;
        let scanned = for_each_object(reader, |o| {
            batch.push(&o);
            if batch.bytes.len() >= BATCH_BYTES {
                let full = std::mem::replace(&mut batch, Batch { seq: seq + 1, ..Batch::default() });
                seq += 1;
                work_tx.send(full).map_err(|_| "a parsing thread stopped".to_owned())?;
                while let Ok((s, results)) = done_rx.try_recv() {
                    pending.insert(s, results);
                }
                settle(&mut pending, &mut next, &mut failed);
                if let Some(e) = failed.take() {
                    return Err(e);
                }
            }
            Ok(())
        });
        if scanned.is_ok() && !batch.objects.is_empty() {
            // Cannot fail while the workers run: they only stop when the channel closes.
            work_tx.send(batch).ok();
        }
        drop(work_tx);
        for (s, results) in done_rx {
            pending.insert(s, results);
            settle(&mut pending, &mut next, &mut failed);
        }
        scanned?;
        failed.map_or(Ok(()), |e| Err(StreamError::Object(e)))
    })
}

impl Scanner {
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
    }
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

    #[test]
    fn broken_documents_are_errors() {
        for bad in [r#"{"items": [{"kind": "Pod"}"#, r#"{"items": [1, 2]}"#, "]", r#"{"kind": "Pod", "#] {
            assert!(objects(bad).is_err(), "{bad}");
        }
    }
}
