//! The machine a run was measured on, for the report: host name, kernel, CPUs and memory, read
//! from Linux's `/proc`. A file that cannot be read leaves its figure unknown; the run does not
//! depend on any of them.

use std::fs;
use std::thread;

/// What the report says about the machine that ran the client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Machine {
    /// The host name.
    pub hostname: Option<String>,
    /// The kernel's name, release and build, as `uname -srv` prints them.
    pub kernel: Option<String>,
    /// Processors the kernel lists in `/proc/cpuinfo`.
    pub cpus_online: Option<usize>,
    /// Processors this process may use: its affinity mask, capped by a CPU quota (std's
    /// `available_parallelism`, rounded down).
    pub cpus_usable: Option<usize>,
    /// The first processor's model name.
    pub cpu_model: Option<String>,
    /// Physical memory (`MemTotal`).
    pub memory_bytes: Option<u64>,
}

impl Machine {
    /// Reads the machine this process runs on.
    pub fn read() -> Machine {
        let file = |path: &str| fs::read_to_string(path).ok();
        let cpuinfo = file("/proc/cpuinfo").unwrap_or_default();
        let kernel_parts = ["ostype", "osrelease", "version"].map(|name| {
            file(&format!("/proc/sys/kernel/{name}")).map(|text| text.trim().to_string())
        });
        let kernel = kernel_parts.iter().all(Option::is_some).then(|| {
            kernel_parts
                .iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        });
        Machine {
            hostname: file("/proc/sys/kernel/hostname").map(|text| text.trim().to_string()),
            kernel,
            cpus_online: cpu_count(&cpuinfo),
            cpus_usable: thread::available_parallelism().ok().map(|n| n.get()),
            cpu_model: cpu_model(&cpuinfo),
            memory_bytes: file("/proc/meminfo").and_then(|text| memory_total_bytes(&text)),
        }
    }
}

/// The processors `/proc/cpuinfo` lists (one `processor` line each); `None` when it lists none.
pub fn cpu_count(cpuinfo: &str) -> Option<usize> {
    let count = cpuinfo
        .lines()
        .filter(|line| field(line, "processor").is_some())
        .count();
    (count > 0).then_some(count)
}

/// The first processor's model: `model name` (x86), else `Model` (some ARM boards).
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    let first = |key| cpuinfo.lines().find_map(|line| field(line, key));
    first("model name")
        .or_else(|| first("Model"))
        .filter(|model| !model.is_empty())
        .map(str::to_string)
}

/// `MemTotal` of `/proc/meminfo`, which the kernel writes in KiB (`kB`).
pub fn memory_total_bytes(meminfo: &str) -> Option<u64> {
    let value = meminfo.lines().find_map(|line| field(line, "MemTotal"))?;
    let kib: u64 = value.strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// The value of `line` when it is `KEY: VALUE` (spaces or tabs around the key), trimmed.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let (name, value) = line.split_once(':')?;
    (name.trim() == key).then(|| value.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) \
                       CPU @ 2.20GHz\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: Intel(R) \
                       Xeon(R) CPU @ 2.20GHz\n";
    const ARM: &str = "processor\t: 0\nBogoMIPS\t: 108.00\n\nprocessor\t: 1\n\nprocessor\t: 2\n\
                       \nprocessor\t: 3\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B\n";

    #[track_caller]
    fn check(cpuinfo: &str, count: Option<usize>, model: Option<&str>) {
        assert_eq!(cpu_count(cpuinfo), count, "{cpuinfo:?}");
        assert_eq!(cpu_model(cpuinfo).as_deref(), model, "{cpuinfo:?}");
    }

    #[test]
    fn processors_and_their_model() {
        check(X86, Some(2), Some("Intel(R) Xeon(R) CPU @ 2.20GHz"));
        check(ARM, Some(4), Some("Raspberry Pi 4 Model B"));
        check("", None, None);
        check("processor : 0\nmodel name :\n", Some(1), None);
    }

    #[test]
    fn memory_total() {
        let cases: &[(&str, Option<u64>)] = &[
            (
                "MemTotal:       16384256 kB\nMemFree: 1 kB\n",
                Some(16_384_256 * 1024),
            ),
            ("MemFree: 1 kB\nMemTotal: 2 kB\n", Some(2048)),
            ("MemTotal: 2 MB\n", None),
            ("MemTotal: x kB\n", None),
            ("", None),
        ];
        for &(meminfo, expected) in cases {
            assert_eq!(memory_total_bytes(meminfo), expected, "{meminfo:?}");
        }
    }

    #[test]
    fn this_machine_is_read() {
        let machine = Machine::read();
        assert!(machine.cpus_usable.is_some_and(|n| n >= 1), "{machine:?}");
        if cfg!(target_os = "linux") {
            assert!(
                machine
                    .kernel
                    .as_deref()
                    .is_some_and(|k| k.starts_with("Linux ")),
                "{machine:?}"
            );
            assert!(
                machine.memory_bytes.is_some_and(|bytes| bytes > 0),
                "{machine:?}"
            );
        }
    }
}
