//! The shared-state file of an account, `account-<id>.espora-state`: the words through which every
//! thread of every process that serves the account coordinates (the head hint, the durable
//! watermark, the sync in flight, and the futex words that waiting writers sleep on).
//!
//! It is a separate file so that the account file is only ever written with `pwrite`: stores
//! into a mapping of the account file would dirty its pages, so every fdatasync would write them
//! back and write-protect them again, and the next store would take a page fault (possibly
//! waiting on the file system) while holding the account lock. This file is never synced: the
//! kernel writes it back now and then, and nothing in it needs to survive a crash, because the
//! open rebuilds it from the records under the account's exclusive lock. Its identity names the
//! boot of the machine, so words left by an earlier boot (stale, zeroed or torn by a power cut)
//! are never trusted.
//!
//! The head and durable words carry a generation in their top bits, and every recovery starts a
//! new one: a writer or a sync of the generation before, finishing after the recovery, cannot
//! raise them over records the recovery did not find on the device.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

use memmap2::MmapRaw;

use crate::error::FileError;
use crate::layout::{
    shared_identity, shared_offset, Header, BOOT_ID_SIZE, SHARED_SIZE, TAGGED_SEQ_BITS,
};

/// Where Linux tells the boot apart: a random UUID chosen at every boot.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// A sequence number of one generation of the shared state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tagged {
    pub generation: u16,
    pub seq: u64,
}

impl Tagged {
    fn pack(self) -> u64 {
        assert!(
            self.seq < 1 << TAGGED_SEQ_BITS,
            "seq {} too large",
            self.seq
        );
        (u64::from(self.generation) << TAGGED_SEQ_BITS) | self.seq
    }

    fn unpack(word: u64) -> Tagged {
        Tagged {
            generation: (word >> TAGGED_SEQ_BITS) as u16,
            seq: word & ((1 << TAGGED_SEQ_BITS) - 1),
        }
    }
}

/// Which futex word of the shared-state file a waiter sleeps on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Bumped when a sync of the file ends.
    Sync,
    /// Bumped when the file's lock is released.
    Lock,
}

/// The mapped shared-state file of one account.
pub struct Shared {
    /// INVARIANT: maps `SHARED_SIZE` bytes of `file`, read-write and shared.
    map: MmapRaw,
    file: File,
    path: PathBuf,
}

impl Shared {
    /// Opens the file, creating it (zero-filled) if it does not exist: built under a temporary
    /// name and linked into place, so that no process ever sees it shorter than its size,
    /// whatever the file system (creating it in place and growing it raced on FUSE). The
    /// identity is checked and written only under the account's exclusive lock.
    pub fn open(path: &Path) -> Result<Shared, FileError> {
        let file = match open_existing(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create(path)?;
                open_existing(path).map_err(|e| FileError::io(path, "open", e))?
            }
            Err(e) => return Err(FileError::io(path, "open", e)),
        };
        let length = file
            .metadata()
            .map_err(|e| FileError::io(path, "stat", e))?
            .len();
        // A file cut short (an older version created it in place): grow it, never shrink it,
        // since another process may have it mapped.
        if length < SHARED_SIZE as u64 {
            file.set_len(SHARED_SIZE as u64)
                .map_err(|e| FileError::io(path, "extend", e))?;
        }
        let map = memmap2::MmapOptions::new()
            .len(SHARED_SIZE)
            .map_raw(&file)
            .map_err(|e| FileError::io(path, "mmap", e))?;
        Ok(Shared {
            map,
            file,
            path: path.into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= SHARED_SIZE);
        // SAFETY: inside the mapping and 8-byte aligned (the mapping is page aligned). Every
        // process accesses these words only atomically.
        unsafe { &*(self.map.as_mut_ptr().add(offset) as *const AtomicU64) }
    }

    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= SHARED_SIZE);
        // SAFETY: as in `u64_at`, for a 4-byte aligned word.
        unsafe { &*(self.map.as_mut_ptr().add(offset) as *const AtomicU32) }
    }

    /// The newest record written, as far as writers have said so, and the generation. Records
    /// are the truth: a writer killed after its `pwrite` leaves the hint one behind, and the
    /// next writer adopts the record (see `Mapping::newest_locked`).
    pub fn head(&self) -> Tagged {
        Tagged::unpack(self.u64_at(shared_offset::HEAD).load(Ordering::Acquire))
    }

    /// Raises the head hint to `to.seq` if it is still of generation `to.generation` (writers
    /// publish after unlocking, in any order; one that finishes after a recovery changes
    /// nothing).
    pub fn publish_head(&self, to: Tagged) {
        raise(self.u64_at(shared_offset::HEAD), to);
    }

    /// The head and durable words, made to agree on their generation. A recovery stores the
    /// durable word first, then the head; one killed (or still working) between the two stores
    /// leaves the head a generation behind. The caller holds the account's exclusive lock, so a
    /// recovery that is still working is done: the durable word's generation is the newest, and
    /// the head hint restarts at the durable mark of that generation (writers adopt the records
    /// after it).
    pub fn settle_locked(&self) -> (Tagged, Tagged) {
        let durable = self.durable();
        let head = self.head();
        if head.generation == durable.generation {
            return (head, durable);
        }
        self.u64_at(shared_offset::HEAD)
            .store(durable.pack(), Ordering::Release);
        (durable, durable)
    }

    /// The highest sequence number known to be on disk, and its generation.
    pub fn durable(&self) -> Tagged {
        Tagged::unpack(self.u64_at(shared_offset::DURABLE).load(Ordering::Acquire))
    }

    /// Records that a sync which started when `to.seq` was the head has completed; nothing if a
    /// recovery started another generation meanwhile. Returns by how many records this call
    /// raised the watermark (0 when it already covered `to`: a sync that took over a stale
    /// claim and ran beside the first), or `None` for another generation.
    pub fn raise_durable(&self, to: Tagged) -> Option<u64> {
        raise(self.u64_at(shared_offset::DURABLE), to)
    }

    /// The sync in flight: 0 when none, else the claim token of its owner.
    pub fn sync_claim(&self) -> &AtomicU64 {
        self.u64_at(shared_offset::SYNC_CLAIM)
    }

    /// When the last sync started, in nanoseconds of the monotonic clock (0: never).
    pub fn sync_started(&self) -> &AtomicU64 {
        self.u64_at(shared_offset::SYNC_STARTED)
    }

    /// How many records the last completed sync made durable.
    pub fn sync_group(&self) -> &AtomicU64 {
        self.u64_at(shared_offset::SYNC_GROUP)
    }

    /// The futex word of `event`.
    pub fn events(&self, event: Event) -> &AtomicU32 {
        match event {
            Event::Sync => self.u32_at(shared_offset::SYNC_EVENTS),
            Event::Lock => self.u32_at(shared_offset::LOCK_EVENTS),
        }
    }

    /// How many threads sleep on the futex word of `event` (a hint).
    pub fn sleepers(&self, event: Event) -> &AtomicU32 {
        match event {
            Event::Sync => self.u32_at(shared_offset::SYNC_SLEEPERS),
            Event::Lock => self.u32_at(shared_offset::LOCK_SLEEPERS),
        }
    }

    /// Bumps the futex word of `event` and wakes its sleepers, if any announced themselves. A
    /// bump tells waiters to look again; one with nothing behind it costs them a look.
    pub fn bump_and_wake(&self, event: Event) {
        let word = self.events(event);
        word.fetch_add(1, Ordering::SeqCst);
        if self.sleepers(event).load(Ordering::SeqCst) > 0 {
            // A failed wake can only be a bad address, which a mapped word is not.
            let _ = rustix::thread::futex::wake(
                word,
                rustix::thread::futex::Flags::empty(),
                i32::MAX as u32,
            );
        }
    }

    /// Writes a fresh value with `pwrite` and reads it back through the mapping: false when the
    /// file system does not keep the two coherent (some FUSE file systems with direct I/O),
    /// which espora, writing with `pwrite` and reading through mappings, cannot run on. The
    /// caller holds the account's exclusive lock, so no other prober races it.
    pub fn coherent(&self) -> io::Result<bool> {
        let value = (crate::time::now_us() as u64) ^ u64::from(std::process::id()).rotate_left(32);
        self.file
            .write_all_at(&value.to_le_bytes(), shared_offset::PROBE as u64)?;
        Ok(self.u64_at(shared_offset::PROBE).load(Ordering::Acquire) == value)
    }

    /// The generation of the shared state, if this file belongs to the account file `header`
    /// describes in this boot.
    pub fn generation_if_bound(&self, header: &Header) -> Option<u16> {
        self.bound_to(header).then(|| self.head().generation)
    }

    /// The durable watermark, if this file belongs to the account file `header` describes and
    /// was written in this boot; 0 otherwise (a new file, one zeroed or left from another
    /// account file or an earlier boot, or a machine whose boot cannot be told apart).
    pub fn durable_if_bound(&self, header: &Header) -> u64 {
        match self.bound_to(header) && boot_id().is_some() {
            true => self.durable().seq,
            false => 0,
        }
    }

    fn bound_to(&self, header: &Header) -> bool {
        let identity = shared_identity(header, &boot_id().unwrap_or_default());
        let base = self.map.as_mut_ptr();
        (0..identity.len()).all(|i| {
            // SAFETY: inside the mapping; the identity bytes are only written under the
            // account's exclusive lock, which the callers hold.
            unsafe { std::ptr::read_volatile(base.add(i)) == identity[i] }
        })
    }

    /// Binds the file to the account file described by `header` in this boot and publishes
    /// what recovery found, as a new generation: `newest` as the head and `durable` as the
    /// durable watermark. The caller holds the account's exclusive lock and has checked that
    /// every record up to `newest` is on the device. Returns the new generation.
    ///
    /// When the identity does not match (a first open, an account file made anew, a file zeroed
    /// or left by an earlier boot), every word is cleared first. When it matches, the sync claim
    /// and the futex words are left alone: other processes may be waiting on them right now
    /// (for this very lock), and a stale claim is taken over by its waiters anyway.
    pub fn reset(&self, header: &Header, newest: u64, durable: u64) -> u16 {
        assert!(
            durable <= newest,
            "durable {durable} passed newest {newest}"
        );
        let before = if self.bound_to(header) {
            // The durable word is stored first, so it holds the newest generation, also when
            // a recovery died before storing the head.
            Some(self.durable().generation)
        } else {
            let identity = shared_identity(header, &boot_id().unwrap_or_default());
            let base = self.map.as_mut_ptr();
            for offset in (shared_offset::HEAD..SHARED_SIZE).step_by(8) {
                self.u64_at(offset).store(0, Ordering::Release);
            }
            for (i, byte) in identity.iter().enumerate() {
                // SAFETY: as above.
                unsafe { std::ptr::write_volatile(base.add(i), *byte) };
            }
            None
        };
        let generation = before.map_or(1, |g| g.wrapping_add(1));
        // The durable word first: a recovery killed between the two stores leaves the newer
        // generation there, which `settle_locked` completes. A sync of the generation before may
        // have raised the word since the scan read it (syncs take no lock), and appends may have
        // been acknowledged on it: the new mark keeps it, so that a head settled at the mark
        // still covers them (what it covered is on the device: the scan's direct read came
        // after that sync's writeback, or wrote the pages back itself).
        let word = self.u64_at(shared_offset::DURABLE);
        let mut current = word.load(Ordering::Acquire);
        loop {
            let seen = Tagged::unpack(current);
            let kept = match before {
                Some(g) if seen.generation == g => seen.seq,
                _ => 0,
            };
            let to = Tagged {
                generation,
                seq: durable.max(kept).min(newest),
            };
            match word.compare_exchange_weak(
                current,
                to.pack(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        let head = Tagged {
            generation,
            seq: newest,
        };
        self.u64_at(shared_offset::HEAD)
            .store(head.pack(), Ordering::Release);
        generation
    }
}

/// Raises the tagged word to `to` if it holds the same generation and a lower sequence number.
/// Returns whether the word now covers `to`.
/// Raises `word` to `to` within its generation: `None` for another generation, else by how many
/// sequence numbers this call raised it.
fn raise(word: &AtomicU64, to: Tagged) -> Option<u64> {
    let mut current = word.load(Ordering::Acquire);
    loop {
        let seen = Tagged::unpack(current);
        if seen.generation != to.generation {
            return None;
        }
        if seen.seq >= to.seq {
            return Some(0);
        }
        match word.compare_exchange_weak(current, to.pack(), Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(to.seq - seen.seq),
            Err(actual) => current = actual,
        }
    }
}

fn open_existing(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::CLOEXEC.bits() as i32)
        .open(path)
}

/// Makes a zero-filled file of `SHARED_SIZE` bytes under a temporary name and links it into
/// place; `EEXIST` means another process (or thread) won, with a file just as good. The file is
/// never synced: nothing in it needs to survive a crash.
fn create(path: &Path) -> Result<(), FileError> {
    crate::paths::create_linked(path, |file, temp| {
        file.write_all_at(&[0u8; SHARED_SIZE], 0)
            .map_err(|e| FileError::io(temp, "write", e))
    })
}

/// This boot of the machine, from the kernel; `None` where /proc is missing, and then the
/// shared state is never trusted for recovery.
pub fn boot_id() -> Option<[u8; BOOT_ID_SIZE]> {
    static BOOT: OnceLock<Option<[u8; BOOT_ID_SIZE]>> = OnceLock::new();
    *BOOT.get_or_init(|| parse_boot_id(&std::fs::read_to_string(BOOT_ID_PATH).ok()?))
}

/// A UUID as the kernel prints it (`f3cd0254-4c40-4d25-b8dc-e0fa75f64c7a`).
fn parse_boot_id(text: &str) -> Option<[u8; BOOT_ID_SIZE]> {
    let digits: Vec<u8> = text.trim().bytes().filter(|&b| b != b'-').collect();
    if digits.len() != 2 * BOOT_ID_SIZE {
        return None;
    }
    let mut id = [0u8; BOOT_ID_SIZE];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        id[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    (id != [0u8; BOOT_ID_SIZE]).then_some(id)
}

/// The durable watermark that the shared-state file at `path` holds for the account file
/// `header` describes, read without creating or changing anything (for the tool): 0 when the
/// file is missing, unreadable, belongs to another account file or to an earlier boot.
pub fn peek_durable(path: &Path, header: &Header) -> u64 {
    let mut bytes = [0u8; shared_offset::DURABLE + 8];
    let read = File::open(path).and_then(|file| file.read_exact_at(&mut bytes, 0));
    let Some(boot) = boot_id() else {
        return 0;
    };
    let identity = shared_identity(header, &boot);
    if read.is_err() || bytes[..identity.len()] != identity {
        return 0;
    }
    let at = shared_offset::DURABLE;
    Tagged::unpack(u64::from_le_bytes(
        bytes[at..at + 8].try_into().expect("8 bytes"),
    ))
    .seq
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads opening one fresh shared-state file at once, round after round, while another
    /// thread stats the name in a tight loop: the file is never seen shorter than its size (it
    /// used to be created empty and grown, which a FUSE file system raced), and every opener
    /// maps the same file.
    #[test]
    fn creation_races_never_show_a_short_file() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        for round in 0..1000 {
            let path = dir.path().join(format!("account-{round}.espora-state"));
            let barrier = std::sync::Barrier::new(3);
            let done = std::sync::atomic::AtomicBool::new(false);
            let (inodes, short) = std::thread::scope(|scope| {
                let watcher = scope.spawn(|| {
                    let mut short = 0;
                    while !done.load(Ordering::Relaxed) {
                        if let Ok(metadata) = std::fs::metadata(&path) {
                            short += u32::from(metadata.len() < SHARED_SIZE as u64);
                        }
                    }
                    short
                });
                let openers: Vec<_> = (0..2)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            Shared::open(&path).unwrap().file.metadata().unwrap().ino()
                        })
                    })
                    .collect();
                barrier.wait();
                let inodes: Vec<u64> = openers.into_iter().map(|t| t.join().unwrap()).collect();
                done.store(true, Ordering::Relaxed);
                (inodes, watcher.join().unwrap())
            });
            assert_eq!(
                short, 0,
                "round {round}: the file was seen short {short} times"
            );
            assert!(
                inodes.iter().all(|&i| i == inodes[0]),
                "round {round}: {inodes:?}"
            );
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    #[test]
    fn boot_ids_parse_as_the_kernel_prints_them() {
        let id = parse_boot_id("f3cd0254-4c40-4d25-b8dc-e0fa75f64c7a\n").unwrap();
        assert_eq!(id[0], 0xf3);
        assert_eq!(id[15], 0x7a);
        assert_eq!(parse_boot_id("f3cd0254"), None);
        assert_eq!(parse_boot_id("zzcd0254-4c40-4d25-b8dc-e0fa75f64c7a"), None);
        assert_eq!(parse_boot_id("00000000-0000-0000-0000-000000000000"), None);
        assert!(boot_id().is_some(), "this machine has {BOOT_ID_PATH}");
    }

    #[test]
    fn tagged_words_rise_only_within_their_generation() {
        let tagged = |generation, seq| Tagged { generation, seq };
        let word = AtomicU64::new(tagged(3, 10).pack());
        #[rustfmt::skip]
        let rows = [
            (tagged(3, 12), Some(2), 12), // raised by two
            (tagged(3, 11), Some(0), 12), // already covered
            (tagged(3, 12), Some(0), 12), // a second sync of the same head
            (tagged(2, 99), None, 12),    // a generation before
            (tagged(4, 99), None, 12),    // a generation after
            (tagged(3, 13), Some(1), 13),
        ];
        for (to, raised, after) in rows {
            assert_eq!(raise(&word, to), raised, "{to:?}");
            assert_eq!(
                Tagged::unpack(word.load(Ordering::Relaxed)),
                tagged(3, after)
            );
        }
        let top = tagged(u16::MAX, (1 << TAGGED_SEQ_BITS) - 1);
        assert_eq!(Tagged::unpack(top.pack()), top);
    }
}
