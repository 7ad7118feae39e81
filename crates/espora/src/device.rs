//! What the device holds: an account file read past the page cache, and the page cache made to
//! agree with it.
//!
//! After a failed writeback Linux keeps the pages in the page cache, marked clean, and reports
//! the error once per open file description: a process that starts later reads through the
//! cache records that the disk never got, and its own fdatasync succeeds. So recovery never
//! trusts the cache: it reads the whole file with `O_DIRECT` (which first writes back what is
//! dirty, then reads the device), decides the history from those bytes, and writes them back
//! with `pwrite` wherever the cache differs, before anyone is told of the history. Where the
//! file system refuses `O_DIRECT` (tmpfs before Linux 6.6, some FUSE file systems) the cache is
//! all there is to read, and the image says so.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::{Range, RangeInclusive};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::file::Mapping;
use crate::layout::{Header, HEADER_SIZE, RECORD_SIZE};
use crate::verify::Slots;

/// Alignment of `O_DIRECT` buffers, offsets and lengths: a page, which is also the largest
/// logical block size of common devices.
const DIRECT_ALIGN: usize = 4096;
/// Bytes per read call.
const READ_CHUNK: usize = 1 << 20;
/// Times a read is tried when it fails: the first `O_DIRECT` read after a failed writeback
/// reports that old error once (the write-back it starts checks the mapping's error flags).
const READ_ATTEMPTS: u32 = 3;

const _: () = assert!(HEADER_SIZE.is_multiple_of(DIRECT_ALIGN));
const _: () = assert!(DIRECT_ALIGN.is_multiple_of(RECORD_SIZE));
const _: () = assert!(READ_CHUNK.is_multiple_of(DIRECT_ALIGN));

/// The bytes of a whole account file as the device returned them.
pub struct Image {
    /// Anonymous memory of its own, page aligned, returned to the system when the image is
    /// dropped (not kept by the allocator for the process's life). INVARIANT:
    /// `buffer[start..start + length]` is page aligned in memory; `length` is the
    /// file's size rounded up to `DIRECT_ALIGN`.
    buffer: memmap2::MmapMut,
    start: usize,
    length: usize,
    header: Header,
    /// Read with `O_DIRECT`; false where the file system refused it.
    direct: bool,
}

impl Image {
    /// Reads the whole file described by `header` from the device.
    pub fn read(path: &Path, header: &Header) -> io::Result<Image> {
        let length = (header.file_size() as usize).next_multiple_of(DIRECT_ALIGN);
        let buffer = memmap2::MmapMut::map_anon(length)?;
        let start = 0;
        assert!(buffer.as_ptr().align_offset(DIRECT_ALIGN) == 0);
        let mut image = Image {
            buffer,
            start,
            length,
            header: *header,
            direct: true,
        };
        image.direct = match open_direct(path) {
            Ok(file) => {
                image.read_range(&file, 0, length)?;
                true
            }
            // The file system has no direct I/O: the page cache is what it has.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                let file = File::open(path)?;
                image.read_range(&file, 0, length)?;
                false
            }
            Err(e) => return Err(e),
        };
        Ok(image)
    }

    /// Whether the bytes came from the device rather than the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Reads again the pages that hold the records `seqs` (the ring wraps): the part of the file
    /// that writers may have changed since the image was read.
    pub fn reread(&mut self, path: &Path, seqs: RangeInclusive<u64>) -> io::Result<()> {
        let (first, last) = (*seqs.start(), *seqs.end());
        assert!(first >= 1 && first <= last);
        // A range of more than half the ring may wrap onto its own first page: read it all.
        if last - first + 1 > self.header.capacity / 2 {
            return self.reread_all(path);
        }
        let page_of = |seq: u64| self.header.slot_offset(seq) / DIRECT_ALIGN * DIRECT_ALIGN;
        let (from, to) = (page_of(first), page_of(last) + DIRECT_ALIGN);
        let file = match self.direct {
            true => open_direct(path)?,
            false => File::open(path)?,
        };
        if from < to {
            self.read_range(&file, from, to)
        } else {
            // Wrapped: the end of the ring, then its start.
            self.read_range(&file, from, self.length)?;
            self.read_range(&file, HEADER_SIZE, to)
        }
    }

    fn reread_all(&mut self, path: &Path) -> io::Result<()> {
        let fresh = Image::read(path, &self.header)?;
        *self = fresh;
        Ok(())
    }

    /// Reads bytes `from..to` of the file into the image, retrying a failed read.
    fn read_range(&mut self, file: &File, from: usize, to: usize) -> io::Result<()> {
        assert!(from.is_multiple_of(DIRECT_ALIGN) && to.is_multiple_of(DIRECT_ALIGN));
        assert!(from <= to && to <= self.length);
        let mut attempt = 1;
        loop {
            match self.read_range_once(file, from, to) {
                Ok(()) => return Ok(()),
                Err(e) if attempt < READ_ATTEMPTS && e.kind() != io::ErrorKind::InvalidInput => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn read_range_once(&mut self, file: &File, from: usize, to: usize) -> io::Result<()> {
        // The file ends inside its last page when the ring is not a multiple of a page; what
        // lies beyond it stays zero.
        let end = to.min(self.header.file_size() as usize);
        let mut offset = from;
        while offset < end {
            let chunk_end = (offset + READ_CHUNK).min(to);
            let at = self.start + offset;
            let read = file.read_at(&mut self.buffer[at..self.start + chunk_end], offset as u64)?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ends at {offset} bytes, its header says {end}"),
                ));
            }
            offset += read;
        }
        Ok(())
    }

    /// The file's first `HEADER_SIZE` bytes.
    pub fn header_bytes(&self) -> &[u8] {
        &self.buffer[self.start..self.start + HEADER_SIZE]
    }

    fn chunk(&self, offset: usize) -> [u8; RECORD_SIZE] {
        let at = self.start + offset;
        self.buffer[at..at + RECORD_SIZE]
            .try_into()
            .expect("a record's bytes")
    }

    /// Empties the slots with these indexes (recovery's leftovers of a crash).
    pub fn erase(&mut self, slots: &[u64]) {
        for &slot in slots {
            let at = self.start + HEADER_SIZE + slot as usize * RECORD_SIZE;
            self.buffer[at..at + RECORD_SIZE].fill(0);
        }
    }

    /// The runs of 128-byte pieces where the page cache (`mapping`) shows other bytes than the
    /// image, as byte ranges of the file. Pages the cache does not hold are skipped: whoever
    /// reads them reads the device, and comparing them would read the whole file twice. The
    /// caller holds the account's lock (exclusive, or shared for the tool: no writer moves).
    pub fn differences(&self, mapping: &Mapping) -> io::Result<Vec<Range<usize>>> {
        let resident = mapping.resident_pages()?;
        let page = crate::file::page_size();
        let size = self.header.file_size() as usize;
        let mut cached = vec![0u8; page];
        let mut runs: Vec<Range<usize>> = Vec::new();
        for (index, _) in resident.iter().enumerate().filter(|(_, &held)| held) {
            let from = index * page;
            let to = (from + page).min(size);
            let cached = &mut cached[..to - from];
            mapping.copy_locked(from, cached);
            let image = &self.buffer[self.start + from..self.start + to];
            if cached == image {
                continue;
            }
            for offset in (from..to).step_by(RECORD_SIZE) {
                let at = offset - from;
                if cached[at..at + RECORD_SIZE] == image[at..at + RECORD_SIZE] {
                    continue;
                }
                match runs.last_mut() {
                    Some(run) if run.end == offset => run.end += RECORD_SIZE,
                    _ => runs.push(offset..offset + RECORD_SIZE),
                }
            }
        }
        Ok(runs)
    }

    /// Makes the page cache hold the image's bytes over `runs` (from [`Image::differences`]),
    /// with `pwrite` through `file`. The caller holds the account's exclusive lock.
    pub fn write_back(&self, file: &File, runs: &[Range<usize>]) -> io::Result<()> {
        for run in runs {
            let bytes = &self.buffer[self.start + run.start..self.start + run.end];
            file.write_all_at(bytes, run.start as u64)?;
        }
        Ok(())
    }

    /// Writes zeros, through `file`, over every slot that is empty in the image: what the device
    /// already holds there, written so that the file system records those blocks as written
    /// (see [`has_unwritten_extents`]). The caller holds the account's exclusive lock, and the
    /// page cache agrees with the image. Returns how many slots it wrote.
    pub fn write_out_empty_slots(&self, file: &File) -> io::Result<u64> {
        let zeros = [0u8; READ_CHUNK];
        let mut written = 0;
        let mut run: Option<(usize, usize)> = None;
        let flush = |run: Option<(usize, usize)>| -> io::Result<()> {
            let Some((from, to)) = run else {
                return Ok(());
            };
            let mut at = from;
            while at < to {
                let end = (at + READ_CHUNK).min(to);
                file.write_all_at(&zeros[..end - at], at as u64)?;
                at = end;
            }
            Ok(())
        };
        for offset in (HEADER_SIZE..self.header.file_size() as usize).step_by(RECORD_SIZE) {
            if self.chunk(offset) != [0u8; RECORD_SIZE] {
                flush(run.take())?;
                continue;
            }
            written += 1;
            run = match run {
                Some((from, to)) if to == offset => Some((from, offset + RECORD_SIZE)),
                other => {
                    flush(other)?;
                    Some((offset, offset + RECORD_SIZE))
                }
            };
        }
        flush(run)?;
        Ok(written)
    }
}

impl Slots for Image {
    fn header(&self) -> &Header {
        &self.header
    }

    fn slot(&self, seq: u64) -> [u8; RECORD_SIZE] {
        self.chunk(self.header.slot_offset(seq))
    }
}

/// Reads the first `size` bytes of `file` through the page cache, so that the cache holds them
/// (best effort: an error only leaves pages to be read later).
pub fn warm(file: &File, size: u64) {
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut offset = 0;
    while offset < size {
        match file.read_at(&mut chunk, offset) {
            Ok(0) | Err(_) => return,
            Ok(read) => offset += read as u64,
        }
    }
}

/// Whether the file system keeps blocks of `file` as allocated but never written (`fallocate`'s
/// unwritten extents; files created by earlier versions of espora have them). After a failed
/// writeback into such a block ext4 stops converting it, so a later write that a successful
/// fdatasync covered still reads back as zeros from the disk: the blocks must be written once
/// while the disk works. False where the file system cannot say (no FIEMAP).
pub fn has_unwritten_extents(file: &File) -> io::Result<bool> {
    /// `struct fiemap` and `struct fiemap_extent` of `linux/fiemap.h`.
    #[repr(C)]
    struct Fiemap {
        start: u64,
        length: u64,
        flags: u32,
        mapped_extents: u32,
        extent_count: u32,
        reserved: u32,
        extents: [FiemapExtent; FIEMAP_EXTENTS],
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct FiemapExtent {
        logical: u64,
        physical: u64,
        length: u64,
        reserved64: [u64; 2],
        flags: u32,
        reserved: [u32; 3],
    }
    const FIEMAP_EXTENTS: usize = 64;
    /// `_IOWR('f', 11, struct fiemap)`: the header alone is 32 bytes.
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_EXTENT_LAST: u32 = 0x1;
    const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
    const _: () = assert!(std::mem::size_of::<FiemapExtent>() == 56);
    const _: () = assert!(std::mem::size_of::<Fiemap>() == 32 + 56 * FIEMAP_EXTENTS);

    let mut start = 0u64;
    loop {
        let mut map = Fiemap {
            start,
            length: u64::MAX - start,
            flags: 0,
            mapped_extents: 0,
            extent_count: FIEMAP_EXTENTS as u32,
            reserved: 0,
            extents: [FiemapExtent {
                logical: 0,
                physical: 0,
                length: 0,
                reserved64: [0; 2],
                flags: 0,
                reserved: [0; 3],
            }; FIEMAP_EXTENTS],
        };
        // SAFETY: `map` is a `struct fiemap` followed by room for `extent_count` extents, as
        // the ioctl expects, and lives across the call.
        let done = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, &mut map) };
        if done < 0 {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EINVAL) => Ok(false),
                _ => Err(error),
            };
        }
        let extents = &map.extents[..(map.mapped_extents as usize).min(FIEMAP_EXTENTS)];
        if extents
            .iter()
            .any(|e| e.flags & FIEMAP_EXTENT_UNWRITTEN != 0)
        {
            return Ok(true);
        }
        match extents.last() {
            Some(last) if last.flags & FIEMAP_EXTENT_LAST == 0 => {
                start = last.logical + last.length;
            }
            _ => return Ok(false),
        }
    }
}

fn open_direct(path: &Path) -> io::Result<File> {
    let flags = rustix::fs::OFlags::DIRECT | rustix::fs::OFlags::CLOEXEC;
    OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
}
