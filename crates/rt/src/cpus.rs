//! How many CPUs this process may really use.
//!
//! The answer is the number of CPUs in the scheduler affinity mask, capped by the cgroup CPU
//! quota rounded up, and never less than one. Containers limited with `--cpus 0.6` keep every
//! host CPU in their affinity mask, so the quota is what stops a thread-per-core server from
//! starting more workers than it has CPU time for.
//!
//! `std::thread::available_parallelism` reads the same mask and quota but rounds the quota
//! down, which is why it is not used here. A worker is one thread and a thread runs on one CPU
//! at a time, so rounded down, a container given 1.5 CPUs would get one worker and a third of
//! its quota could never be used. Rounded up it gets two, the fewest workers that can use the
//! whole quota (the kernel still caps their sum at 1.5 CPUs). Below one CPU, as with the
//! stack's 0.6 and 0.3, both answers are one.
//!
//! The file parsing is kept in pure functions so the tables of examples in the tests cover it
//! without a container.

use std::path::{Path, PathBuf};

/// The CPUs this process may really use: affinity mask count, capped by the cgroup quota
/// (rounded up), at least 1.
pub fn cpus_available() -> usize {
    let affinity = affinity_cpus().unwrap_or(1).max(1);
    match cgroup_quota_cpus() {
        Some(quota) => affinity.min(quota).max(1),
        None => affinity,
    }
}

/// The CPU indices in this process's affinity mask, in increasing order.
fn affinity_cpu_list() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&cpu| set.is_set(cpu))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn affinity_cpus() -> Option<usize> {
    let count = affinity_cpu_list().len();
    if count == 0 {
        std::thread::available_parallelism().ok().map(|n| n.get())
    } else {
        Some(count)
    }
}

/// The quota in whole CPUs (rounded up) of the cgroup this process lives in, if any is set.
fn cgroup_quota_cpus() -> Option<usize> {
    let self_cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    if let Some(dirs) = cgroup_v1_cpu_dirs(&self_cgroup, &mountinfo) {
        if let Some(cpus) = dirs.iter().find_map(|dir| read_v1_quota(dir)) {
            return Some(cpus);
        }
    }
    let dirs = cgroup_v2_dirs(&self_cgroup, &mountinfo)?;
    // Every ancestor may carry its own limit; the tightest one applies.
    dirs.iter()
        .filter_map(|dir| std::fs::read_to_string(dir.join("cpu.max")).ok())
        .filter_map(|text| parse_cpu_max(&text))
        .min()
}

fn read_v1_quota(dir: &Path) -> Option<usize> {
    let quota = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).ok()?;
    let period = std::fs::read_to_string(dir.join("cpu.cfs_period_us")).ok()?;
    parse_cfs(&quota, &period)
}

/// Parses cgroup v2 `cpu.max` ("max 100000" or "60000 100000") into whole CPUs, rounded up.
/// `None` means no limit (or an unreadable file, treated the same way).
pub fn parse_cpu_max(text: &str) -> Option<usize> {
    let mut fields = text.split_whitespace();
    let quota = fields.next()?;
    let period = fields.next().unwrap_or("100000");
    if quota == "max" {
        return None;
    }
    quota_to_cpus(quota.parse().ok()?, period.parse().ok()?)
}

/// Parses cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` into whole CPUs, rounded up.
/// A quota of -1 means unlimited.
pub fn parse_cfs(quota_text: &str, period_text: &str) -> Option<usize> {
    let quota: i64 = quota_text.trim().parse().ok()?;
    let period: i64 = period_text.trim().parse().ok()?;
    if quota <= 0 {
        return None;
    }
    quota_to_cpus(u64::try_from(quota).ok()?, u64::try_from(period).ok()?)
}

/// The fewest workers that can use `quota_us` of CPU time every `period_us`: rounded up, see
/// the module's documentation.
fn quota_to_cpus(quota_us: u64, period_us: u64) -> Option<usize> {
    if quota_us == 0 || period_us == 0 {
        return None;
    }
    usize::try_from(quota_us.div_ceil(period_us)).ok()
}

/// One mount of a cgroup file system: where it is mounted, which part of the hierarchy it shows,
/// its file system type and super options (the v1 controllers).
struct CgroupMount<'a> {
    root: &'a str,
    mount_point: &'a str,
    fs_type: &'a str,
    super_options: &'a str,
}

fn cgroup_mounts(mountinfo: &str) -> impl Iterator<Item = CgroupMount<'_>> {
    mountinfo.lines().filter_map(|line| {
        // Format: id parent major:minor root mount_point options [optional...] - fstype source super_options
        let (left, right) = line.split_once(" - ")?;
        let mut left_fields = left.split(' ');
        let root = left_fields.nth(3)?;
        let mount_point = left_fields.next()?;
        let mut right_fields = right.split(' ');
        let fs_type = right_fields.next()?;
        let super_options = right_fields.nth(1).unwrap_or("");
        if fs_type != "cgroup" && fs_type != "cgroup2" {
            return None;
        }
        Some(CgroupMount {
            root,
            mount_point,
            fs_type,
            super_options,
        })
    })
}

/// Candidate directories holding the v1 `cpu` controller files for this process.
pub fn cgroup_v1_cpu_dirs(self_cgroup: &str, mountinfo: &str) -> Option<Vec<PathBuf>> {
    let path = self_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let _id = fields.next()?;
        let controllers = fields.next()?;
        let path = fields.next()?;
        controllers.split(',').any(|c| c == "cpu").then_some(path)
    })?;
    let mount = cgroup_mounts(mountinfo).find(|m| {
        m.fs_type == "cgroup" && m.super_options.split(',').any(|option| option == "cpu")
    })?;
    Some(candidate_dirs(mount.mount_point, mount.root, path))
}

/// The v2 directories from this process's cgroup up to the mount's root, innermost first.
pub fn cgroup_v2_dirs(self_cgroup: &str, mountinfo: &str) -> Option<Vec<PathBuf>> {
    let path = self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))?;
    let mount = cgroup_mounts(mountinfo).find(|m| m.fs_type == "cgroup2")?;
    let relative = relative_to_root(path, mount.root);
    let mut dirs = Vec::new();
    let mut current = PathBuf::from(mount.mount_point).join(relative.trim_start_matches('/'));
    loop {
        dirs.push(current.clone());
        if current == Path::new(mount.mount_point) || !current.pop() {
            break;
        }
    }
    Some(dirs)
}

fn candidate_dirs(mount_point: &str, root: &str, path: &str) -> Vec<PathBuf> {
    let base = PathBuf::from(mount_point);
    let relative = relative_to_root(path, root);
    let mut dirs = vec![base.join(relative.trim_start_matches('/'))];
    // Inside a container the mount often shows the container's own cgroup as its root while
    // /proc/self/cgroup still names the host path; the mount point itself is then the answer.
    if !dirs.contains(&base) {
        dirs.push(base);
    }
    dirs
}

fn relative_to_root<'a>(path: &'a str, root: &str) -> &'a str {
    if root == "/" {
        return path;
    }
    path.strip_prefix(root).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_table() {
        #[track_caller]
        fn check(input: &str, expected: Option<usize>) {
            assert_eq!(parse_cpu_max(input), expected, "input {input:?}");
        }
        check("max 100000\n", None);
        check("max", None);
        check("60000 100000\n", Some(1));
        check("100000 100000", Some(1));
        check("150000 100000", Some(2));
        check("200000 100000", Some(2));
        check("50000 50000", Some(1));
        check("garbage", None);
        check("", None);
    }

    /// Why the quota is rounded up rather than down (as `std::thread::available_parallelism`
    /// does): each worker uses at most one CPU, so the workers use all the CPU time the quota
    /// grants only if there are at least quota/period of them, and one more would only add a
    /// thread that competes for the same time. 1.5 CPUs get two workers, where a floor would
    /// give one that leaves 50 ms of the 150 ms granted every 100 ms unused.
    #[test]
    fn workers_are_the_fewest_that_can_use_the_whole_quota() {
        let quotas = [
            (150_000, 100_000),
            (60_000, 100_000),
            (30_000, 100_000),
            (1, 100_000),
            (100_000, 100_000),
            (199_999, 100_000),
            (250_000, 100_000),
            (50_000, 50_000),
        ];
        for (quota_us, period_us) in quotas {
            let workers = quota_to_cpus(quota_us, period_us).unwrap() as u64;
            assert!(
                workers * period_us >= quota_us,
                "{workers} workers cannot use {quota_us} us every {period_us} us"
            );
            assert!(
                (workers - 1) * period_us < quota_us,
                "{workers} workers are more than {quota_us} us every {period_us} us can feed"
            );
        }
        assert_eq!(quota_to_cpus(150_000, 100_000), Some(2));
    }

    #[test]
    fn cfs_table() {
        #[track_caller]
        fn check(quota: &str, period: &str, expected: Option<usize>) {
            assert_eq!(
                parse_cfs(quota, period),
                expected,
                "quota {quota:?} period {period:?}"
            );
        }
        check("-1\n", "100000\n", None);
        check("60000\n", "100000\n", Some(1));
        check("150000", "100000", Some(2));
        check("250000", "100000", Some(3));
        check("0", "100000", None);
        check("100000", "0", None);
        check("x", "100000", None);
    }

    #[test]
    fn v1_dirs_table() {
        #[track_caller]
        fn check(self_cgroup: &str, mountinfo: &str, expected: Option<Vec<&str>>) {
            let expected = expected.map(|v| v.into_iter().map(PathBuf::from).collect::<Vec<_>>());
            assert_eq!(cgroup_v1_cpu_dirs(self_cgroup, mountinfo), expected);
        }
        let host_mounts = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                           33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n";
        check(
            "2:cpuacct:/\n1:cpu:/\n0::/\n",
            host_mounts,
            Some(vec!["/sys/fs/cgroup/cpu"]),
        );
        let docker_mounts = "1 0 0:1 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid master:1 - cgroup cgroup rw,cpu,cpuacct\n";
        check(
            "4:cpu,cpuacct:/docker/abc\n",
            docker_mounts,
            Some(vec!["/sys/fs/cgroup/cpu,cpuacct"]),
        );
        check(
            "4:cpu,cpuacct:/docker/abc\n",
            "1 0 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpuacct,cpu\n",
            Some(vec![
                "/sys/fs/cgroup/cpu,cpuacct/docker/abc",
                "/sys/fs/cgroup/cpu,cpuacct",
            ]),
        );
        // A cgroup v2 only system has no v1 cpu controller at all.
        check(
            "0::/user.slice\n",
            "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            None,
        );
    }

    #[test]
    fn v2_dirs_table() {
        #[track_caller]
        fn check(self_cgroup: &str, mountinfo: &str, expected: Option<Vec<&str>>) {
            let expected = expected.map(|v| v.into_iter().map(PathBuf::from).collect::<Vec<_>>());
            assert_eq!(cgroup_v2_dirs(self_cgroup, mountinfo), expected);
        }
        let mounts = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        check("0::/\n", mounts, Some(vec!["/sys/fs/cgroup"]));
        check(
            "0::/system.slice/docker-1.scope\n",
            mounts,
            Some(vec![
                "/sys/fs/cgroup/system.slice/docker-1.scope",
                "/sys/fs/cgroup/system.slice",
                "/sys/fs/cgroup",
            ]),
        );
        // With a cgroup namespace the process sees itself at the root of the mount.
        check(
            "0::/\n",
            "30 23 0:26 / /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n",
            Some(vec!["/sys/fs/cgroup"]),
        );
        check("1:cpu:/\n", mounts, None);
    }

    #[test]
    fn available_is_at_least_one_and_within_affinity() {
        let cpus = cpus_available();
        assert!(cpus >= 1);
        let affinity = affinity_cpu_list().len().max(1);
        assert!(cpus <= affinity);
    }
}
