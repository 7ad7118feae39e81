//! JSON output written by hand into caller-owned buffers.
//!
//! The response bodies have a fixed shape, so writing them directly is both simpler and cheaper
//! than building a `serde_json::Value`: no allocation per request once the buffer has grown to
//! its working size. Integers are formatted without going through `core::fmt`.

use crate::ledger::{rfc3339_us, Kind, Statement};

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

/// Appends `timestamp_us` (microseconds since the Unix epoch, UTC) as RFC 3339 with six
/// fractional digits, for example `2024-01-17T02:34:41.217753Z`.
pub fn write_timestamp_us(out: &mut Vec<u8>, timestamp_us: i64) {
    out.extend_from_slice(&rfc3339_us(timestamp_us));
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

    #[track_caller]
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

    #[track_caller]
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

    #[track_caller]
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
