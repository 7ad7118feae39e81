//! Cross-process group commit and the account lock wait: how the writers of one account, on any
//! thread of any process, share fdatasyncs and hand the lock over, without sleeping on timers.
//!
//! Everything goes through the account's shared-state file (`shared.rs`):
//!
//! - **Lock.** `flock` on the account file excludes writers (the kernel drops it when a process
//!   dies). A writer that finds it taken yields to its runtime a few times (the lock is held for
//!   microseconds), then sleeps on the `lock_events` futex word; the releaser bumps the word and
//!   wakes the sleepers. A sleep is bounded, because a holder killed with the lock releases it
//!   without bumping the word.
//! - **Sync.** At most one fdatasync of the file is in flight across all processes: its owner
//!   holds the `sync_claim` word (a random token). A writer whose record is not durable yet
//!   waits while a claim is held (a sync that started after its write covers it; one that
//!   started before does not, and the writer claims the next), sleeping on `sync_events`, which
//!   the owner bumps when it ends. A claim that stays unchanged for [`SYNC_CLAIM_STALE`] is
//!   taken over: its owner died, or is so slow that a second sync costs nothing.
//! - **Within a worker thread** at most one task sleeps on each futex word of a file and at most
//!   one syncs it; the others wait for that task on the thread's own waker list (`Local`).
//!
//! Wake-ups are lost nowhere: a sleeper announces itself (`*_sleepers`) and reads the word
//! before checking the condition, and the futex sleep returns at once if the word moved since;
//! whoever changes the condition bumps the word after, and wakes if anyone announced itself.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::Unavailable;
use crate::faults::Faults;
use crate::file;
use crate::shared::{Event, Shared, Tagged};
use crate::sync::FileIo;

/// Lock attempts that only yield to the runtime before sleeping on the lock word: the lock is
/// held for a few microseconds, about what a few dozen turns of the runtime take.
const LOCK_SPINS_MAX: u32 = 32;
/// How long an append waits for the lock in all before it fails; only a stopped process holds
/// it that long.
const LOCK_WAIT_MAX: Duration = Duration::from_secs(2);
/// Longest single sleep on the lock word: a holder killed with the lock releases it without
/// waking anyone, so sleepers look again this often.
const LOCK_SLEEP_MAX: Duration = Duration::from_millis(2);
/// How long a sync claim may stay unchanged before a waiter takes it over. Syncs on the disks
/// measured took at most tens of milliseconds; a killed owner costs its waiters this much once.
pub(crate) const SYNC_CLAIM_STALE: Duration = Duration::from_millis(50);
/// Least time between the starts of two syncs of a file while records arrive faster than syncs
/// complete (the last sync covered more than one). Each fdatasync costs about 20 µs of CPU and
/// a device flush whatever it covers, and in a saturated stack a sync covers only what was
/// written during the one before, two records or so: spacing the starts makes groups larger and
/// syncs fewer. Measured with two instances behind rinha-lb in a closed loop (BENCHMARKS.md):
/// 0.5 ms gained 3%, 1 ms 17% (groups of 5, lower p50 and p99), 2 ms lost 8% (clients idle).
/// At the reference load a file's syncs are milliseconds apart and cover one record; they
/// never wait.
const SYNC_INTERVAL_MIN: Duration = Duration::from_millis(1);

/// Activity counters of a process (relaxed atomics; read by operators and benchmarks).
#[derive(Default)]
pub(crate) struct Counters {
    pub appends: AtomicU64,
    pub syncs: AtomicU64,
    pub synced_records: AtomicU64,
    pub lock_sleeps: AtomicU64,
    pub sync_sleeps: AtomicU64,
    pub takeovers: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

/// What the tasks of one worker thread know about one file.
#[derive(Default)]
pub(crate) struct Local {
    /// A task of this thread owns the file's sync claim.
    syncing: Cell<bool>,
    /// A task of this thread sleeps on the file's sync word.
    sync_watching: Cell<bool>,
    /// A task of this thread sleeps on the file's lock word.
    lock_watching: Cell<bool>,
    /// Bumped whenever one of the flags above goes down.
    events: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
    /// The sync claim seen in flight, and since when it has not changed.
    claim_seen: Cell<(u64, Option<Instant>)>,
}

impl Local {
    fn notify(&self) {
        self.events.set(self.events.get() + 1);
        for waker in self.wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Resolves when one of the flags goes down.
    fn changed(&self) -> Changed<'_> {
        Changed {
            local: self,
            events: self.events.get(),
        }
    }
}

struct Changed<'a> {
    local: &'a Local,
    events: u64,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.local.events.get() != self.events {
            return Poll::Ready(());
        }
        self.local.wakers.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}

/// Raises a flag of `Local`; lowering it (also when the task is dropped) wakes the thread's
/// other tasks, one of which takes over the role.
struct Raised<'a> {
    local: &'a Local,
    flag: &'a Cell<bool>,
}

impl<'a> Raised<'a> {
    fn new(local: &'a Local, flag: &'a Cell<bool>) -> Raised<'a> {
        assert!(!flag.get(), "one task per role and file on a worker");
        flag.set(true);
        Raised { local, flag }
    }
}

impl Drop for Raised<'_> {
    fn drop(&mut self) {
        self.flag.set(false);
        self.local.notify();
    }
}

/// Counts a sleeper on a futex word for as long as it lives.
struct Sleeper<'a>(&'a AtomicU32);

impl<'a> Sleeper<'a> {
    fn new(sleepers: &'a AtomicU32) -> Sleeper<'a> {
        sleepers.fetch_add(1, Ordering::SeqCst);
        Sleeper(sleepers)
    }
}

impl Drop for Sleeper<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Everything a task needs to lock and commit one file.
pub(crate) struct Commit<'a> {
    pub shared: &'a Shared,
    /// The worker's own open file description: its flocks exclude other threads too.
    pub file: &'a File,
    pub io: &'a FileIo,
    pub local: &'a Local,
    pub poisoned: &'a AtomicBool,
    pub counters: &'a Counters,
    pub faults: &'a Faults,
    /// The worker's source of claim tokens.
    pub tokens: &'a Cell<u64>,
}

/// The account lock, held; released (and sleepers woken) on drop.
pub(crate) struct Locked<'a> {
    commit: &'a Commit<'a>,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        file::unlock(self.commit.file);
        self.commit.shared.bump_and_wake(Event::Lock);
    }
}

/// How a wait for durability ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durable {
    /// A sync of the same generation covered the sequence number.
    Covered,
    /// Another process's recovery started a new generation meanwhile: it read the device and put
    /// its bytes back wherever the page cache differed, so the record waited for may be gone.
    NewGeneration,
}

impl Commit<'_> {
    /// Takes the file's exclusive lock without blocking the thread.
    pub(crate) async fn lock(&self) -> Result<Locked<'_>, Unavailable> {
        let started = Instant::now();
        let mut spins = 0;
        loop {
            if self.try_lock()? {
                return Ok(Locked { commit: self });
            }
            if spins < LOCK_SPINS_MAX {
                spins += 1;
                yield_now().await;
                continue;
            }
            if started.elapsed() > LOCK_WAIT_MAX {
                return Err(Unavailable::Lock(None));
            }
            if self.local.lock_watching.get() {
                self.local.changed().await;
                continue;
            }
            let _watching = Raised::new(self.local, &self.local.lock_watching);
            let _sleeper = Sleeper::new(self.shared.sleepers(Event::Lock));
            let seen = self.shared.events(Event::Lock).load(Ordering::SeqCst);
            if self.try_lock()? {
                return Ok(Locked { commit: self });
            }
            Counters::bump(&self.counters.lock_sleeps, 1);
            self.io
                .wait(Event::Lock, seen, LOCK_SLEEP_MAX)
                .await
                .map_err(Unavailable::Wait)?;
        }
    }

    fn try_lock(&self) -> Result<bool, Unavailable> {
        file::try_lock_exclusive(self.file).map_err(|e| Unavailable::Lock(Some(e)))
    }

    /// Waits until `target` is durable: covered by a sync of this file that started after it
    /// was written, whichever thread or process ran it, in the same generation. The caller has
    /// published it as the head (or read it there).
    pub(crate) async fn wait_durable(&self, target: Tagged) -> Result<Durable, Unavailable> {
        loop {
            if self.poisoned.load(Ordering::Acquire) {
                return Err(Unavailable::Poisoned);
            }
            let seen = self.shared.events(Event::Sync).load(Ordering::SeqCst);
            let durable = self.shared.durable();
            if durable.generation != self.shared.head().generation {
                // A recovery is between its two stores, or died there: the lock holder settles.
                self.settle().await?;
                continue;
            }
            if durable.generation != target.generation {
                return Ok(Durable::NewGeneration);
            }
            if durable.seq >= target.seq {
                return Ok(Durable::Covered);
            }
            if self.local.syncing.get() || self.local.sync_watching.get() {
                self.local.changed().await;
                continue;
            }
            let claim = self.shared.sync_claim().load(Ordering::SeqCst);
            if let Some(patience) = self.patience(claim) {
                let _watching = Raised::new(self.local, &self.local.sync_watching);
                let _sleeper = Sleeper::new(self.shared.sleepers(Event::Sync));
                Counters::bump(&self.counters.sync_sleeps, 1);
                self.io
                    .wait(Event::Sync, seen, patience)
                    .await
                    .map_err(Unavailable::Wait)?;
                continue;
            }
            let token = self.next_token();
            let claimed = self.shared.sync_claim().compare_exchange(
                claim,
                token,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
            if claimed.is_ok() {
                if claim != 0 {
                    Counters::bump(&self.counters.takeovers, 1);
                }
                self.sync_claimed(token, target).await?;
            }
        }
    }

    /// Takes the lock once, so that the head and durable words agree on their generation.
    async fn settle(&self) -> Result<(), Unavailable> {
        let _locked = self.lock().await?;
        self.shared.settle_locked();
        Ok(())
    }

    /// How much longer to wait for the sync of `claim`: `None` when there is none in flight, or
    /// when it has not changed for [`SYNC_CLAIM_STALE`] and may be taken over.
    fn patience(&self, claim: u64) -> Option<Duration> {
        if claim == 0 {
            return None;
        }
        let now = Instant::now();
        let since = match self.local.claim_seen.get() {
            (seen, Some(since)) if seen == claim => since,
            _ => {
                self.local.claim_seen.set((claim, Some(now)));
                now
            }
        };
        SYNC_CLAIM_STALE.checked_sub(now.duration_since(since))
    }

    /// Runs the sync of the claim `token` holds, for `waited` and whatever else is in the page
    /// cache by then, and releases it.
    async fn sync_claimed(&self, token: u64, waited: Tagged) -> Result<(), Unavailable> {
        let _syncing = Raised::new(self.local, &self.local.syncing);
        let _claim = Claim {
            shared: self.shared,
            token,
        };
        self.space_out().await?;
        // The waiter's record is in the page cache, in this generation: the sync covers it even
        // if the head hint lags (a hint settled after a recovery died, which restarts it lower).
        self.shared.publish_head(waited);
        let durable = self.shared.durable();
        // Every record up to the head is in the page cache now, so a sync that starts after
        // this load covers it, whoever wrote it.
        let head = self.shared.head();
        if head.generation != waited.generation || durable.generation != waited.generation {
            // A recovery started another generation: the caller looks again.
            return Ok(());
        }
        // The waiter's record is at or below the head now, so a sync of the head covers it: no
        // waiter can loop on syncs that never reach its record.
        assert!(
            durable.seq <= head.seq && waited.seq <= head.seq,
            "durable {} and waited-for {} against the head {}",
            durable.seq,
            waited.seq,
            head.seq
        );
        if let Some(delay) = self.faults.sync_delay() {
            monoio::time::sleep(delay).await;
        }
        Counters::bump(&self.counters.syncs, 1);
        match self.io.fdatasync().await {
            // A failed sync poisoned the database when it completed, perhaps one this task did
            // not wait for; nothing is made durable after that.
            Ok(()) if self.poisoned.load(Ordering::Acquire) => Err(Unavailable::Poisoned),
            Ok(()) => {
                let group = head.seq - durable.seq;
                self.shared.sync_group().store(group, Ordering::Release);
                // Counted by what this sync raised: one that took over a stale claim may have
                // run beside the first, and the two cover the same records.
                let raised = self.shared.raise_durable(head).unwrap_or(0);
                Counters::bump(&self.counters.synced_records, raised);
                Ok(())
            }
            Err(e) => {
                self.poisoned.store(true, Ordering::Release);
                Err(Unavailable::Sync(e))
            }
        }
    }

    /// Waits, holding the claim, until [`SYNC_INTERVAL_MIN`] after the start of the file's last
    /// sync if that one covered more than one record, then marks this sync's start. The clock
    /// is the monotonic one, shared by every process of the host (a start that lies in the
    /// future, from another time namespace, is ignored).
    async fn space_out(&self) -> Result<(), Unavailable> {
        let started = self.shared.sync_started();
        let last = started.load(Ordering::Acquire);
        let busy = self.shared.sync_group().load(Ordering::Acquire) > 1;
        let now = monotonic_ns();
        if busy && last != 0 && now >= last {
            let since = Duration::from_nanos(now - last);
            if let Some(wait) = SYNC_INTERVAL_MIN.checked_sub(since) {
                self.io.pause(wait).await.map_err(Unavailable::Wait)?;
            }
        }
        started.store(monotonic_ns(), Ordering::Release);
        Ok(())
    }

    /// A fresh claim token: never 0, and unlikely to repeat across threads and processes.
    fn next_token(&self) -> u64 {
        let mut x = self.tokens.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.tokens.set(x);
        x | 1
    }
}

/// A seed for a worker's claim tokens: the clock, the process and the thread's stack address.
pub(crate) fn token_seed() -> u64 {
    let marker = 0u8;
    let address = std::ptr::addr_of!(marker) as u64;
    let time = crate::time::now_us() as u64;
    (time ^ address.rotate_left(29) ^ u64::from(std::process::id()).rotate_left(47)) | 1
}

/// The sync claim, held; released (and sleepers woken) on drop, also when its task is dropped
/// mid-sync. If it was taken over meanwhile, the new owner's claim stays.
struct Claim<'a> {
    shared: &'a Shared,
    token: u64,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let _ = self.shared.sync_claim().compare_exchange(
            self.token,
            0,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        self.shared.bump_and_wake(Event::Sync);
    }
}

/// Gives other tasks of this thread a turn.
fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (now.tv_sec as u64) * 1_000_000_000 + now.tv_nsec as u64
}
