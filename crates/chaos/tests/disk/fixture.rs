//! A disk that runs out of space underneath a file system: ext4 on a loop device whose sparse
//! backing file sits on a small tmpfs.
//!
//! The backing file is larger than the tmpfs, so the loop device looks like a 256 MiB disk that
//! only holds as many blocks as the tmpfs has room for (a thin-provisioned volume). ext4 sees
//! plenty of free space and accepts every write into the page cache; once the tmpfs is full,
//! writing back a block the backing file does not hold fails (ENOSPC from the loop device), and
//! the file's fdatasync reports it. Blocks the backing file holds keep their room in the tmpfs,
//! so rewriting them still works: only writes into unprovisioned blocks fail, as on a full thin
//! volume.
//!
//! espora creates its account files written out with zeros, which provisions every block of
//! them. [`FaultyDisk::unprovision`] gives the blocks of such files that hold only zeros back to
//! the tmpfs (holes punched in the backing file, as a thin volume's discard would), so that
//! their still-empty slots are unprovisioned again and their writeback fails once the tmpfs is
//! full. ext4 never learns of it: its extents stay written, and a hole reads as zeros, the bytes
//! the blocks held. It is done only while nothing writes to the disk: a write landing between
//! the test reading a block as zeros and punching it would be lost by the test's own doing.
//!
//! mkfs writes the inode tables (and the journal, when there is one) out at once, so that
//! ext4's own metadata lives in blocks the tmpfs already holds (and holes are only ever punched
//! inside the files the test names, never in metadata). Unmounting and mounting the ext4 again
//! drops its page cache, and only its own: after a remount, a read shows what the disk holds.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rinha_testkit::{is_root, temp_dir, TempDir};

/// Size of the loop device (and of its sparse backing file): far more than the tmpfs holds.
const DEVICE_BYTES: u64 = 256 << 20;
/// errno ENOSPC (the same on every Linux architecture).
const ENOSPC: i32 = 28;
/// The ext4's block size, the unit of its extents and of the holes punched.
const BLOCK: u64 = 4096;

/// Whether the ext4 keeps a journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Journal {
    /// `-O ^has_journal`: only data writes reach the device outside the inode tables.
    Without,
    /// The default journal (data=ordered).
    Ordered,
}

/// The faulty disk of one test: created by [`FaultyDisk::create`], torn down when dropped (also
/// when the test panics): the ext4 unmounted, the loop device detached, the tmpfs unmounted.
pub struct FaultyDisk {
    /// Holds `store` (the tmpfs) and `mnt` (the ext4); removed last.
    _dir: TempDir,
    store: PathBuf,
    mnt: PathBuf,
    device: Option<String>,
    store_mounted: bool,
    mnt_mounted: bool,
    fillers: Vec<PathBuf>,
}

impl FaultyDisk {
    /// Mounts a tmpfs of `tmpfs_mib` MiB, makes the backing file on it, attaches it to a free
    /// loop device, makes an ext4 on it and mounts that. `Err` says why this machine cannot
    /// (not root, no loop device, no mkfs.ext4, filefrag or fallocate, mount refused): the
    /// caller skips.
    pub fn create(label: &str, tmpfs_mib: u64, journal: Journal) -> Result<FaultyDisk, String> {
        if !is_root() {
            return Err("not running as root (mount(2) and loop devices need it)".into());
        }
        if !Path::new("/dev/loop-control").exists() {
            return Err("no /dev/loop-control: this kernel has no loop devices".into());
        }
        for (program, flag) in [("filefrag", "-V"), ("fallocate", "--version")] {
            let mut command = Command::new(program);
            command.arg(flag);
            run(command).map_err(|why| format!("{program} is needed: {why}"))?;
        }
        let dir = temp_dir(label);
        let store = dir.path().join("store");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&store).expect("create the tmpfs mount point");
        std::fs::create_dir(&mnt).expect("create the ext4 mount point");
        let mut disk = FaultyDisk {
            _dir: dir,
            store,
            mnt,
            device: None,
            store_mounted: false,
            mnt_mounted: false,
            fillers: Vec::new(),
        };
        let mut mount = Command::new("mount");
        mount.args(["-t", "tmpfs", "-o", &format!("size={tmpfs_mib}m"), "tmpfs"]);
        mount.arg(&disk.store);
        run(mount).map_err(|why| format!("cannot mount a tmpfs: {why}"))?;
        disk.store_mounted = true;
        let backing = disk.store.join("backing");
        File::create(&backing)
            .and_then(|file| file.set_len(DEVICE_BYTES))
            .map_err(|error| format!("cannot make the sparse backing file: {error}"))?;
        let mut losetup = Command::new("losetup");
        losetup.args(["--find", "--show"]).arg(&backing);
        let device = run(losetup).map_err(|why| format!("no loop device: {why}"))?;
        disk.device = Some(device.trim().to_owned());
        let mut mkfs = Command::new("mkfs.ext4");
        mkfs.args([
            "-q",
            "-F",
            "-b",
            &BLOCK.to_string(),
            "-N",
            "512",
            "-e",
            "continue",
        ]);
        match journal {
            Journal::Without => {
                mkfs.args(["-O", "^has_journal", "-E", "lazy_itable_init=0"]);
            }
            Journal::Ordered => {
                mkfs.args(["-E", "lazy_itable_init=0,lazy_journal_init=0"]);
            }
        }
        mkfs.arg(disk.device());
        run(mkfs).map_err(|why| format!("mkfs.ext4 failed: {why}"))?;
        disk.mount()
            .map_err(|why| format!("cannot mount the ext4: {why}"))?;
        Ok(disk)
    }

    /// The ext4 mount point.
    pub fn path(&self) -> &Path {
        &self.mnt
    }

    /// The loop device, e.g. `/dev/loop0`.
    pub fn device(&self) -> &str {
        self.device.as_deref().expect("a loop device is attached")
    }

    /// KiB of the tmpfs that the backing file holds: the blocks the disk has written so far.
    pub fn backing_kib(&self) -> u64 {
        std::fs::metadata(self.store.join("backing"))
            .map(|metadata| metadata.blocks() / 2)
            .unwrap_or(0)
    }

    /// Punches holes in the backing file wherever a block of one of `files` (on the ext4) holds
    /// only zeros, so that the disk no longer holds those blocks: writing them back needs room in
    /// the tmpfs again. Syncs the ext4 first. Call it only while nothing writes to the disk (the
    /// servers idle or stopped): a write racing the punch would be lost. Returns the KiB given
    /// back to the tmpfs.
    pub fn unprovision(&self, files: &[PathBuf]) -> u64 {
        // syncfs reports a writeback error of the file system that nobody has seen yet, however
        // old (an earlier fill's): the second one says whether this one wrote everything.
        let sync = || {
            let mut sync = Command::new("sync");
            sync.arg("-f").arg(&self.mnt);
            run(sync)
        };
        if let Err(first) = sync() {
            sync().unwrap_or_else(|why| {
                panic!(
                    "sync -f {} failed twice: {first}; {why}",
                    self.mnt.display()
                )
            });
        }
        let before = self.backing_kib();
        let path = self.store.join("backing");
        let backing = File::open(&path).expect("open the backing file");
        for file in files {
            for (start, length) in physical_extents(file) {
                for (offset, length) in zero_runs(&backing, start, length) {
                    // `fallocate --punch-hole` rather than `--dig-holes`: util-linux 2.38's
                    // dig-holes, given an offset and a length, also punches the block right
                    // after the range, zeros or not (here: the next file's header).
                    let mut punch = Command::new("fallocate");
                    punch.args(["--punch-hole", "--offset", &offset.to_string()]);
                    punch.args(["--length", &length.to_string()]).arg(&path);
                    run(punch).unwrap_or_else(|why| {
                        panic!("punching a hole under {}: {why}", file.display())
                    });
                }
            }
        }
        before.saturating_sub(self.backing_kib())
    }

    /// Fills the tmpfs with a filler file until it has no room left, so that from now on the
    /// writeback of any block the disk does not hold fails with ENOSPC. Returns the bytes written.
    pub fn fill(&mut self) -> u64 {
        let path = self.store.join(format!("filler-{}", self.fillers.len()));
        let mut file = File::create(&path).expect("create a filler file");
        self.fillers.push(path);
        let mut written = 0u64;
        // Large writes first, then pages, so that not even one page is left.
        for chunk in [1 << 20, 4096] {
            let zeros = vec![0u8; chunk];
            loop {
                match file.write(&zeros) {
                    Ok(0) => break,
                    Ok(count) => written += count as u64,
                    Err(error) if error.raw_os_error() == Some(ENOSPC) => break,
                    Err(error) => panic!("filling the tmpfs: {error}"),
                }
            }
        }
        written
    }

    /// Removes the filler files: the disk has room again.
    pub fn free(&mut self) {
        for path in self.fillers.drain(..) {
            std::fs::remove_file(&path).expect("remove a filler file");
        }
    }

    /// Unmounts the ext4 and mounts it again, which drops its page cache: every later read
    /// shows what the disk holds. Every process using it must have stopped.
    pub fn remount(&mut self) {
        self.unmount()
            .unwrap_or_else(|why| panic!("cannot unmount {}: {why}", self.mnt.display()));
        self.mount()
            .unwrap_or_else(|why| panic!("cannot mount {} again: {why}", self.device()));
    }

    fn mount(&mut self) -> Result<(), String> {
        let mut mount = Command::new("mount");
        mount.args(["-t", "ext4", self.device()]).arg(&self.mnt);
        run(mount)?;
        self.mnt_mounted = true;
        Ok(())
    }

    fn unmount(&mut self) -> Result<(), String> {
        let mut umount = Command::new("umount");
        umount.arg(&self.mnt);
        run(umount)?;
        self.mnt_mounted = false;
        Ok(())
    }
}

impl Drop for FaultyDisk {
    fn drop(&mut self) {
        // Quiet and best effort: a teardown failure must not hide the test's own.
        let quiet = |program: &str, args: &[&std::ffi::OsStr]| {
            let _ = Command::new(program)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        };
        if self.mnt_mounted && self.unmount().is_err() {
            // Something still uses it (a process the test could not stop): detach it lazily.
            quiet("umount", &["-l".as_ref(), self.mnt.as_os_str()]);
        }
        if let Some(device) = self.device.take() {
            quiet("losetup", &["-d".as_ref(), device.as_ref()]);
        }
        if self.store_mounted {
            quiet("umount", &[self.store.as_os_str()]);
            if self.store.join("backing").exists() {
                quiet("umount", &["-l".as_ref(), self.store.as_os_str()]);
            }
        }
    }
}

/// Byte ranges of the device (offset, length) that hold `file`'s data, from `filefrag -e -s`
/// (FIEMAP, after syncing the file). Every extent must be written and placed: an unwritten
/// extent would read as zeros whatever its blocks hold, so the premise of
/// [`FaultyDisk::unprovision`] (a hole reads as what the block held) would not be checked.
fn physical_extents(file: &Path) -> Vec<(u64, u64)> {
    let mut filefrag = Command::new("filefrag");
    filefrag.args(["-e", "-s", &format!("-b{BLOCK}")]).arg(file);
    let report = run(filefrag).unwrap_or_else(|why| panic!("filefrag {}: {why}", file.display()));
    // `   0:        0..    2047:      34816..     36863:   2048:             last,eof`, with
    // an `expected` column before the flags when an extent does not follow the one before.
    let mut extents = Vec::new();
    for line in report.lines() {
        let fields: Vec<&str> = line.split(':').map(str::trim).collect();
        let is_extent = fields.len() >= 5 && fields[0].parse::<u64>().is_ok();
        if !is_extent {
            continue;
        }
        let flags = fields[fields.len() - 1];
        for bad in [
            "unwritten",
            "unknown_loc",
            "delalloc",
            "encoded",
            "not_aligned",
        ] {
            assert!(
                !flags.split(',').any(|flag| flag == bad),
                "{} has a {bad} extent ({line}); the test needs every block written and placed",
                file.display()
            );
        }
        let start = fields[2]
            .split("..")
            .next()
            .and_then(|n| n.trim().parse::<u64>().ok());
        let length = fields[3].parse::<u64>().ok();
        let (Some(start), Some(length)) = (start, length) else {
            panic!(
                "filefrag {}: cannot read the extent {line:?}",
                file.display()
            );
        };
        extents.push((start * BLOCK, length * BLOCK));
    }
    assert!(
        !extents.is_empty(),
        "filefrag found no extent of {}:\n{report}",
        file.display()
    );
    extents
}

/// The runs of blocks in `start..start + length` of `backing` that hold only zeros (holes
/// included), as (offset, length) in bytes.
fn zero_runs(backing: &File, start: u64, length: u64) -> Vec<(u64, u64)> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 256 * BLOCK;
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut buffer = vec![0u8; CHUNK as usize];
    let end = start + length;
    let mut at = start;
    while at < end {
        let chunk = &mut buffer[..(end - at).min(CHUNK) as usize];
        backing
            .read_exact_at(chunk, at)
            .expect("read the backing file");
        for (index, block) in chunk.chunks(BLOCK as usize).enumerate() {
            if block.iter().any(|&byte| byte != 0) {
                continue;
            }
            let offset = at + index as u64 * BLOCK;
            match runs.last_mut() {
                Some((run_start, run_length)) if *run_start + *run_length == offset => {
                    *run_length += block.len() as u64;
                }
                _ => runs.push((offset, block.len() as u64)),
            }
        }
        at += chunk.len() as u64;
    }
    runs
}

/// Runs a command to completion; its stdout on success, otherwise its exit status and stderr
/// (or why it could not start, as for a missing program).
fn run(mut command: Command) -> Result<String, String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} exited {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
