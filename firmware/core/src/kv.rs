//! The node's key-value stores, durable in NOR flash: an append-only log of set and delete
//! records in one half of a region, replayed into RAM at boot. When the half is full, the live
//! entries are written to the other half, which then takes over. A reset at any moment leaves
//! either the old or the new half valid: a record's header is written after its body, and a
//! half's header after its entries, so neither counts until it is complete.
//!
//! The map in RAM holds every live value (what `get` reads), bounded by the workloads' KV
//! quotas the runtime enforces; flash is only written, and read at boot.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// Flash as the store needs it: offsets relative to the KV region.
pub trait KvFlash {
    /// Reads `buf.len()` bytes at `offset`.
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), KvFlashError>;
    /// Writes `data` (a multiple of [`WORD`] bytes) at `offset`, erased before.
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), KvFlashError>;
    /// Erases `offset .. offset + len` (whole sectors).
    fn erase(&mut self, offset: u32, len: u32) -> Result<(), KvFlashError>;
}

/// The flash failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvFlashError;

/// Why a change was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvError {
    /// Even after compaction the live entries do not fit a half of the region.
    Full,
    /// The flash failed.
    Io,
}

impl From<KvFlashError> for KvError {
    fn from(_: KvFlashError) -> KvError {
        KvError::Io
    }
}

/// Write granularity: records and headers are padded to it.
pub const WORD: usize = 4;
const HALF_MAGIC: [u8; 4] = *b"WFKV";
const RECORD_MAGIC: u8 = 0xa5;
const SET: u8 = 1;
const DELETE: u8 = 2;
/// Half header: magic, generation.
const HALF_HEADER: u32 = 8;
/// Record header: magic, kind, store length, key length, value length (u16), two spare bytes.
const RECORD_HEADER: usize = 8;

type Entries = BTreeMap<(String, Vec<u8>), Vec<u8>>;

/// The stores, replayed from flash.
#[derive(Debug)]
pub struct FlashKv {
    half_len: u32,
    /// 0 or 1: which half holds the log.
    active: u32,
    generation: u32,
    /// Where the next record goes, relative to the active half.
    end: u32,
    /// Bytes after `end` are not erased (a write failed or a reset cut one short): appending
    /// there would AND new bytes into old ones, so the next change compacts instead.
    tail_dirty: bool,
    entries: Entries,
}

impl FlashKv {
    /// Opens the region of `region_len` bytes (two halves, each whole sectors of `sector`
    /// bytes): replays the valid half, or formats the region when neither is valid.
    pub fn open(
        flash: &mut impl KvFlash,
        region_len: u32,
        sector: u32,
    ) -> Result<FlashKv, KvError> {
        let half_len = region_len / 2 / sector * sector;
        let mut best: Option<(u32, u32)> = None;
        for half in 0..2 {
            let mut head = [0u8; HALF_HEADER as usize];
            flash.read(half * half_len, &mut head)?;
            if head[..4] == HALF_MAGIC {
                let generation = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
                if best.is_none_or(|(_, g)| generation > g) {
                    best = Some((half, generation));
                }
            }
        }
        let mut kv = FlashKv {
            half_len,
            active: 0,
            generation: 0,
            end: HALF_HEADER,
            tail_dirty: false,
            entries: BTreeMap::new(),
        };
        match best {
            Some((half, generation)) => {
                kv.active = half;
                kv.generation = generation;
                kv.replay(flash)?;
                kv.tail_dirty = !kv.tail_erased(flash)?;
            }
            None => kv.rewrite(flash, 0, 1)?,
        }
        Ok(kv)
    }

    /// The value of `key` in `store`.
    pub fn get(&self, store: &str, key: &[u8]) -> Option<&[u8]> {
        self.entries
            .get(&(String::from(store), key.to_vec()))
            .map(Vec::as_slice)
    }

    /// Bytes of keys and values in `store`.
    pub fn used(&self, store: &str) -> u64 {
        self.entries
            .iter()
            .filter(|((s, _), _)| s == store)
            .map(|((_, k), v)| (k.len() + v.len()) as u64)
            .sum()
    }

    /// Sets `key` in `store`, durably.
    pub fn set(
        &mut self,
        flash: &mut impl KvFlash,
        store: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), KvError> {
        let id = (String::from(store), key.to_vec());
        if self.entries.get(&id).is_some_and(|v| v == value) {
            return Ok(());
        }
        self.append(flash, SET, store, key, value)?;
        self.entries.insert(id, value.to_vec());
        Ok(())
    }

    /// Deletes `key` from `store`, durably; whether it was there.
    pub fn delete(
        &mut self,
        flash: &mut impl KvFlash,
        store: &str,
        key: &[u8],
    ) -> Result<bool, KvError> {
        let id = (String::from(store), key.to_vec());
        if !self.entries.contains_key(&id) {
            return Ok(false);
        }
        self.append(flash, DELETE, store, key, &[])?;
        self.entries.remove(&id);
        Ok(true)
    }

    fn append(
        &mut self,
        flash: &mut impl KvFlash,
        kind: u8,
        store: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), KvError> {
        let record = encode(kind, store, key, value).ok_or(KvError::Full)?;
        if self.tail_dirty || self.end as usize + record.len() > self.half_len as usize {
            // Compact into the other half, with this change applied, and switch to it.
            let mut live = self.entries.clone();
            let id = (String::from(store), key.to_vec());
            match kind {
                SET => live.insert(id, value.to_vec()),
                _ => live.remove(&id),
            };
            let other = 1 - self.active;
            let saved = core::mem::replace(&mut self.entries, live);
            if let Err(e) = self.rewrite(flash, other, self.generation.wrapping_add(1)) {
                self.entries = saved;
                return Err(e);
            }
            return Ok(());
        }
        let at = self.active * self.half_len + self.end;
        // Body first, header last: a record without its header is not one.
        let written = flash
            .write(at + RECORD_HEADER as u32, &record[RECORD_HEADER..])
            .and_then(|()| flash.write(at, &record[..RECORD_HEADER]));
        if written.is_err() {
            self.tail_dirty = true;
            return Err(KvError::Io);
        }
        self.end += record.len() as u32;
        Ok(())
    }

    /// Writes every live entry into `half` under `generation`, header last, and makes it the
    /// active half.
    fn rewrite(
        &mut self,
        flash: &mut impl KvFlash,
        half: u32,
        generation: u32,
    ) -> Result<(), KvError> {
        let base = half * self.half_len;
        flash.erase(base, self.half_len)?;
        let mut end = HALF_HEADER;
        for ((store, key), value) in &self.entries {
            let record = encode(SET, store, key, value).ok_or(KvError::Full)?;
            if end as usize + record.len() > self.half_len as usize {
                return Err(KvError::Full);
            }
            flash.write(base + end, &record)?;
            end += record.len() as u32;
        }
        let mut head = [0u8; HALF_HEADER as usize];
        head[..4].copy_from_slice(&HALF_MAGIC);
        head[4..].copy_from_slice(&generation.to_le_bytes());
        flash.write(base, &head)?;
        self.active = half;
        self.generation = generation;
        self.end = end;
        self.tail_dirty = false;
        Ok(())
    }

    /// Whether the active half is erased from `end` on.
    fn tail_erased(&self, flash: &mut impl KvFlash) -> Result<bool, KvError> {
        let mut buf = [0u8; 64];
        let mut at = self.end;
        while at < self.half_len {
            let n = (self.half_len - at).min(buf.len() as u32) as usize;
            flash.read(self.active * self.half_len + at, &mut buf[..n])?;
            if buf[..n].iter().any(|&b| b != 0xff) {
                return Ok(false);
            }
            at += n as u32;
        }
        Ok(true)
    }

    /// Reads the active half's records up to the first that is not complete.
    fn replay(&mut self, flash: &mut impl KvFlash) -> Result<(), KvError> {
        let base = self.active * self.half_len;
        let mut at = HALF_HEADER;
        while at as usize + RECORD_HEADER <= self.half_len as usize {
            let mut head = [0u8; RECORD_HEADER];
            flash.read(base + at, &mut head)?;
            if head[0] != RECORD_MAGIC || !matches!(head[1], SET | DELETE) {
                break;
            }
            let (s, k, v) = (
                head[2] as usize,
                head[3] as usize,
                u16::from_le_bytes([head[4], head[5]]) as usize,
            );
            let len = padded(RECORD_HEADER + s + k + v);
            if at as usize + len > self.half_len as usize {
                break;
            }
            let mut body = vec![0u8; s + k + v];
            flash.read(base + at + RECORD_HEADER as u32, &mut body)?;
            let Ok(store) = core::str::from_utf8(&body[..s]) else {
                break;
            };
            let id = (String::from(store), body[s..s + k].to_vec());
            if head[1] == SET {
                self.entries.insert(id, body[s + k..].to_vec());
            } else {
                self.entries.remove(&id);
            }
            at += len as u32;
        }
        self.end = at;
        Ok(())
    }
}

fn padded(len: usize) -> usize {
    len.div_ceil(WORD) * WORD
}

/// A record, padded with erased bytes; `None` if a part is too long for its length field.
fn encode(kind: u8, store: &str, key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
    let (s, k) = (
        u8::try_from(store.len()).ok()?,
        u8::try_from(key.len()).ok()?,
    );
    let v = u16::try_from(value.len()).ok()?;
    let mut out = Vec::with_capacity(padded(
        RECORD_HEADER + store.len() + key.len() + value.len(),
    ));
    out.extend([RECORD_MAGIC, kind, s, k]);
    out.extend(v.to_le_bytes());
    out.extend([0xff, 0xff]);
    out.extend(store.as_bytes());
    out.extend(key);
    out.extend(value);
    out.resize(padded(out.len()), 0xff);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NOR flash in RAM: erase sets 0xFF, writes only clear bits; can fail after N writes.
    struct Nor {
        bytes: Vec<u8>,
        writes_left: Option<usize>,
    }

    impl KvFlash for Nor {
        fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), KvFlashError> {
            let o = offset as usize;
            buf.copy_from_slice(&self.bytes[o..o + buf.len()]);
            Ok(())
        }
        fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), KvFlashError> {
            if let Some(n) = self.writes_left.as_mut() {
                if *n == 0 {
                    return Err(KvFlashError);
                }
                *n -= 1;
            }
            assert_eq!(offset as usize % WORD, 0);
            assert_eq!(data.len() % WORD, 0);
            for (i, b) in data.iter().enumerate() {
                self.bytes[offset as usize + i] &= b;
            }
            Ok(())
        }
        fn erase(&mut self, offset: u32, len: u32) -> Result<(), KvFlashError> {
            self.bytes[offset as usize..(offset + len) as usize].fill(0xff);
            Ok(())
        }
    }

    fn nor() -> Nor {
        Nor {
            bytes: vec![0u8; 8192], // not erased: a fresh part may hold anything
            writes_left: None,
        }
    }

    #[test]
    fn values_survive_a_reopen_and_deletes_stick() {
        let mut f = nor();
        let mut kv = FlashKv::open(&mut f, 8192, 1024).unwrap();
        kv.set(&mut f, "counter", b"count", b"41").unwrap();
        kv.set(&mut f, "counter", b"count", b"42").unwrap();
        kv.set(&mut f, "other", b"x", b"1").unwrap();
        assert!(kv.delete(&mut f, "other", b"x").unwrap());
        assert!(!kv.delete(&mut f, "other", b"x").unwrap());
        let kv = FlashKv::open(&mut f, 8192, 1024).unwrap();
        assert_eq!(kv.get("counter", b"count"), Some(&b"42"[..]));
        assert_eq!(kv.get("other", b"x"), None);
        assert_eq!(kv.used("counter"), 7);
    }

    #[test]
    fn a_full_half_compacts_into_the_other_and_keeps_everything() {
        let mut f = nor();
        let mut kv = FlashKv::open(&mut f, 8192, 1024).unwrap();
        for i in 0u32..2000 {
            kv.set(&mut f, "counter", b"count", &i.to_le_bytes())
                .unwrap();
            kv.set(&mut f, "s", &[(i % 7) as u8], b"v").unwrap();
        }
        let kv = FlashKv::open(&mut f, 8192, 1024).unwrap();
        assert_eq!(
            kv.get("counter", b"count"),
            Some(&1999u32.to_le_bytes()[..])
        );
        assert_eq!(kv.used("s"), 14);
    }

    #[test]
    fn a_reset_mid_write_keeps_the_last_complete_state() {
        for cut in 0..40 {
            let mut f = nor();
            let mut kv = FlashKv::open(&mut f, 4096, 1024).unwrap();
            kv.set(&mut f, "c", b"n", b"before").unwrap();
            f.writes_left = Some(cut);
            let mut done = 0;
            for i in 0u32..200 {
                if kv.set(&mut f, "c", b"n", &i.to_le_bytes()).is_err() {
                    break;
                }
                done = i + 1;
            }
            f.writes_left = None;
            let mut kv = FlashKv::open(&mut f, 4096, 1024).unwrap();
            let got = kv.get("c", b"n").unwrap();
            if done == 0 {
                assert_eq!(got, b"before", "cut after {cut} writes");
            } else {
                assert_eq!(got, &(done - 1).to_le_bytes()[..], "cut after {cut} writes");
            }
            // Writing after the cut never lands on the half-written bytes.
            kv.set(&mut f, "c", b"n", b"after").unwrap();
            kv.set(&mut f, "c", b"m", b"too").unwrap();
            let kv = FlashKv::open(&mut f, 4096, 1024).unwrap();
            assert_eq!(
                kv.get("c", b"n"),
                Some(&b"after"[..]),
                "cut after {cut} writes"
            );
            assert_eq!(
                kv.get("c", b"m"),
                Some(&b"too"[..]),
                "cut after {cut} writes"
            );
        }
    }

    #[test]
    fn what_cannot_fit_is_refused_not_half_written() {
        let mut f = nor();
        let mut kv = FlashKv::open(&mut f, 2048, 512).unwrap();
        assert_eq!(kv.set(&mut f, "s", b"k", &[7u8; 2000]), Err(KvError::Full));
        assert_eq!(kv.get("s", b"k"), None);
        kv.set(&mut f, "s", b"k", b"ok").unwrap();
        let kv = FlashKv::open(&mut f, 2048, 512).unwrap();
        assert_eq!(kv.get("s", b"k"), Some(&b"ok"[..]));
    }
}
