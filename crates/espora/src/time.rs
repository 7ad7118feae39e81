//! Timestamps: microseconds since the Unix epoch, read from the clock and rendered as RFC 3339 in
//! UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// Current time in microseconds since the Unix epoch, UTC; the epoch for a clock set before it.
pub fn now_us() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// Length of a rendered timestamp: `2024-01-17T02:34:41.217753Z`.
pub const RFC3339_US_LEN: usize = 27;

/// Renders `us` (microseconds since the Unix epoch, UTC) as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
/// Years outside 0..=9999 are clamped, since RFC 3339 has four-digit years.
pub fn rfc3339_us(us: i64) -> [u8; RFC3339_US_LEN] {
    const MIN_US: i64 = -62_167_219_200_000_000; // 0000-01-01T00:00:00Z
    const MAX_US: i64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999Z
    let us = us.clamp(MIN_US, MAX_US);
    let seconds = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000) as u32;
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);

    let mut out = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut out[0..4], year as u32);
    put_digits(&mut out[5..7], month);
    put_digits(&mut out[8..10], day);
    put_digits(&mut out[11..13], second_of_day / 3600);
    put_digits(&mut out[14..16], second_of_day / 60 % 60);
    put_digits(&mut out[17..19], second_of_day % 60);
    put_digits(&mut out[20..26], micros);
    out
}

fn put_digits(out: &mut [u8], mut value: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day), using the
/// 400-year era decomposition (eras of 146,097 days starting on March 1st).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(us: i64, expected: &str) {
        assert_eq!(
            std::str::from_utf8(&rfc3339_us(us)).unwrap(),
            expected,
            "{us}"
        );
    }

    #[test]
    fn renders_known_instants() {
        check(0, "1970-01-01T00:00:00.000000Z");
        check(1_705_458_881_217_753, "2024-01-17T02:34:41.217753Z");
        check(951_782_400_000_000, "2000-02-29T00:00:00.000000Z");
        check(1_709_164_799_999_999, "2024-02-28T23:59:59.999999Z");
        check(1_709_164_800_000_000, "2024-02-29T00:00:00.000000Z");
        check(4_102_444_800_000_000, "2100-01-01T00:00:00.000000Z");
        check(-1, "1969-12-31T23:59:59.999999Z");
        check(i64::MAX, "9999-12-31T23:59:59.999999Z");
        check(i64::MIN, "0000-01-01T00:00:00.000000Z");
    }

    #[test]
    fn every_day_of_four_centuries_round_trips_through_the_calendar() {
        let mut expected = (1970i64, 1u32, 1u32);
        for days in 0..146_097 {
            assert_eq!(civil_from_days(days), expected, "day {days}");
            let (y, m, d) = expected;
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let month_days = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            expected = if d < month_days[m as usize - 1] {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }
}
