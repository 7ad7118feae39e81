//! Where espora's files live: their names in the data directory, and new files made under a
//! temporary name beside their final one, to be linked into place.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::FileError;
use crate::time::now_us;

/// The file name of an account inside the data directory.
pub fn account_file_name(account_id: u32) -> String {
    format!("account-{account_id}.espora")
}

/// The file name of an account's shared-state file (see `shared.rs`). Builds before the
/// generation-tagged words used `account-<id>.espora-shm`, with the same offsets and other
/// meanings: the new name keeps an older process still running from reading the new words.
pub fn shared_file_name(account_id: u32) -> String {
    format!("account-{account_id}.espora-state")
}

/// Creates a new file beside `path` under a name no other process or thread uses (a random part:
/// processes in separate PID namespaces, as containers on one volume, share pids), to be linked
/// into place and removed by its creator alone.
pub(crate) fn create_temp(path: &Path) -> Result<(PathBuf, File), FileError> {
    use std::hash::{BuildHasher, Hasher};
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    let mut attempt = 0;
    loop {
        // Each RandomState is seeded from the operating system's randomness.
        let mut random = std::collections::hash_map::RandomState::new().build_hasher();
        random.write_u32(std::process::id());
        random.write_i64(now_us());
        let temp = path.with_file_name(format!(".{name}.tmp.{:016x}", random.finish()));
        let created = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(rustix::fs::OFlags::CLOEXEC.bits() as i32)
            .open(&temp);
        match created {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 8 => attempt += 1,
            Err(e) => return Err(FileError::io(&temp, "create", e)),
        }
    }
}
