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

/// Times a creation starts over when its temporary file was taken for abandoned (see
/// [`remove_abandoned`]) in the instant between its creation and its lock.
const CREATE_ATTEMPTS_MAX: u32 = 4;

/// How long after its last change a temporary file nobody holds counts as abandoned. A creator
/// makes its file, then locks it: in the instant between, the file is free but new, and
/// a cleaner (another process opening the same directory, as two instances starting together
/// do) must leave it alone. A creator that died left a file older than this by the time
/// anything opens the directory again, or one open later.
const ABANDONED_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Makes the file `path` whole or not at all: `fill` writes it under a temporary name beside
/// it, then it is linked into place. `EEXIST` from the link means another process (or thread)
/// won the race with a file just as good: an existing file is never replaced. The temporary
/// name is removed in every case.
pub(crate) fn create_linked(
    path: &Path,
    fill: impl Fn(&File, &Path) -> Result<(), FileError>,
) -> Result<(), FileError> {
    let mut attempt = 1;
    loop {
        let (temp, file) = create_temp(path)?;
        let linked = fill(&file, &temp).and_then(|()| match std::fs::hard_link(&temp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(true),
            // Removed under us, taken for abandoned: the file made is lost, make another.
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < CREATE_ATTEMPTS_MAX => {
                Ok(false)
            }
            Err(e) => Err(FileError::io(path, "link", e)),
        });
        let _ = std::fs::remove_file(&temp);
        // The lock that marks the temporary file as in use goes with `file`, after its name.
        drop(file);
        if linked? {
            return Ok(());
        }
        attempt += 1;
    }
}

/// Creates a new file beside `path` under a name no other process or thread uses (a random part:
/// processes in separate PID namespaces, as containers on one volume, share pids), holding an
/// exclusive `flock` on it while it is in use: a temporary file nobody holds was left by a
/// creator that died, and [`remove_abandoned`] removes it.
fn create_temp(path: &Path) -> Result<(PathBuf, File), FileError> {
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
        let temp = path.with_file_name(format!(
            ".{name}{TEMP_INFIX}{:0width$x}",
            random.finish(),
            width = TEMP_SUFFIX_DIGITS
        ));
        let created = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(rustix::fs::OFlags::CLOEXEC.bits() as i32)
            .open(&temp);
        let file = match created {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 8 => {
                attempt += 1;
                continue;
            }
            Err(e) => return Err(FileError::io(&temp, "create", e)),
        };
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            // Where the file system has no flock, no cleaner can take the file either.
            Ok(()) | Err(rustix::io::Errno::NOLCK | rustix::io::Errno::OPNOTSUPP) => {
                return Ok((temp, file));
            }
            // A cleaner found it in the instant before the lock, and removes it: another name.
            Err(rustix::io::Errno::WOULDBLOCK | rustix::io::Errno::INTR) if attempt < 8 => {
                let _ = std::fs::remove_file(&temp);
                attempt += 1;
            }
            Err(e) => return Err(FileError::io(&temp, "flock", e.into())),
        }
    }
}

/// Between a file's own name and the random part of its temporary name.
const TEMP_INFIX: &str = ".tmp.";
/// Hexadecimal digits of the random part.
const TEMP_SUFFIX_DIGITS: usize = 16;

/// Removes the temporary files in `dir` that creators left when they died (a crash during the
/// first start), each 8 MiB for an account file: those of espora's names that no process holds
/// locked and that nothing changed for [`ABANDONED_AGE`]. Best effort: a file it cannot read,
/// lock or date stays. Returns the names removed.
pub(crate) fn remove_abandoned(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !is_temp_name(&name.to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        let flags = rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NOFOLLOW;
        let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags(flags.bits() as i32)
            .open(&path)
        else {
            continue;
        };
        let old = file
            .metadata()
            .and_then(|metadata| metadata.modified())
            .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age >= ABANDONED_AGE));
        if !old {
            continue;
        }
        let free = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        if free.is_ok() && std::fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// Whether `name` is one of espora's temporary names: `.` + an account or shared-state file
/// name + [`TEMP_INFIX`] + the random part.
fn is_temp_name(name: &str) -> bool {
    let Some((own, random)) = name
        .strip_prefix('.')
        .and_then(|rest| rest.rsplit_once(TEMP_INFIX))
    else {
        return false;
    };
    let id = own.strip_prefix("account-").and_then(|rest| {
        rest.strip_suffix(".espora")
            .or(rest.strip_suffix(".espora-state"))
    });
    let is_id = id.is_some_and(|id| id.parse::<u32>().is_ok_and(|n| n.to_string() == id));
    let is_random =
        random.len() == TEMP_SUFFIX_DIGITS && random.bytes().all(|b| b.is_ascii_hexdigit());
    is_id && is_random
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_recognised_exactly() {
        let random = "0123456789abcdef";
        for id in [1, 42, u32::MAX] {
            let account = account_file_name(id);
            let shared = shared_file_name(id);
            assert!(is_temp_name(&format!(".{account}.tmp.{random}")));
            assert!(is_temp_name(&format!(".{shared}.tmp.{random}")));
        }
        for other in [
            "account-1.espora",
            ".account-1.espora.tmp.0123456789abcde",
            ".account-1.espora.tmp.0123456789abcdeg",
            ".account-01.espora.tmp.0123456789abcdef",
            ".account-x.espora.tmp.0123456789abcdef",
            ".account-1.other.tmp.0123456789abcdef",
            ".notes.tmp.0123456789abcdef",
            "account-1.espora.tmp.0123456789abcdef",
        ] {
            assert!(!is_temp_name(other), "{other}");
        }
    }

    /// Dates `file` back past [`ABANDONED_AGE`], as a creator that died a while ago left it.
    fn age(file: &File) {
        let long_ago = std::time::SystemTime::now() - 2 * ABANDONED_AGE;
        file.set_modified(long_ago).unwrap();
    }

    /// A temporary file whose creator died (nobody holds it, nothing changed it for a while) is
    /// removed; one a creator holds, a new one not locked yet (a creator in the instant before
    /// its lock), files of other names, and the account files themselves stay.
    #[test]
    fn only_abandoned_temporary_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let account = dir.path().join(account_file_name(1));
        let (held_path, held) = create_temp(&account).unwrap();
        age(&held);
        let (dead_path, dead) = create_temp(&account).unwrap();
        age(&dead);
        drop(dead);
        let (dead_state, dead) = create_temp(&dir.path().join(shared_file_name(2))).unwrap();
        age(&dead);
        drop(dead);
        let (new_path, new) = create_temp(&account).unwrap();
        drop(new);
        std::fs::write(&account, b"account").unwrap();
        let other = dir.path().join(".notes.tmp.0123456789abcdef");
        std::fs::write(&other, b"not espora's").unwrap();
        let mut removed = remove_abandoned(dir.path());
        removed.sort();
        let mut expected = vec![dead_path, dead_state];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(held_path.exists() && new_path.exists() && account.exists() && other.exists());
        drop(held);
        assert_eq!(remove_abandoned(dir.path()), [held_path]);
    }

    /// A creator whose temporary file is removed under it (a cleaner took it for abandoned in
    /// the instant before its lock) makes another and links that.
    #[test]
    fn a_creation_whose_temporary_file_is_removed_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(account_file_name(3));
        let fills = std::cell::Cell::new(0);
        create_linked(&path, |file, temp| {
            fills.set(fills.get() + 1);
            use std::os::unix::fs::FileExt;
            file.write_all_at(b"whole", 0).unwrap();
            if fills.get() == 1 {
                std::fs::remove_file(temp).unwrap();
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(fills.get(), 2);
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "a temporary file left"
        );
    }
}
