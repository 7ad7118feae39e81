//! What the device holds: an account file read past the page cache, and the page cache made to
//! agree with it.
//!
//! After a failed writeback Linux keeps the pages in the page cache, marked clean, and reports
//! the error once per open file description: a process that starts later reads through the
//! cache records that the disk never got, and its own fdatasync succeeds. So recovery never
//! trusts the cache: it reads the whole file with `O_DIRECT` (which first writes back what is
//! dirty, then reads the device), decides the history from those bytes, and writes them back,
//! with `O_DIRECT` again, over every page where the cache differs, before anyone is told of the
//! history: the device keeps its bytes and the stale cached pages are dropped
//! ([`Image::repair`]). Where the file system refuses `O_DIRECT` (tmpfs before Linux 6.6, some
//! FUSE file systems) the cache is all there is to read, and the image says so.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::{Range, RangeInclusive};
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
        image.direct = match open_direct(path, false) {
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
            true => open_direct(path, false)?,
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
            push_differences(&mut runs, from, cached, image);
        }
        Ok(runs)
    }

    /// Makes the device and the page cache hold the image's bytes over `runs` (pieces from
    /// [`Image::differences`] and erased orphans). The caller holds the account's exclusive lock.
    ///
    /// Every page that holds a run is written whole from the image with `O_DIRECT`, and the
    /// kernel drops the cached page it replaces. The device gets back the bytes it already
    /// holds (or zeros over an orphan), so there is no moment where it reads anything else (as
    /// it would between a `fallocate` zeroing and the rewrite). The direct write matters on
    /// ext4: when the writeback of a page into a block that `fallocate` left *unwritten*
    /// fails, the cached page's buffers are left claiming a written block while the block stays
    /// unwritten; every later write into that page would reach the disk, be covered by a
    /// successful fdatasync, and still read back as zeros. A direct write converts the block
    /// and the dropped page takes those buffers with it.
    ///
    /// Each page is then read back through the mapping; where the cache still shows other
    /// bytes (the kernel could not drop a page in use), or where the file system refuses
    /// direct I/O, the differing pieces are written through the cache with `pwrite`. Returns
    /// the pages written directly and the pieces written through the cache.
    pub fn repair(
        &self,
        path: &Path,
        file: &File,
        mapping: &Mapping,
        runs: &[Range<usize>],
    ) -> io::Result<Repaired> {
        let mut repaired = Repaired::default();
        if runs.is_empty() {
            return Ok(repaired);
        }
        let direct = match self.direct {
            true => match open_direct(path, true) {
                Ok(direct) => Some(direct),
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => None,
                Err(e) => return Err(e),
            },
            false => None,
        };
        let Some(direct) = direct else {
            repaired.pieces = self.write_through_cache(file, runs)?;
            return Ok(repaired);
        };
        let pages = whole_pages(runs);
        for page in &pages {
            let bytes = &self.buffer[self.start + page.start..self.start + page.end];
            direct.write_all_at(bytes, page.start as u64)?;
            repaired.pages += page.len() / DIRECT_ALIGN;
        }
        let mut cached = vec![0u8; DIRECT_ALIGN];
        let mut left = Vec::new();
        for page in &pages {
            for from in page.clone().step_by(DIRECT_ALIGN) {
                mapping.copy_locked(from, &mut cached);
                let image = &self.buffer[self.start + from..self.start + from + DIRECT_ALIGN];
                push_differences(&mut left, from, &cached, image);
            }
        }
        repaired.pieces = self.write_through_cache(file, &left)?;
        Ok(repaired)
    }

    /// Writes the image's bytes over `runs` with `pwrite` through `file`; returns the pieces.
    fn write_through_cache(&self, file: &File, runs: &[Range<usize>]) -> io::Result<usize> {
        for run in runs {
            let bytes = &self.buffer[self.start + run.start..self.start + run.end];
            file.write_all_at(bytes, run.start as u64)?;
        }
        Ok(runs.iter().map(|run| run.len() / RECORD_SIZE).sum())
    }
}

/// What [`Image::repair`] wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    /// 4 KiB pages written to the device with direct I/O.
    pub pages: usize,
    /// 128-byte pieces written through the page cache.
    pub pieces: usize,
}

/// The 4 KiB pages that hold any of `runs`, merged into ascending runs of whole pages.
fn whole_pages(runs: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut pages: Vec<Range<usize>> = runs
        .iter()
        .filter(|run| !run.is_empty())
        .map(|run| run.start / DIRECT_ALIGN * DIRECT_ALIGN..run.end.next_multiple_of(DIRECT_ALIGN))
        .collect();
    pages.sort_by_key(|page| page.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(pages.len());
    for page in pages {
        match merged.last_mut() {
            Some(last) if last.end >= page.start => last.end = last.end.max(page.end),
            _ => merged.push(page),
        }
    }
    merged
}

/// Appends to `runs` the 128-byte pieces where `cached` and `image` (the same bytes of the
/// file, from `offset`) differ, extending the last run where they touch.
fn push_differences(runs: &mut Vec<Range<usize>>, offset: usize, cached: &[u8], image: &[u8]) {
    if cached == image {
        return;
    }
    for at in (0..cached.len()).step_by(RECORD_SIZE) {
        if cached[at..at + RECORD_SIZE] == image[at..at + RECORD_SIZE] {
            continue;
        }
        let piece = offset + at;
        match runs.last_mut() {
            Some(run) if run.end == piece => run.end += RECORD_SIZE,
            _ => runs.push(piece..piece + RECORD_SIZE),
        }
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

/// Opens `path` past the page cache (`O_DIRECT`), for reading, and for writing too if `write`.
fn open_direct(path: &Path, write: bool) -> io::Result<File> {
    let flags = rustix::fs::OFlags::DIRECT | rustix::fs::OFlags::CLOEXEC;
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(flags.bits() as i32)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_become_whole_pages_merged_in_order() {
        let runs = [
            9000..9128,
            4096..4224,
            8192..8320,
            100 * 4096 - 128..100 * 4096 + 128,
            5000..5000,
        ];
        assert_eq!(
            whole_pages(&runs),
            [4096..12288, 99 * 4096..101 * 4096],
            "pages holding each run, touching pages merged, empty runs ignored"
        );
        assert_eq!(whole_pages(&[]), Vec::<Range<usize>>::new());
    }

    #[test]
    fn differences_are_128_byte_pieces_joined_where_they_touch() {
        let image = vec![0u8; 1024];
        let mut cached = image.clone();
        cached[0] = 1;
        cached[130] = 1;
        cached[600] = 1;
        let mut runs = Vec::new();
        runs.push(0..128);
        push_differences(&mut runs, 4096, &cached, &image);
        assert_eq!(runs, [0..128, 4096..4352, 4608..4736]);
        let mut runs = Vec::new();
        runs.push(3968..4096);
        push_differences(&mut runs, 4096, &cached, &image);
        assert_eq!(
            runs,
            [3968..4352, 4608..4736],
            "a run reaching the offset extends"
        );
        let mut runs = Vec::new();
        push_differences(&mut runs, 0, &image, &image);
        assert!(runs.is_empty());
    }
}
