//! The upstream list, the round-robin counter shared by all workers, and mark-down back-off.
//!
//! An upstream is marked down for the back-off when a connect to it fails, or when it leaves a
//! client's first bytes unanswered past the answer timeout (a frozen or stuck instance still
//! accepts connections into its backlog, so only its silence shows). A silent one stays
//! *unconfirmed* after its back-off: it gets one connection at a time, a probe, until one is
//! answered, so that a still-frozen instance costs one client per back-off, not half of them.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rinha_rt::Addr;

/// The upstreams and their shared state. One instance lives behind an `Arc` for all workers.
#[derive(Debug)]
pub struct Upstreams {
    addrs: Vec<Addr>,
    /// The next pick, shared by every worker so that the sequence of picks across the whole
    /// process is round robin, not one round robin per worker.
    next: AtomicUsize,
    /// Per upstream, the instant (milliseconds since `epoch`) until which it is considered down.
    down_until_ms: Vec<AtomicU64>,
    /// Per upstream: it left a client unanswered and has not answered since.
    unconfirmed: Vec<AtomicBool>,
    /// Per unconfirmed upstream: a probe connection is out.
    probing: Vec<AtomicBool>,
    epoch: Instant,
    backoff: Duration,
}

impl Upstreams {
    /// A set over `addrs` (at least one) with the given mark-down back-off.
    pub fn new(addrs: Vec<Addr>, backoff: Duration) -> Upstreams {
        assert!(!addrs.is_empty(), "at least one upstream");
        let down_until_ms = addrs.iter().map(|_| AtomicU64::new(0)).collect();
        let flags = || addrs.iter().map(|_| AtomicBool::new(false)).collect();
        Upstreams {
            next: AtomicUsize::new(0),
            down_until_ms,
            unconfirmed: flags(),
            probing: flags(),
            addrs,
            epoch: Instant::now(),
            backoff,
        }
    }

    /// The addresses, in configured order.
    pub fn addrs(&self) -> &[Addr] {
        &self.addrs
    }

    /// The order in which to try upstreams for a new connection, at most `attempts_max` long:
    /// the next round-robin pick first, then its successors, skipping upstreams marked down,
    /// and unconfirmed ones unless this connection becomes their probe (only as the first
    /// pick). When every upstream is skipped they are all tried anyway, in the same order, so a
    /// recovered upstream is found without waiting for the back-off to expire. A plan that
    /// made a probe must end with [`Upstreams::finished`] for that upstream, or
    /// [`Upstreams::connect_failed`].
    pub fn plan(&self, attempts_max: usize) -> Plan {
        let count = self.addrs.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let now_ms = self.now_ms();
        let mut plan = Plan {
            indices: [0; PLAN_MAX],
            len: 0,
        };
        let limit = attempts_max.clamp(1, PLAN_MAX);
        for offset in 0..count {
            let index = (start + offset) % count;
            if self.down_until_ms[index].load(Ordering::Relaxed) > now_ms || plan.len == limit {
                continue;
            }
            let usable = !self.unconfirmed[index].load(Ordering::Relaxed)
                || (plan.len == 0
                    && self.probing[index]
                        .compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok());
            if usable {
                plan.push(index);
            }
        }
        if plan.len == 0 {
            for offset in 0..count.min(limit) {
                plan.push((start + offset) % count);
            }
        }
        plan
    }

    /// The address of upstream `index`.
    pub fn addr(&self, index: usize) -> &Addr {
        &self.addrs[index]
    }

    /// Marks upstream `index` down for the back-off period after a failed connect.
    pub fn mark_down(&self, index: usize) {
        let until = self.now_ms() + u64::try_from(self.backoff.as_millis()).unwrap_or(u64::MAX);
        self.down_until_ms[index].store(until, Ordering::Relaxed);
    }

    /// A connect to upstream `index` failed, so no probe of it is out any more.
    pub fn connect_failed(&self, index: usize) {
        self.probing[index].store(false, Ordering::Relaxed);
    }

    /// A relayed connection to upstream `index` ended: `answered` when the upstream sent any
    /// byte, `silent` when it left the client's first bytes unanswered past the answer timeout
    /// (down for the back-off, then unconfirmed until it answers). Returns whether this made
    /// a confirmed upstream unconfirmed.
    pub fn finished(&self, index: usize, answered: bool, silent: bool) -> bool {
        let mut newly_silent = false;
        if silent {
            self.mark_down(index);
            newly_silent = !self.unconfirmed[index].swap(true, Ordering::Relaxed);
        } else if answered && self.unconfirmed[index].load(Ordering::Relaxed) {
            self.unconfirmed[index].store(false, Ordering::Relaxed);
        }
        if self.probing[index].load(Ordering::Relaxed) {
            self.probing[index].store(false, Ordering::Relaxed);
        }
        newly_silent
    }

    /// Clears the mark after a successful connect.
    pub fn mark_up(&self, index: usize) {
        if self.down_until_ms[index].load(Ordering::Relaxed) != 0 {
            self.down_until_ms[index].store(0, Ordering::Relaxed);
        }
    }

    /// True while upstream `index` is in its back-off period, or unconfirmed since it left a
    /// client unanswered.
    pub fn is_down(&self, index: usize) -> bool {
        self.down_until_ms[index].load(Ordering::Relaxed) > self.now_ms()
            || self.unconfirmed[index].load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Most upstreams tried for one client connection.
pub const PLAN_MAX: usize = 16;

/// A short list of upstream indices to try in order; no allocation per connection.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    indices: [usize; PLAN_MAX],
    len: usize,
}

impl Plan {
    fn push(&mut self, index: usize) {
        assert!(self.len < PLAN_MAX);
        self.indices[self.len] = index;
        self.len += 1;
    }

    /// The indices, in order.
    pub fn indices(&self) -> &[usize] {
        &self.indices[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams(count: usize) -> Upstreams {
        let addrs = (0..count).map(|i| Addr::parse(&format!("127.0.0.1:{}", 1000 + i)).unwrap());
        Upstreams::new(addrs.collect(), Duration::from_secs(60))
    }

    #[test]
    fn plans_table() {
        // Each case: upstream count, indices marked down, attempts_max, expected plans of the
        // first calls.
        #[track_caller]
        fn check(count: usize, down: &[usize], attempts: usize, expected: &[&[usize]]) {
            let set = upstreams(count);
            for &index in down {
                set.mark_down(index);
            }
            for (call, want) in expected.iter().enumerate() {
                assert_eq!(
                    set.plan(attempts).indices(),
                    *want,
                    "call {call} down {down:?}"
                );
            }
        }
        check(3, &[], 3, &[&[0, 1, 2], &[1, 2, 0], &[2, 0, 1], &[0, 1, 2]]);
        check(3, &[], 1, &[&[0], &[1], &[2], &[0]]);
        check(3, &[1], 3, &[&[0, 2], &[2, 0], &[2, 0], &[0, 2]]);
        check(2, &[0, 1], 2, &[&[0, 1], &[1, 0]]);
        check(1, &[], 5, &[&[0], &[0]]);
    }

    #[test]
    fn a_silent_upstream_gets_one_probe_at_a_time_until_it_answers() {
        let set = Upstreams::new(
            (0..2)
                .map(|i| Addr::parse(&format!("127.0.0.1:{}", 1000 + i)).unwrap())
                .collect(),
            Duration::ZERO,
        );
        assert!(set.finished(1, false, true));
        assert!(set.is_down(1));
        // Back-off over (zero here): the first plan that starts at 1 probes it; while the probe
        // is out, every plan skips it.
        let plans: Vec<Vec<usize>> = (0..4).map(|_| set.plan(2).indices().to_vec()).collect();
        assert_eq!(plans, [vec![0], vec![1, 0], vec![0], vec![0]]);
        // The probe's client left before any answer: the next plan that starts at 1 probes again.
        assert!(!set.finished(1, false, false));
        let plans: Vec<Vec<usize>> = (0..2).map(|_| set.plan(2).indices().to_vec()).collect();
        assert_eq!(plans, [vec![0], vec![1, 0]]);
        // The connect of that probe failed: probing again is allowed.
        set.connect_failed(1);
        assert_eq!(set.plan(2).indices(), [0]);
        assert_eq!(set.plan(2).indices(), [1, 0]);
        // It answered: back in the rotation.
        assert!(!set.finished(1, true, false));
        assert!(!set.is_down(1));
        let plans: Vec<Vec<usize>> = (0..2).map(|_| set.plan(2).indices().to_vec()).collect();
        assert_eq!(plans, [vec![0, 1], vec![1, 0]]);
    }

    #[test]
    fn mark_up_clears_back_off() {
        let set = upstreams(2);
        set.mark_down(1);
        assert!(set.is_down(1));
        set.mark_up(1);
        assert!(!set.is_down(1));
    }

    #[test]
    fn shared_counter_is_fair_across_threads() {
        let set = std::sync::Arc::new(upstreams(3));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let set = std::sync::Arc::clone(&set);
                std::thread::spawn(move || {
                    let mut counts = [0usize; 3];
                    for _ in 0..3000 {
                        counts[set.plan(1).indices()[0]] += 1;
                    }
                    counts
                })
            })
            .collect();
        let mut total = [0usize; 3];
        for thread in threads {
            for (sum, count) in total.iter_mut().zip(thread.join().unwrap()) {
                *sum += count;
            }
        }
        assert_eq!(total, [4000, 4000, 4000]);
    }
}
