//! Where artifacts live in the device's artifact flash region: sector-aligned extents, one per
//! module digest, first fit. The runtime executes artifacts in place from flash
//! (`deserialize_raw`), so an extent must stay put while a workload uses it; only artifacts no
//! desired workload names are evicted.

use alloc::vec::Vec;

use wasmfleet_proto::Digest;

/// A byte range of the artifact region (offsets relative to its start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First byte, a multiple of the sector size.
    pub offset: u32,
    /// Bytes of the artifact (the extent occupies whole sectors).
    pub len: u32,
}

/// One stored (or arriving) artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    digest: Digest,
    extent: Extent,
    /// Written completely and its SHA-256 matched.
    verified: bool,
}

/// The artifact region's table. Rebuilt after a reset (the gateway re-sends the desired state
/// and the node fetches again): the table itself is not persisted.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    region_len: u32,
    sector: u32,
    entries: Vec<Entry>,
}

/// An artifact that cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoRoom {
    /// Bytes needed.
    pub needed: u32,
    /// Size of the whole region.
    pub region: u32,
}

impl ArtifactStore {
    /// An empty table for a region of `region_len` bytes erased in `sector`-byte units.
    pub fn new(region_len: u32, sector: u32) -> ArtifactStore {
        ArtifactStore {
            region_len,
            sector: sector.max(1),
            entries: Vec::new(),
        }
    }

    /// The verified artifact of `digest`, if stored.
    pub fn get(&self, digest: &Digest) -> Option<Extent> {
        self.entries
            .iter()
            .find(|e| e.digest == *digest && e.verified)
            .map(|e| e.extent)
    }

    /// Forgets every artifact whose digest `keep` rejects (no desired workload uses it).
    pub fn retain(&mut self, keep: impl Fn(&Digest) -> bool) {
        self.entries.retain(|e| keep(&e.digest));
    }

    /// Reserves room for `len` bytes of `digest` (replacing an unverified earlier attempt),
    /// first fit by sector; the caller erases the extent before writing.
    pub fn reserve(&mut self, digest: Digest, len: u32) -> Result<Extent, NoRoom> {
        self.entries.retain(|e| e.digest != digest);
        let sectors = len.div_ceil(self.sector).max(1);
        let span = sectors.saturating_mul(self.sector);
        let mut used: Vec<(u32, u32)> = self
            .entries
            .iter()
            .map(|e| (e.extent.offset, self.span(e.extent.len)))
            .collect();
        used.sort_unstable();
        let mut at = 0u32;
        for (offset, taken) in used {
            if offset.saturating_sub(at) >= span {
                break;
            }
            at = at.max(offset + taken);
        }
        if at.checked_add(span).is_none_or(|end| end > self.region_len) {
            return Err(NoRoom {
                needed: len,
                region: self.region_len,
            });
        }
        let extent = Extent { offset: at, len };
        self.entries.push(Entry {
            digest,
            extent,
            verified: false,
        });
        Ok(extent)
    }

    /// Marks `digest` complete and verified.
    pub fn verified(&mut self, digest: &Digest) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.digest == *digest) {
            e.verified = true;
        }
    }

    /// Drops a reservation that failed (digest mismatch, hub lost the blob).
    pub fn discard(&mut self, digest: &Digest) {
        self.entries.retain(|e| e.digest != *digest || e.verified);
    }

    fn span(&self, len: u32) -> u32 {
        len.div_ceil(self.sector).max(1) * self.sector
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest([n; 32])
    }

    #[test]
    fn first_fit_by_sector_reuses_evicted_room_and_refuses_what_cannot_fit() {
        let mut s = ArtifactStore::new(16 * 1024, 4096);
        let a = s.reserve(d(1), 5000).unwrap();
        let b = s.reserve(d(2), 100).unwrap();
        assert_eq!((a.offset, b.offset), (0, 8192));
        assert_eq!(s.get(&d(1)), None, "not verified yet");
        s.verified(&d(1));
        assert_eq!(s.get(&d(1)), Some(a));
        s.retain(|x| *x != d(1));
        assert_eq!(s.reserve(d(3), 8192).unwrap().offset, 0);
        assert_eq!(
            s.reserve(d(4), 4097),
            Err(NoRoom {
                needed: 4097,
                region: 16 * 1024
            })
        );
        assert_eq!(s.reserve(d(5), 4096).unwrap().offset, 12288);
    }

    #[test]
    fn a_retry_replaces_the_unverified_reservation() {
        let mut s = ArtifactStore::new(8192, 4096);
        s.reserve(d(1), 4096).unwrap();
        assert_eq!(s.reserve(d(1), 4096).unwrap().offset, 0);
        s.discard(&d(1));
        assert_eq!(s.reserve(d(2), 8192).unwrap().offset, 0);
    }
}
