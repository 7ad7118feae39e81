//! The upstream list, the round-robin counter shared by all workers, and mark-down back-off.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    epoch: Instant,
    backoff: Duration,
}

impl Upstreams {
    /// A set over `addrs` (at least one) with the given mark-down back-off.
    pub fn new(addrs: Vec<Addr>, backoff: Duration) -> Upstreams {
        assert!(!addrs.is_empty(), "at least one upstream");
        let down_until_ms = addrs.iter().map(|_| AtomicU64::new(0)).collect();
        Upstreams {
            addrs,
            next: AtomicUsize::new(0),
            down_until_ms,
            epoch: Instant::now(),
            backoff,
        }
    }

    /// The addresses, in configured order.
    pub fn addrs(&self) -> &[Addr] {
        &self.addrs
    }

    /// The order in which to try upstreams for a new connection, at most `attempts_max` long:
    /// the next round-robin pick first, then its successors, skipping upstreams marked down.
    /// When every upstream is marked down they are all tried anyway, in the same order, so a
    /// recovered upstream is found without waiting for the back-off to expire.
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
            if self.down_until_ms[index].load(Ordering::Relaxed) <= now_ms && plan.len < limit {
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

    /// Clears the mark after a successful connect.
    pub fn mark_up(&self, index: usize) {
        if self.down_until_ms[index].load(Ordering::Relaxed) != 0 {
            self.down_until_ms[index].store(0, Ordering::Relaxed);
        }
    }

    /// True while upstream `index` is in its back-off period.
    pub fn is_down(&self, index: usize) -> bool {
        self.down_until_ms[index].load(Ordering::Relaxed) > self.now_ms()
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
