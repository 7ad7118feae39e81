//! JSON output written by hand into caller-owned buffers.
//!
//! The response bodies have a fixed shape, so writing them directly is both simpler and cheaper
//! than building a `serde_json::Value`: no allocation per request once the buffer has grown to
//! its working size. Integers are formatted without going through `core::fmt`.

use crate::ledger::{Kind, Statement};

/// Appends the decimal form of `value` to `out`.
pub fn write_i64(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    write_u64(out, value.unsigned_abs());
}

/// Appends the decimal form of `value` to `out`.
pub fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    // u64::MAX has 20 digits; digits are produced backwards into a stack array.
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends `value` left-padded with zeros to `width` digits (more digits if it needs them).
fn write_padded(out: &mut Vec<u8>, value: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for _ in (digits.len() - start)..width {
        out.push(b'0');
    }
    out.extend_from_slice(&digits[start..]);
}

/// Converts a count of days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// The calendar repeats every 400 years (146,097 days), so the day count is shifted to an era
/// that starts on 0000-03-01; starting the year in March puts the leap day at the end of the year,
/// which makes the month lengths a simple linear formula.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468; // Days from 0000-03-01 to 1970-01-01.
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097); // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let month_index = (5 * day_of_year + 2) / 153; // [0, 11], 0 is March.
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32; // [1, 31]
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Appends `timestamp_us` (microseconds since the Unix epoch, UTC) as RFC 3339 with six
/// fractional digits, for example `2024-01-17T02:34:41.217753Z`.
pub fn write_timestamp_us(out: &mut Vec<u8>, timestamp_us: i64) {
    const MICROS_PER_SECOND: i64 = 1_000_000;
    const SECONDS_PER_DAY: i64 = 86_400;
    let seconds = timestamp_us.div_euclid(MICROS_PER_SECOND);
    let micros = timestamp_us.rem_euclid(MICROS_PER_SECOND) as u64;
    let days = seconds.div_euclid(SECONDS_PER_DAY);
    let second_of_day = seconds.rem_euclid(SECONDS_PER_DAY) as u64;
    let (year, month, day) = civil_from_days(days);
    // RFC 3339 only has four-digit years; the clock and the stored records are far from the
    // edges, and a year outside 0..=9999 is still printed readably rather than panicking.
    if year < 0 {
        out.push(b'-');
    }
    write_padded(out, year.unsigned_abs(), 4);
    out.push(b'-');
    write_padded(out, u64::from(month), 2);
    out.push(b'-');
    write_padded(out, u64::from(day), 2);
    out.push(b'T');
    write_padded(out, second_of_day / 3_600, 2);
    out.push(b':');
    write_padded(out, second_of_day / 60 % 60, 2);
    out.push(b':');
    write_padded(out, second_of_day % 60, 2);
    out.push(b'.');
    write_padded(out, micros, 6);
    out.push(b'Z');
}

/// Appends `text` as a JSON string literal, quotes included.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &byte in text.as_bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x00..=0x1f | 0x7f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
            // Multi-byte UTF-8 sequences pass through unchanged: the input is a valid `str`.
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

/// Appends the body of a successful transaction: `{"limite":L,"saldo":S}`.
pub fn write_appended(out: &mut Vec<u8>, limit: i64, balance: i64) {
    out.extend_from_slice(b"{\"limite\":");
    write_i64(out, limit);
    out.extend_from_slice(b",\"saldo\":");
    write_i64(out, balance);
    out.push(b'}');
}

/// Appends the body of a statement taken at `now_us`.
pub fn write_statement(out: &mut Vec<u8>, statement: &Statement, now_us: i64) {
    out.extend_from_slice(b"{\"saldo\":{\"total\":");
    write_i64(out, statement.balance);
    out.extend_from_slice(b",\"data_extrato\":\"");
    write_timestamp_us(out, now_us);
    out.extend_from_slice(b"\",\"limite\":");
    write_i64(out, statement.limit);
    out.extend_from_slice(b"},\"ultimas_transacoes\":[");
    for (index, record) in statement.records.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"valor\":");
        write_i64(out, record.value);
        out.extend_from_slice(match record.kind {
            Kind::Credit => b",\"tipo\":\"c\",\"descricao\":",
            Kind::Debit => b",\"tipo\":\"d\",\"descricao\":",
        });
        write_str(out, record.description());
        out.extend_from_slice(b",\"realizada_em\":\"");
        write_timestamp_us(out, record.timestamp_us);
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b"]}");
}

/// Appends a small error body: `{"erro":"message"}`.
pub fn write_error(out: &mut Vec<u8>, message: &str) {
    out.extend_from_slice(b"{\"erro\":");
    write_str(out, message);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_i64(value: i64, expected: &str) {
        let mut out = Vec::new();
        write_i64(&mut out, value);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            expected,
            "value {value}"
        );
    }

    #[test]
    fn integers() {
        check_i64(0, "0");
        check_i64(7, "7");
        check_i64(10, "10");
        check_i64(-9098, "-9098");
        check_i64(100_000, "100000");
        check_i64(i64::MAX, "9223372036854775807");
        check_i64(i64::MIN, "-9223372036854775808");
        let mut out = Vec::new();
        write_u64(&mut out, u64::MAX);
        assert_eq!(out, b"18446744073709551615");
    }

    fn check_timestamp(timestamp_us: i64, expected: &str) {
        let mut out = Vec::new();
        write_timestamp_us(&mut out, timestamp_us);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            expected,
            "timestamp {timestamp_us}"
        );
    }

    #[test]
    fn timestamps() {
        check_timestamp(0, "1970-01-01T00:00:00.000000Z");
        check_timestamp(1, "1970-01-01T00:00:00.000001Z");
        check_timestamp(-1, "1969-12-31T23:59:59.999999Z");
        // The example of the contract.
        check_timestamp(1_705_458_881_217_753, "2024-01-17T02:34:41.217753Z");
        check_timestamp(1_705_458_878_543_030, "2024-01-17T02:34:38.543030Z");
        // Leap days: a year divisible by 4, by 100 (not leap), by 400 (leap).
        check_timestamp(951_782_400_000_000, "2000-02-29T00:00:00.000000Z");
        check_timestamp(951_868_800_000_000, "2000-03-01T00:00:00.000000Z");
        check_timestamp(1_709_164_800_000_000, "2024-02-29T00:00:00.000000Z");
        check_timestamp(4_107_542_400_000_000, "2100-03-01T00:00:00.000000Z");
        check_timestamp(4_107_456_000_000_000, "2100-02-28T00:00:00.000000Z");
        // Year ends and the largest 32-bit second.
        check_timestamp(1_704_067_199_999_999, "2023-12-31T23:59:59.999999Z");
        check_timestamp(1_704_067_200_000_000, "2024-01-01T00:00:00.000000Z");
        check_timestamp(2_147_483_647_000_000, "2038-01-19T03:14:07.000000Z");
        check_timestamp(253_402_300_799_999_999, "9999-12-31T23:59:59.999999Z");
        check_timestamp(-62_135_596_800_000_000, "0001-01-01T00:00:00.000000Z");
    }

    /// Every day from 1900 to 2200 follows the previous one: the formatter never skips or
    /// repeats a date, and month lengths and leap years come out right.
    #[test]
    fn consecutive_days() {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let month_days = |y: i64, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut expected = (1900, 1, 1);
        for days in -25_567..84_006 {
            assert_eq!(civil_from_days(days), expected, "days {days}");
            let (y, m, d) = expected;
            expected = if d < month_days(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    fn check_str(text: &str, expected: &str) {
        let mut out = Vec::new();
        write_str(&mut out, text);
        let written = std::str::from_utf8(&out).unwrap();
        assert_eq!(written, expected, "text {text:?}");
        // Whatever is written must read back as the same string.
        assert_eq!(serde_json::from_str::<String>(written).unwrap(), text);
    }

    #[test]
    fn strings() {
        check_str("descricao", "\"descricao\"");
        check_str("", "\"\"");
        check_str("éééééééééé", "\"éééééééééé\"");
        check_str("a\"b", "\"a\\\"b\"");
        check_str("a\\b", "\"a\\\\b\"");
        check_str("l1\nl2\r\t", "\"l1\\nl2\\r\\t\"");
        check_str("\u{0}\u{1f}\u{7f}", "\"\\u0000\\u001f\\u007f\"");
        check_str("😀</script>", "\"😀</script>\"");
    }
}
