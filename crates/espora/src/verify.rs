//! Reading a whole ring back: where history ends, whether it is sound, and what was left behind
//! by a crash. Used by recovery at open time and by `espora verify`, on the bytes the device
//! returned (see `device.rs`), and by tests on a mapping.

use crate::error::Corruption;
use crate::file::Mapping;
use crate::layout::{Header, Record, RecordError, RECORD_SIZE};

/// Where a scan reads the ring's slots from.
pub trait Slots {
    fn header(&self) -> &Header;

    /// The raw bytes of the slot for `seq`.
    fn slot(&self, seq: u64) -> [u8; RECORD_SIZE];

    /// The record for `seq`, if the slot holds exactly that record.
    fn record(&self, seq: u64) -> Option<Record> {
        Record::decode(&self.slot(seq))
            .ok()
            .filter(|r| r.seq == seq)
    }
}

impl Slots for Mapping {
    fn header(&self) -> &Header {
        Mapping::header(self)
    }

    fn slot(&self, seq: u64) -> [u8; RECORD_SIZE] {
        self.read_slot(seq)
    }
}

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
    /// Where recovery started: the highest anchor found in the records, or the known durable
    /// watermark, a record that was known durable when a later record was written.
    pub anchor: u64,
    /// The slot after the newest record holds a torn write: a transaction that was never
    /// acknowledged. It is harmless and will be overwritten.
    pub torn_tail: bool,
    /// Slots outside the history that are not empty: records beyond a gap after the newest
    /// record, written after the last completed sync and partly lost by a machine crash, so
    /// never acknowledged. Recovery erases them, and says so.
    pub orphans: Vec<u64>,
}

/// Reads every slot and checks the history: checksums, sequence continuity, the balance chain,
/// the limit and timestamp order. `known_durable` is a sequence number the caller knows was
/// durable (the shared-state file's watermark), or 0. The caller holds at least a shared lock
/// so no writer moves.
pub fn scan(slots: &impl Slots, known_durable: u64) -> Result<Scan, Corruption> {
    let header = *slots.header();
    // Every slot is decoded once (a checksum over 124 bytes each): recovery runs this under the
    // account's exclusive lock.
    let ring = Decoded::new(slots);
    let capacity = header.capacity;
    let slot_of = |seq: u64| (seq - 1) % capacity;
    let corrupt = |seq: u64, problem: String| Corruption {
        seq,
        slot: slot_of(seq.max(1)),
        problem,
    };

    // Every record carries a sequence number that was durable when it was written, so the
    // highest one found, and every record before it, survived a completed fdatasync: that
    // record must be readable, and the history continues from it as far as records follow
    // without a gap. Records beyond a gap can only be newer than every sync, so their anchors
    // are no higher than the truth either. The newest records' own anchors lag behind them;
    // the shared-state file's watermark, when the caller has it, covers those too.
    let anchor = (ring.slots.iter())
        .filter_map(|slot| slot.as_ref().ok())
        .map(|r| r.anchor)
        .fold(known_durable, u64::max);
    if anchor > 0 {
        if let Err(problem) = expect_record(&ring, anchor) {
            return Err(corrupt(
                anchor,
                format!("anchor record unreadable: {problem}"),
            ));
        }
    }
    let mut newest = anchor;
    while newest - anchor < capacity && ring.record(newest + 1).is_some() {
        newest += 1;
    }

    // Backwards from the newest record, the history goes on as long as the records do, at most
    // a whole ring. Writes after the newest record overwrite the oldest slots, so a crash that
    // cut them leaves the oldest records of the ring missing or torn; but never more of them
    // than may be in flight, and never while the ring still had room.
    let mut oldest = newest;
    while oldest > 1 && newest - oldest + 1 < capacity && ring.record(oldest - 1).is_some() {
        oldest -= 1;
    }
    let oldest_possible = (newest + header.in_flight_max() + 1)
        .saturating_sub(capacity)
        .max(1);
    if newest > 0 && oldest > oldest_possible {
        let seq = oldest - 1;
        let problem = match ring.decoded(seq) {
            Ok(r) => format!("missing inside the history, slot holds seq {}", r.seq),
            Err(e) => format!("missing inside the history: {e}"),
        };
        return Err(corrupt(seq, problem));
    }
    let oldest = if newest == 0 { 0 } else { oldest };

    let (balance, balance_min) = check_history(&ring, &header, oldest, newest)?;

    // Outside the retained window a slot is either empty or a leftover of a crash: the torn
    // write right after the newest record, records beyond a gap that a machine crash left half
    // on disk, or older records whose overwrite the crash cut. None of the newer ones was ever
    // acknowledged, and the older ones are out of the ring's window.
    let window = |seq: u64| oldest > 0 && (oldest..=newest).contains(&seq);
    let tail_slot = slot_of(newest + 1);
    let mut orphans = Vec::new();
    let mut torn_tail = false;
    for (slot, decoded) in (0..capacity).zip(&ring.slots) {
        match decoded {
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
        anchor,
        torn_tail,
        orphans,
    })
}

/// Walks `oldest..=newest`, checking each record and the chain between neighbours. Returns the
/// final balance and the lowest balance seen.
fn check_history(
    ring: &Decoded,
    header: &Header,
    oldest: u64,
    newest: u64,
) -> Result<(i64, i64), Corruption> {
    let capacity = header.capacity;
    let limit = header.limit;
    let mut previous: Option<Record> = None;
    let mut balance_min = 0;
    for seq in oldest.max(1)..=newest {
        let slot = (seq - 1) % capacity;
        let corrupt = |problem: String| Corruption { seq, slot, problem };
        let record = expect_record(ring, seq).map_err(corrupt)?;
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

fn expect_record(ring: &Decoded, seq: u64) -> Result<Record, String> {
    match ring.decoded(seq) {
        Ok(r) if r.seq == seq => Ok(r),
        Ok(r) => Err(format!("slot holds seq {} instead", r.seq)),
        Err(e) => Err(e.to_string()),
    }
}

/// Every slot of a ring, decoded once.
struct Decoded {
    capacity: u64,
    /// Indexed by slot.
    slots: Vec<Result<Record, RecordError>>,
}

impl Decoded {
    fn new(slots: &impl Slots) -> Decoded {
        let capacity = slots.header().capacity;
        Decoded {
            capacity,
            slots: (1..=capacity)
                .map(|seq| Record::decode(&slots.slot(seq)))
                .collect(),
        }
    }

    /// What the slot of `seq` holds, whatever its sequence number.
    fn decoded(&self, seq: u64) -> Result<Record, RecordError> {
        self.slots[((seq - 1) % self.capacity) as usize]
    }

    /// The record for `seq`, if its slot holds exactly that record.
    fn record(&self, seq: u64) -> Option<Record> {
        self.decoded(seq).ok().filter(|r| r.seq == seq)
    }
}
