//! Wall-clock times in the text forms lattice reads and writes: SigV4's
//! `YYYYMMDDTHHMMSSZ` and ISO 8601 UTC (policies' `aws:CurrentTime`, access logs), by
//! plain calendar arithmetic (no time zone is ever involved: everything is UTC).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let s = text.get(range)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// `YYYYMMDDTHHMMSSZ` of a time.
pub fn format_amz_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `2026-11-24T23:40:07Z`.
pub fn iso8601(t: SystemTime) -> String {
    let text = iso8601_ms_text(t);
    // The template without `.123`.
    let mut out = String::with_capacity(20);
    out.push_str(std::str::from_utf8(&text[..19]).unwrap_or_default());
    out.push('Z');
    out
}

/// `2026-11-24T23:40:07Z` on the stack: the auth phase makes one per request.
pub fn iso8601_text(t: SystemTime) -> [u8; 20] {
    let text = iso8601_ms_text(t);
    let mut out = [b'Z'; 20];
    out[..19].copy_from_slice(&text[..19]);
    out
}

/// `2026-11-24T23:40:07.123Z`.
pub fn iso8601_ms(t: SystemTime) -> String {
    std::str::from_utf8(&iso8601_ms_text(t))
        .unwrap_or_default()
        .to_owned()
}

/// `2026-11-24T23:40:07.123Z` appended to bytes, with no allocation and no UTF-8 check
/// (the text is ASCII): access log records carry two per request.
pub fn write_iso8601_ms_bytes(out: &mut Vec<u8>, t: SystemTime) {
    out.extend_from_slice(&iso8601_ms_text(t));
}

thread_local! {
    /// The last second this thread wrote, as text: a busy thread writes many times per
    /// second (two per access log record), and only the milliseconds change.
    static LAST_SECOND: std::cell::Cell<(u64, [u8; 24])> =
        const { std::cell::Cell::new((u64::MAX, [0; 24])) };
}

/// `2026-11-24T23:40:07.123Z`, digit by digit into a template (no formatting machinery).
fn iso8601_ms_text(t: SystemTime) -> [u8; 24] {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let mut text = match LAST_SECOND.try_with(std::cell::Cell::get) {
        Ok((last, text)) if last == secs => text,
        _ => {
            let text = second_text(secs);
            let _ = LAST_SECOND.try_with(|last| last.set((secs, text)));
            text
        }
    };
    crate::decimal::put_padded(&mut text[20..23], u64::from(since.subsec_millis()));
    text
}

/// `2026-11-24T23:40:07.000Z` for `secs` since the epoch.
fn second_text(secs: u64) -> [u8; 24] {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    let mut text = *b"0000-00-00T00:00:00.000Z";
    for (range, value) in [
        (0..4, y.clamp(0, 9999) as u64),
        (5..7, u64::from(m)),
        (8..10, u64::from(d)),
        (11..13, rem / 3600),
        (14..16, rem % 3600 / 60),
        (17..19, rem % 60),
    ] {
        crate::decimal::put_padded(&mut text[range], value);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_round_trip() {
        for d in [
            "19700101T000000Z",
            "20000229T120000Z",
            "20261124T235000Z",
            "21000301T000001Z",
        ] {
            assert_eq!(format_amz_date(parse_amz_date(d).unwrap()), d);
        }
        assert!(parse_amz_date("20261324T000000Z").is_none());
        assert!(parse_amz_date("2026-11-24T00:00:00Z").is_none());
        let t = parse_amz_date("20261124T234007Z").unwrap() + Duration::from_millis(5);
        assert_eq!(iso8601(t), "2026-11-24T23:40:07Z");
        assert_eq!(iso8601_ms(t), "2026-11-24T23:40:07.005Z");
        let t = parse_amz_date("19991231T235959Z").unwrap() + Duration::from_millis(999);
        assert_eq!(iso8601_ms(t), "1999-12-31T23:59:59.999Z");
        // The same second again (the thread's cached text), then the next one.
        assert_eq!(
            iso8601_ms(t - Duration::from_millis(998)),
            "1999-12-31T23:59:59.001Z"
        );
        assert_eq!(
            iso8601_ms(t + Duration::from_millis(1)),
            "2000-01-01T00:00:00.000Z"
        );
        assert_eq!(iso8601_ms(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let mut bytes = Vec::new();
        write_iso8601_ms_bytes(&mut bytes, UNIX_EPOCH);
        assert_eq!(bytes, b"1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(t), "1999-12-31T23:59:59Z");
        assert_eq!(&iso8601_text(t), b"1999-12-31T23:59:59Z");
    }
}
