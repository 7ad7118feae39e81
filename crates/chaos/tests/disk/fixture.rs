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
//! espora creates its account files with `fallocate`, which on ext4 reserves their blocks and
//! leaves them *unwritten*: nothing reaches the device until a record is written back into a
//! block, so the empty slots are unprovisioned, like a thin volume's, and their writeback fails
//! once the tmpfs is full. That is also the case where ext4 itself goes wrong after the failure
//! (a block whose writeback failed stays unwritten while its cached page says otherwise), which
//! espora's recovery must repair.
//!
//! mkfs writes the inode tables (and the journal, when there is one) out at once, so that
//! ext4's own metadata lives in blocks the tmpfs already holds. Unmounting and mounting the ext4 again
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
/// The ext4's block size.
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
    /// (not root, no loop device, no mkfs.ext4, mount refused): the caller skips.
    pub fn create(label: &str, tmpfs_mib: u64, journal: Journal) -> Result<FaultyDisk, String> {
        if !is_root() {
            return Err("not running as root (mount(2) and loop devices need it)".into());
        }
        if !Path::new("/dev/loop-control").exists() {
            return Err("no /dev/loop-control: this kernel has no loop devices".into());
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
