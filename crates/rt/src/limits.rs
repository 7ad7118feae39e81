//! Process resource limits.

/// Raises the soft open-files limit to the hard limit, so a server is bounded by the operator's
/// hard limit rather than the distribution's small default soft limit. Returns the soft limit
/// now in force (or `None` when it cannot be read).
pub fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        // Refusal (a seccomp profile, an odd container runtime) leaves the old limit in force.
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    #[test]
    fn raised_limit_is_readable() {
        let limit = super::raise_nofile_limit();
        assert!(limit.is_none_or(|n| n >= 64));
    }
}
