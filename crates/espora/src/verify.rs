//! Reading a whole ring back: where history ends, whether it is sound, and what was left behind
//! by a crash. Used by recovery at open time and by `espora verify`.

use std::fmt;

use crate::file::Mapping;
use crate::layout::{Record, RecordError, RECORD_SIZE};

/// What a sound ring holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Oldest sequence number still in the ring (0 when empty).
    pub oldest: u64,
    /// Newest sequence number of the history (0 when empty).
    pub newest: u64,
    /// Balance after the newest record.
    pub balance: i64,
    /// Lowest balance seen in the retained history.
    pub balance_min: i64,
    /// The durable watermark found in the header.
    pub durable: u64,
    /// The slot after the newest record holds a torn write: a transaction that was never
    /// acknowledged. It is harmless and will be overwritten.
    pub torn_tail: bool,
    /// Slots outside the history that are not empty: records beyond a gap after the newest
    /// record, written after the last completed sync and partly lost by a machine crash, so
    /// never acknowledged. Recovery erases them, and says so.
    pub orphans: Vec<u64>,
}

/// Damage inside acknowledged history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// Sequence number of the record at fault.
    pub seq: u64,
    /// Slot index of the record at fault.
    pub slot: u64,
    pub problem: String,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record seq {} (slot {}): {}",
            self.seq, self.slot, self.problem
        )
    }
}

impl std::error::Error for Corruption {}

/// Reads every slot and checks the history: checksums, sequence continuity, the balance chain,
/// the limit and timestamp order. The caller holds at least a shared lock so no writer moves.
pub fn scan(mapping: &Mapping) -> Result<Scan, Corruption> {
    let header = *mapping.header();
    let capacity = header.capacity;
    let slot_of = |seq: u64| (seq - 1) % capacity;
    let corrupt = |seq: u64, problem: String| Corruption {
        seq,
        slot: slot_of(seq.max(1)),
        problem,
    };

    // Every record up to the durable watermark survived a completed fdatasync, so that record
    // must be readable; the history then continues as far as records follow without a gap.
    let durable = mapping.durable();
    if durable > 0 {
        if let Err(problem) = expect_record(mapping, durable) {
            return Err(corrupt(
                durable,
                format!("durable record unreadable: {problem}"),
            ));
        }
    }
    let mut newest = durable;
    while newest - durable < capacity && mapping.read_record(newest + 1).is_some() {
        newest += 1;
    }

    let oldest = match newest {
        0 => 0,
        n if n >= capacity && mapping.read_record(n - capacity + 1).is_some() => n - capacity + 1,
        // When the ring has wrapped, the slot after the newest record may hold a torn write
        // over the oldest record; history then starts one later.
        n if n >= capacity => n - capacity + 2,
        _ => 1,
    };

    let (balance, balance_min) = check_history(mapping, oldest, newest)?;

    // Outside the retained window a slot is either empty or a leftover of a crash: the torn
    // write right after the newest record, or records beyond a gap that a machine crash left
    // half on disk. None of them was ever acknowledged.
    let window = |seq: u64| oldest > 0 && (oldest..=newest).contains(&seq);
    let tail_slot = slot_of(newest + 1);
    let mut orphans = Vec::new();
    let mut torn_tail = false;
    for slot in 0..capacity {
        match Record::decode(&mapping.read_slot(slot + 1)) {
            Ok(r) if slot_of(r.seq) != slot => {
                return Err(corrupt(
                    r.seq,
                    format!("found in slot {slot}, belongs elsewhere"),
                ))
            }
            Ok(r) if window(r.seq) => {}
            Err(RecordError::Empty) => {}
            Err(_) if slot == tail_slot => torn_tail = true,
            _ => orphans.push(slot),
        }
    }
    Ok(Scan {
        oldest,
        newest,
        balance,
        balance_min,
        durable,
        torn_tail,
        orphans,
    })
}

/// Walks `oldest..=newest`, checking each record and the chain between neighbours. Returns the
/// final balance and the lowest balance seen.
fn check_history(mapping: &Mapping, oldest: u64, newest: u64) -> Result<(i64, i64), Corruption> {
    let capacity = mapping.header().capacity;
    let limit = mapping.header().limit;
    let mut previous: Option<Record> = None;
    let mut balance_min = 0;
    for seq in oldest.max(1)..=newest {
        let slot = (seq - 1) % capacity;
        let corrupt = |problem: String| Corruption { seq, slot, problem };
        let record = expect_record(mapping, seq).map_err(corrupt)?;
        let before = record
            .balance_before()
            .ok_or_else(|| corrupt("balance overflows".into()))?;
        match previous {
            Some(p) if before != p.balance => {
                return Err(corrupt(format!(
                    "balance chain broken: {} {} {} gives {}, previous balance is {}",
                    before,
                    record.kind.as_char(),
                    record.value,
                    record.balance,
                    p.balance
                )))
            }
            Some(p) if record.timestamp_us < p.timestamp_us => {
                return Err(corrupt("timestamp goes backwards".into()))
            }
            None if seq == 1 && before != 0 => {
                return Err(corrupt(format!(
                    "first record starts from balance {before}, not 0"
                )))
            }
            _ => {}
        }
        if record.balance < -limit {
            return Err(corrupt(format!(
                "balance {} below the limit -{limit}",
                record.balance
            )));
        }
        balance_min = balance_min.min(record.balance);
        previous = Some(record);
    }
    Ok((previous.map_or(0, |r| r.balance), balance_min))
}

fn expect_record(mapping: &Mapping, seq: u64) -> Result<Record, String> {
    match Record::decode(&mapping.read_slot(seq)) {
        Ok(r) if r.seq == seq => Ok(r),
        Ok(r) => Err(format!("slot holds seq {} instead", r.seq)),
        Err(e) => Err(e.to_string()),
    }
}

/// Erases orphaned slots so that no later writer mistakes one for the next record of the
/// history. The caller holds the exclusive lock.
pub fn erase(mapping: &Mapping, orphan_slots: &[u64]) {
    for &slot in orphan_slots {
        mapping.write_slot(slot + 1, &[0u8; RECORD_SIZE]);
    }
}
