//! Dates for the `Date*` operators: the W3C profile of ISO 8601 that IAM accepts, or
//! epoch seconds. A date library would be more than this needs: the formats are few and
//! fixed, and the request side (`aws:CurrentTime`) is parsed on every evaluation, so the
//! parser must not allocate.

/// An instant, in nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Instant(i128);

const NANOS_PER_SECOND: i128 = 1_000_000_000;

impl Instant {
    pub(crate) fn from_epoch_seconds(seconds: i64) -> Self {
        Self(i128::from(seconds) * NANOS_PER_SECOND)
    }
}

/// Reads one of:
/// - `YYYY`, `YYYY-MM`, `YYYY-MM-DD` (the start of that year, month or day, UTC);
/// - `YYYY-MM-DDThh:mmTZD`, `YYYY-MM-DDThh:mm:ssTZD`, `YYYY-MM-DDThh:mm:ss.sTZD` with
///   any number of fraction digits, where TZD is `Z`, `+hh:mm` or `-hh:mm`;
/// - epoch seconds: five or more digits (four digits are a year, as in ISO 8601).
pub(crate) fn parse(text: &str) -> Option<Instant> {
    let bytes = text.as_bytes();
    if bytes.len() > 4 && bytes.iter().all(u8::is_ascii_digit) {
        return text.parse::<i64>().ok().map(Instant::from_epoch_seconds);
    }
    let mut r = Reader { bytes, at: 0 };
    let year = r.digits(4)?;
    let (mut month, mut day) = (1, 1);
    let mut seconds_of_day: i64 = 0;
    let mut nanos: i64 = 0;
    let mut offset_seconds: i64 = 0;
    if r.eat(b'-') {
        month = r.digits(2)?;
        if r.eat(b'-') {
            day = r.digits(2)?;
            if r.eat(b'T') {
                let hour = r.digits(2)?;
                r.expect(b':')?;
                let minute = r.digits(2)?;
                let mut second = 0;
                if r.eat(b':') {
                    second = r.digits(2)?;
                    if r.eat(b'.') {
                        nanos = r.fraction()?;
                    }
                }
                if hour > 23 || minute > 59 || second > 59 {
                    return None;
                }
                seconds_of_day = hour * 3600 + minute * 60 + second;
                offset_seconds = r.zone()?;
            }
        }
    }
    if !r.done() || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + seconds_of_day - offset_seconds;
    Some(Instant(
        i128::from(seconds) * NANOS_PER_SECOND + i128::from(nanos),
    ))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.bytes.get(self.at) == Some(&byte);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// Exactly `n` ASCII digits.
    fn digits(&mut self, n: usize) -> Option<i64> {
        let run = self.bytes.get(self.at..self.at + n)?;
        let mut value = 0;
        for &b in run {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + i64::from(b - b'0');
        }
        self.at += n;
        Some(value)
    }

    /// One or more digits after the decimal point, as nanoseconds (digits past the
    /// ninth are read and dropped).
    fn fraction(&mut self) -> Option<i64> {
        let start = self.at;
        let mut nanos = 0;
        let mut scale = 100_000_000;
        while let Some(&b) = self.bytes.get(self.at).filter(|b| b.is_ascii_digit()) {
            nanos += i64::from(b - b'0') * scale;
            scale /= 10;
            self.at += 1;
        }
        (self.at > start).then_some(nanos)
    }

    /// `Z` or `±hh:mm`, as seconds east of UTC.
    fn zone(&mut self) -> Option<i64> {
        if self.eat(b'Z') {
            return Some(0);
        }
        let sign = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            return None;
        };
        let hours = self.digits(2)?;
        self.expect(b':')?;
        let minutes = self.digits(2)?;
        (hours <= 23 && minutes <= 59).then_some(sign * (hours * 3600 + minutes * 60))
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> Option<i128> {
        parse(text).map(|i| i.0 / NANOS_PER_SECOND)
    }

    #[test]
    fn formats() {
        let cases: &[(&str, Option<i128>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2026-11-24T23:40:07Z", Some(1_795_563_607)),
            ("2026-11-24T23:40Z", Some(1_795_563_600)),
            ("2026-11-25T01:40:07+02:00", Some(1_795_563_607)),
            ("2026-11-24T20:10:07-03:30", Some(1_795_563_607)),
            ("2026-11-24", Some(1_795_478_400)),
            ("2026-11", Some(1_793_491_200)),
            ("2026", Some(1_767_225_600)),
            ("2000-02-29T00:00:00Z", Some(951_782_400)),
            ("1969-12-31T23:59:59Z", Some(-1)),
            ("1795563607", Some(1_795_563_607)),
            ("2001-02-29", None),
            ("2026-13-01", None),
            ("2026-00-01", None),
            ("2026-11-31", None),
            ("2026-11-24T24:00:00Z", None),
            ("2026-11-24T23:60:00Z", None),
            ("2026-11-24T23:40:07", None),
            ("2026-11-24T23:40:07z", None),
            ("2026-11-24 23:40:07Z", None),
            ("2026-11-24T23:40:07.Z", None),
            ("2026-11-24T23:40:07+0200", None),
            ("26-11-24", None),
            ("yesterday", None),
            ("", None),
        ];
        for &(text, expected) in cases {
            assert_eq!(secs(text), expected, "{text:?}");
        }
    }

    #[test]
    fn fractions_order_instants() {
        let a = parse("2026-11-24T23:40:07.25Z").unwrap();
        let b = parse("2026-11-24T23:40:07.250000000001Z").unwrap();
        let c = parse("2026-11-24T23:40:07.3Z").unwrap();
        assert_eq!(a, b);
        assert!(a < c);
        assert_eq!(a.0 % NANOS_PER_SECOND, 250_000_000);
    }
}
