//! The on-disk format of an account file, byte by byte (see `docs/espora-format.md`).
//!
//! Everything here is pure: encoding and decoding of the header and of records into byte arrays,
//! with explicit little-endian integers and CRC32C checksums. Nothing here touches a file.

use std::fmt;

/// The first eight bytes of every account file.
pub const MAGIC: [u8; 8] = *b"ESPORA\x00\x1a";
/// The format version this build reads and writes. Version 1 (no record anchors, counters in the
/// header) is refused with a message that says what to do.
pub const FORMAT_VERSION: u32 = 2;
/// Size of the header region; records start right after it.
pub const HEADER_SIZE: usize = 4096;
/// Size of one record slot.
pub const RECORD_SIZE: usize = 128;
/// Longest description in bytes: room for the API's 10 Unicode scalar values of at most 4 UTF-8
/// bytes each. How many characters a description may have is the API's rule, not the file's.
pub const DESCRIPTION_BYTES_MAX: usize = 40;
/// Default ring capacity: at 66 transactions/s on one account (the reference peak spread over five
/// accounts) this keeps more than 16 minutes of history before the ring wraps.
pub const RING_RECORDS_DEFAULT: u64 = 65_536;
/// Smallest ring accepted: a statement reader copies the newest records without the lock and
/// relies on writers never reaching them, so the ring must be much larger than a statement.
pub const RING_RECORDS_MIN: u64 = 64;
/// Largest ring accepted (1 GiB of records), to keep the mapping size sane.
pub const RING_RECORDS_MAX: u64 = 1 << 23;
/// Rings hold a whole number of 4 KiB pages of records, so that recovery can write any page of
/// the file back with direct I/O (aligned offsets and lengths, never past the end of the file).
pub const RING_RECORDS_STEP: u64 = (4096 / RECORD_SIZE) as u64;

const _: () = assert!(RING_RECORDS_DEFAULT.is_multiple_of(RING_RECORDS_STEP));
const _: () = assert!(RING_RECORDS_MIN.is_multiple_of(RING_RECORDS_STEP));
const _: () = assert!(RING_RECORDS_MAX.is_multiple_of(RING_RECORDS_STEP));

/// Byte offsets inside the header.
pub mod header_offset {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const HEADER_SIZE: usize = 12;
    pub const RECORD_SIZE: usize = 16;
    pub const ACCOUNT_ID: usize = 20;
    pub const LIMIT: usize = 24;
    pub const CAPACITY: usize = 32;
    pub const CREATED_US: usize = 40;
    /// CRC32C of bytes `0..CHECKSUM`.
    pub const CHECKSUM: usize = 60;
    /// The immutable, checksummed part ends here; the rest of the header is zero.
    pub const IMMUTABLE_END: usize = 64;
}

/// Byte offsets inside a record.
pub mod record_offset {
    pub const SEQ: usize = 0;
    pub const TIMESTAMP_US: usize = 8;
    pub const VALUE: usize = 16;
    pub const BALANCE: usize = 24;
    pub const KIND: usize = 32;
    pub const DESCRIPTION_LEN: usize = 33;
    pub const DESCRIPTION: usize = 34;
    /// `u64`: a sequence number that was durable when this record was written (version 2).
    pub const ANCHOR: usize = 74;
    /// CRC32C of bytes `0..CHECKSUM`.
    pub const CHECKSUM: usize = 124;
}

const _: () = assert!(HEADER_SIZE.is_power_of_two() && HEADER_SIZE >= 4096);
const _: () = assert!(RECORD_SIZE.is_power_of_two());
// Records never straddle a 512-byte sector nor a 4 KiB page.
const _: () = assert!(512 % RECORD_SIZE == 0 && HEADER_SIZE.is_multiple_of(RECORD_SIZE));
const _: () = assert!(
    record_offset::DESCRIPTION + DESCRIPTION_BYTES_MAX <= record_offset::CHECKSUM,
    "the description must fit before the checksum"
);
const _: () = assert!(record_offset::DESCRIPTION + DESCRIPTION_BYTES_MAX == record_offset::ANCHOR);
const _: () = assert!(record_offset::ANCHOR + 8 <= record_offset::CHECKSUM);
const _: () = assert!(record_offset::CHECKSUM + 4 == RECORD_SIZE);
const _: () = assert!(header_offset::CHECKSUM + 4 == header_offset::IMMUTABLE_END);
const _: () = assert!(header_offset::IMMUTABLE_END <= HEADER_SIZE);

/// Transaction type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Adds `value` to the balance.
    Credit,
    /// Subtracts `value` from the balance, never below `-limit`.
    Debit,
}

impl Kind {
    /// The letter stored in the file: `'c'` or `'d'`.
    pub fn as_char(self) -> char {
        match self {
            Kind::Credit => 'c',
            Kind::Debit => 'd',
        }
    }

    fn to_byte(self) -> u8 {
        self.as_char() as u8
    }

    fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            b'c' => Some(Kind::Credit),
            b'd' => Some(Kind::Debit),
            _ => None,
        }
    }
}

/// Immutable facts about an account file, fixed at creation: nothing in the header changes while
/// the file lives, so it is read without the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Always [`FORMAT_VERSION`] once decoded.
    pub version: u32,
    pub account_id: u32,
    pub limit: i64,
    pub capacity: u64,
    pub created_us: i64,
}

/// Why a header cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The magic bytes are wrong: not an espora file.
    Magic,
    /// The file was written by another format version.
    Version(u32),
    /// The header checksum does not match its bytes.
    Checksum,
    /// A field holds a value this build cannot accept.
    Field(&'static str),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Magic => write!(f, "not an espora file (bad magic)"),
            HeaderError::Version(1) => write!(
                f,
                "format version 1 is no longer read (this build reads version {FORMAT_VERSION}); \
                 stop every process using the directory, move its account files away and start \
                 again on an empty directory"
            ),
            HeaderError::Version(v) => write!(
                f,
                "unsupported format version {v} (this build reads version {FORMAT_VERSION})"
            ),
            HeaderError::Checksum => write!(f, "header checksum mismatch"),
            HeaderError::Field(name) => write!(f, "header field {name} is out of range"),
        }
    }
}

impl Header {
    /// Most records that may be written but not yet durable. Recovery can then always tell the
    /// history from the leftovers of a crash: the anchor's record is never overwritten by an
    /// unsynced write, and a gap below the history longer than this is damage, not a crash.
    pub fn in_flight_max(&self) -> u64 {
        self.capacity / 4
    }

    /// Size of the whole file for this header.
    pub fn file_size(&self) -> u64 {
        HEADER_SIZE as u64 + self.capacity * RECORD_SIZE as u64
    }

    /// Byte offset of the slot holding sequence number `seq` (which starts at 1).
    pub fn slot_offset(&self, seq: u64) -> usize {
        assert!(seq >= 1);
        HEADER_SIZE + ((seq - 1) % self.capacity) as usize * RECORD_SIZE
    }

    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        use header_offset as o;
        let mut bytes = [0u8; HEADER_SIZE];
        bytes[o::MAGIC..o::MAGIC + 8].copy_from_slice(&MAGIC);
        assert_eq!(self.version, FORMAT_VERSION);
        put_u32(&mut bytes, o::VERSION, self.version);
        put_u32(&mut bytes, o::HEADER_SIZE, HEADER_SIZE as u32);
        put_u32(&mut bytes, o::RECORD_SIZE, RECORD_SIZE as u32);
        put_u32(&mut bytes, o::ACCOUNT_ID, self.account_id);
        put_u64(&mut bytes, o::LIMIT, self.limit as u64);
        put_u64(&mut bytes, o::CAPACITY, self.capacity);
        put_u64(&mut bytes, o::CREATED_US, self.created_us as u64);
        let checksum = crc32c::crc32c(&bytes[..o::CHECKSUM]);
        put_u32(&mut bytes, o::CHECKSUM, checksum);
        bytes
    }

    /// Decodes the immutable part of a header (`bytes` holds at least its first 64 bytes).
    pub fn decode(bytes: &[u8]) -> Result<Header, HeaderError> {
        use header_offset as o;
        assert!(bytes.len() >= o::IMMUTABLE_END);
        if bytes[o::MAGIC..o::MAGIC + 8] != MAGIC {
            return Err(HeaderError::Magic);
        }
        let version = get_u32(bytes, o::VERSION);
        if version != FORMAT_VERSION {
            return Err(HeaderError::Version(version));
        }
        if crc32c::crc32c(&bytes[..o::CHECKSUM]) != get_u32(bytes, o::CHECKSUM) {
            return Err(HeaderError::Checksum);
        }
        if get_u32(bytes, o::HEADER_SIZE) as usize != HEADER_SIZE {
            return Err(HeaderError::Field("header_size"));
        }
        if get_u32(bytes, o::RECORD_SIZE) as usize != RECORD_SIZE {
            return Err(HeaderError::Field("record_size"));
        }
        let header = Header {
            version,
            account_id: get_u32(bytes, o::ACCOUNT_ID),
            limit: get_u64(bytes, o::LIMIT) as i64,
            capacity: get_u64(bytes, o::CAPACITY),
            created_us: get_u64(bytes, o::CREATED_US) as i64,
        };
        if header.limit < 0 {
            return Err(HeaderError::Field("limit"));
        }
        if !ring_records_valid(header.capacity) {
            return Err(HeaderError::Field("capacity"));
        }
        Ok(header)
    }
}

/// Whether a ring of `records` is one the format allows: within the bounds, whole pages.
pub const fn ring_records_valid(records: u64) -> bool {
    RING_RECORDS_MIN <= records
        && records <= RING_RECORDS_MAX
        && records.is_multiple_of(RING_RECORDS_STEP)
}

/// The shared-state file that sits next to each account file, `account-<id>.espora-state`: the
/// words that processes coordinate through (see `shared.rs`). It is mapped by every process and
/// never synced; everything in it is re-derived from the account file at open, and it is trusted
/// only within the boot that wrote it, so losing or tearing it (power loss) loses nothing.
pub const SHARED_SIZE: usize = 4096;
/// The first eight bytes of a shared-state file.
pub const SHARED_MAGIC: [u8; 8] = *b"ESPORASH";
/// The layout version of the shared-state file: 2 binds it to the boot and tags the head and
/// durable words with a generation.
pub const SHARED_VERSION: u32 = 2;
/// Bytes of a boot identifier (`/proc/sys/kernel/random/boot_id`, a UUID).
pub const BOOT_ID_SIZE: usize = 16;
/// Bits of a tagged word that hold the sequence number; the generation has the rest.
pub const TAGGED_SEQ_BITS: u32 = 48;

/// Byte offsets inside the shared-state file. The identity binds it to one account file and to
/// one boot of the machine: when it does not match (a new account file, a file zeroed, torn or
/// left from before a reboot), the open clears it.
pub mod shared_offset {
    /// Identity: magic, version, the account file's id, creation time and capacity, the boot.
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const ACCOUNT_ID: usize = 12;
    pub const CREATED_US: usize = 16;
    pub const CAPACITY: usize = 24;
    pub const BOOT_ID: usize = 32;
    /// CRC32C of bytes `0..CHECKSUM`.
    pub const CHECKSUM: usize = 48;
    pub const IDENTITY_END: usize = 52;
    /// `u64` written with `pwrite` and read back through the mapping at every open, to prove
    /// that the file system keeps the two coherent.
    pub const PROBE: usize = 56;
    /// Tagged `u64` (generation in the top 16 bits, sequence number below): the newest record
    /// written, as far as writers have said (a hint; records are the truth).
    pub const HEAD: usize = 64;
    /// Tagged `u64`: the highest sequence number known to be durable.
    pub const DURABLE: usize = 128;
    /// `u64`: the sync in flight, 0 when none (see `commit.rs`).
    pub const SYNC_CLAIM: usize = 192;
    /// `u32` futex word, bumped when a sync ends.
    pub const SYNC_EVENTS: usize = 200;
    /// `u32`: how many threads sleep on `SYNC_EVENTS` (a hint that lets a finishing sync skip
    /// the wake system call).
    pub const SYNC_SLEEPERS: usize = 204;
    /// `u64`: when the last sync started, in nanoseconds of the monotonic clock.
    pub const SYNC_STARTED: usize = 208;
    /// `u64`: how many records the last completed sync made durable.
    pub const SYNC_GROUP: usize = 216;
    /// `u32` futex word, bumped when the account lock is released.
    pub const LOCK_EVENTS: usize = 256;
    /// `u32`: how many threads sleep on `LOCK_EVENTS`.
    pub const LOCK_SLEEPERS: usize = 260;
}

// Each group of words that different parties write lives on its own cache line; the 64-bit
// words are 8-byte aligned and the futex words 4-byte aligned.
const _: () =
    assert!(shared_offset::HEAD.is_multiple_of(64) && shared_offset::DURABLE.is_multiple_of(64));
const _: () = assert!(
    shared_offset::SYNC_CLAIM.is_multiple_of(64) && shared_offset::LOCK_EVENTS.is_multiple_of(64)
);
const _: () = assert!(
    shared_offset::SYNC_EVENTS.is_multiple_of(4) && shared_offset::SYNC_SLEEPERS.is_multiple_of(4)
);
const _: () = assert!(shared_offset::LOCK_SLEEPERS + 4 <= SHARED_SIZE);
const _: () = assert!(shared_offset::SYNC_STARTED.is_multiple_of(8));
const _: () = assert!(shared_offset::SYNC_GROUP.is_multiple_of(8));
const _: () = assert!(shared_offset::SYNC_GROUP + 8 <= shared_offset::LOCK_EVENTS);
const _: () = assert!(shared_offset::BOOT_ID + BOOT_ID_SIZE == shared_offset::CHECKSUM);
const _: () = assert!(shared_offset::CHECKSUM + 4 == shared_offset::IDENTITY_END);
const _: () = assert!(shared_offset::IDENTITY_END <= shared_offset::PROBE);
const _: () = assert!(
    shared_offset::PROBE.is_multiple_of(8) && shared_offset::PROBE + 8 <= shared_offset::HEAD
);
// A 48-bit sequence number lasts 890 years at 10,000 records a second; the ring's capacity and
// every sequence a file can reach stay far below it.
const _: () = assert!(RING_RECORDS_MAX < 1 << TAGGED_SEQ_BITS);

/// The identity bytes of the shared-state file that belongs to an account file in this boot.
pub fn shared_identity(
    header: &Header,
    boot_id: &[u8; BOOT_ID_SIZE],
) -> [u8; shared_offset::IDENTITY_END] {
    use shared_offset as o;
    let mut bytes = [0u8; o::IDENTITY_END];
    bytes[o::MAGIC..o::MAGIC + 8].copy_from_slice(&SHARED_MAGIC);
    put_u32(&mut bytes, o::VERSION, SHARED_VERSION);
    put_u32(&mut bytes, o::ACCOUNT_ID, header.account_id);
    put_u64(&mut bytes, o::CREATED_US, header.created_us as u64);
    put_u64(&mut bytes, o::CAPACITY, header.capacity);
    bytes[o::BOOT_ID..o::BOOT_ID + BOOT_ID_SIZE].copy_from_slice(boot_id);
    let checksum = crc32c::crc32c(&bytes[..o::CHECKSUM]);
    put_u32(&mut bytes, o::CHECKSUM, checksum);
    bytes
}

/// A transaction description: text of at most `DESCRIPTION_BYTES_MAX` bytes, stored inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Description {
    /// INVARIANT: `bytes[..len]` is valid UTF-8 of at most `DESCRIPTION_BYTES_MAX` bytes; the
    /// rest is zero.
    bytes: [u8; DESCRIPTION_BYTES_MAX],
    len: u8,
}

impl Description {
    /// The record field's rule: the text fits in `DESCRIPTION_BYTES_MAX` bytes.
    pub fn new(text: &str) -> Option<Description> {
        if text.len() > DESCRIPTION_BYTES_MAX {
            return None;
        }
        let mut bytes = [0u8; DESCRIPTION_BYTES_MAX];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Some(Description {
            bytes,
            len: text.len() as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        // The invariant makes this infallible; a failure would mean memory corruption.
        std::str::from_utf8(&self.bytes[..self.len as usize]).expect("description is UTF-8")
    }
}

impl fmt::Debug for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// One committed transaction, as stored in a ring slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Position in the account's history, starting at 1, without gaps.
    pub seq: u64,
    /// When the transaction was accepted: microseconds since the Unix epoch, UTC.
    pub timestamp_us: i64,
    /// Amount in cents, always positive.
    pub value: i64,
    /// Balance right after this transaction.
    pub balance: i64,
    pub kind: Kind,
    pub description: Description,
    /// A sequence number that was durable when the record was written, always below `seq`.
    /// Recovery starts from the highest anchor it finds:
    /// that record and every one before it reached the disk, so the history must reach it.
    pub anchor: u64,
}

/// Why a slot does not hold a usable record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Every byte is zero: the slot was never written.
    Empty,
    /// The checksum does not match: a torn or damaged write.
    Checksum,
    /// The checksum matches but a field is impossible (a bug wrote it, or a collision).
    Field(&'static str),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Empty => write!(f, "empty slot"),
            RecordError::Checksum => write!(f, "checksum mismatch"),
            RecordError::Field(name) => write!(f, "field {name} out of range"),
        }
    }
}

impl Record {
    /// The balance before this transaction, or `None` on overflow.
    pub fn balance_before(&self) -> Option<i64> {
        match self.kind {
            Kind::Credit => self.balance.checked_sub(self.value),
            Kind::Debit => self.balance.checked_add(self.value),
        }
    }

    pub fn description(&self) -> &str {
        self.description.as_str()
    }

    pub fn encode(&self) -> [u8; RECORD_SIZE] {
        use record_offset as o;
        assert!(self.seq >= 1 && self.value > 0 && self.anchor < self.seq);
        let mut bytes = [0u8; RECORD_SIZE];
        put_u64(&mut bytes, o::SEQ, self.seq);
        put_u64(&mut bytes, o::TIMESTAMP_US, self.timestamp_us as u64);
        put_u64(&mut bytes, o::VALUE, self.value as u64);
        put_u64(&mut bytes, o::BALANCE, self.balance as u64);
        bytes[o::KIND] = self.kind.to_byte();
        bytes[o::DESCRIPTION_LEN] = self.description.len;
        bytes[o::DESCRIPTION..o::DESCRIPTION + DESCRIPTION_BYTES_MAX]
            .copy_from_slice(&self.description.bytes);
        put_u64(&mut bytes, o::ANCHOR, self.anchor);
        let checksum = crc32c::crc32c(&bytes[..o::CHECKSUM]);
        put_u32(&mut bytes, o::CHECKSUM, checksum);
        bytes
    }

    pub fn decode(bytes: &[u8; RECORD_SIZE]) -> Result<Record, RecordError> {
        use record_offset as o;
        if crc32c::crc32c(&bytes[..o::CHECKSUM]) != get_u32(bytes, o::CHECKSUM) {
            if bytes.iter().all(|&b| b == 0) {
                return Err(RecordError::Empty);
            }
            return Err(RecordError::Checksum);
        }
        let kind = Kind::from_byte(bytes[o::KIND]).ok_or(RecordError::Field("kind"))?;
        let len = bytes[o::DESCRIPTION_LEN] as usize;
        if len > DESCRIPTION_BYTES_MAX {
            return Err(RecordError::Field("description_len"));
        }
        let text = std::str::from_utf8(&bytes[o::DESCRIPTION..o::DESCRIPTION + len])
            .map_err(|_| RecordError::Field("description"))?;
        let description = Description::new(text).ok_or(RecordError::Field("description"))?;
        let record = Record {
            seq: get_u64(bytes, o::SEQ),
            timestamp_us: get_u64(bytes, o::TIMESTAMP_US) as i64,
            value: get_u64(bytes, o::VALUE) as i64,
            balance: get_u64(bytes, o::BALANCE) as i64,
            kind,
            description,
            anchor: get_u64(bytes, o::ANCHOR),
        };
        if record.seq == 0 {
            return Err(RecordError::Field("seq"));
        }
        if record.anchor >= record.seq {
            return Err(RecordError::Field("anchor"));
        }
        if record.value <= 0 {
            return Err(RecordError::Field("value"));
        }
        Ok(record)
    }
}

fn put_u32(bytes: &mut [u8], offset: usize, value: u32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(bytes: &mut [u8], offset: usize, value: u64) {
    bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

fn get_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

fn get_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, description: &str) -> Record {
        Record {
            seq,
            timestamp_us: 1_705_458_881_217_753,
            value: 1000,
            balance: -9098,
            kind: Kind::Debit,
            description: Description::new(description).unwrap(),
            anchor: seq - 1,
        }
    }

    #[test]
    fn record_round_trips_and_is_little_endian() {
        let r = record(0x0102, "éééééééééé");
        let bytes = r.encode();
        assert_eq!(bytes[0..2], [0x02, 0x01]);
        assert_eq!(bytes[record_offset::KIND], b'd');
        assert_eq!(bytes[record_offset::ANCHOR..][..2], [0x01, 0x01]);
        assert_eq!(Record::decode(&bytes), Ok(r));
    }

    #[test]
    fn description_rules() {
        #[track_caller]
        fn check(text: &str, ok: bool) {
            assert_eq!(Description::new(text).is_some(), ok, "{text:?}");
        }
        check("", true);
        check("a", true);
        check("historico", true);
        check("0123456789012345678901234567890123456789", true);
        check("01234567890123456789012345678901234567890", false);
        check("éééééééééééééééééééé", true);
        check("ééééééééééééééééééééé", false);
        check("😀😀😀😀😀😀😀😀😀😀", true);
        check("😀😀😀😀😀😀😀😀😀😀a", false);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = record(7, "toma").encode();
        for bit in 0..RECORD_SIZE * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(Record::decode(&damaged).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn zero_slot_is_empty() {
        assert_eq!(Record::decode(&[0; RECORD_SIZE]), Err(RecordError::Empty));
    }

    #[test]
    fn shared_identity_names_the_account_file() {
        let h = Header {
            version: FORMAT_VERSION,
            account_id: 3,
            limit: 1_000_000,
            capacity: 65_536,
            created_us: 5,
        };
        let boot = [7u8; BOOT_ID_SIZE];
        let identity = shared_identity(&h, &boot);
        assert_eq!(identity[..8], SHARED_MAGIC);
        assert_ne!(
            identity,
            shared_identity(&Header { created_us: 6, ..h }, &boot)
        );
        assert_ne!(
            identity,
            shared_identity(&Header { account_id: 4, ..h }, &boot)
        );
        // Another boot: the words of the previous one are not trusted.
        assert_ne!(identity, shared_identity(&h, &[8u8; BOOT_ID_SIZE]));
        // The limit is not part of the identity: it lives in the account file alone.
        assert_eq!(identity, shared_identity(&Header { limit: 7, ..h }, &boot));
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = Header {
            version: FORMAT_VERSION,
            account_id: 3,
            limit: 1_000_000,
            capacity: 65_536,
            created_us: 5,
        };
        let bytes = h.encode();
        assert_eq!(Header::decode(&bytes), Ok(h));
        let mut bad = bytes;
        bad[header_offset::LIMIT] ^= 1;
        assert_eq!(Header::decode(&bad), Err(HeaderError::Checksum));
        let mut bad = bytes;
        bad[0] = b'X';
        assert_eq!(Header::decode(&bad), Err(HeaderError::Magic));
        let mut bad = bytes;
        bad[header_offset::VERSION] = 9;
        assert_eq!(Header::decode(&bad), Err(HeaderError::Version(9)));
        let mut old = bytes;
        old[header_offset::VERSION] = 1;
        let checksum = crc32c::crc32c(&old[..header_offset::CHECKSUM]);
        old[header_offset::CHECKSUM..][..4].copy_from_slice(&checksum.to_le_bytes());
        assert_eq!(Header::decode(&old), Err(HeaderError::Version(1)));
        assert!(HeaderError::Version(1)
            .to_string()
            .contains("empty directory"));
        for capacity in [
            RING_RECORDS_MIN - RING_RECORDS_STEP,
            100,
            RING_RECORDS_MAX + 32,
        ] {
            let odd = Header { capacity, ..h }.encode();
            assert_eq!(Header::decode(&odd), Err(HeaderError::Field("capacity")));
        }
        assert_eq!(h.slot_offset(1), HEADER_SIZE);
        assert_eq!(h.slot_offset(65_537), HEADER_SIZE);
        assert_eq!(h.slot_offset(2), HEADER_SIZE + RECORD_SIZE);
    }
}
