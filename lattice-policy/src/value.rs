//! Readers for the typed condition values: numbers, booleans, base64, IP ranges. The
//! same readers serve the policy side (once, at parse time, where a failure refuses the
//! policy) and the request side (per evaluation, where a failure is a non-match), so
//! they do not allocate.

use std::net::IpAddr;

use ipnet::IpNet;

/// A decimal number: an optional sign, digits, and an optional fraction (`10`, `-1.5`,
/// `.5`). Unlike `f64::from_str` it refuses `inf`, `NaN` and exponents, which IAM's
/// numeric operators do not read.
pub(crate) fn number(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let has_digit = !whole.is_empty() || !fraction.is_empty();
    if has_digit && digits(whole) && digits(fraction) && !unsigned.ends_with('.') {
        text.parse().ok()
    } else {
        None
    }
}

/// `true` or `false`, in any case.
pub(crate) fn boolean(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// A CIDR block, or a single address (IAM reads `203.0.113.7` as `/32`, and an IPv6
/// address as `/128`).
pub(crate) fn ip_range(text: &str) -> Option<IpNet> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(net.trunc());
    }
    text.parse::<IpAddr>().ok().map(IpNet::from)
}

/// Standard base64 (RFC 4648 alphabet, `=` padding optional).
pub(crate) fn base64(text: &str) -> Option<Vec<u8>> {
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 || (text.len() != body.len() && text.len() % 4 != 0) {
        return None;
    }
    let sextet = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    };
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.as_bytes().chunks(4) {
        let mut bits = 0u32;
        for &c in chunk {
            bits = (bits << 6) | sextet(c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(bits >> 16) as u8, (bits >> 8) as u8, bits as u8]),
            3 => out.extend_from_slice(&[(bits >> 10) as u8, (bits >> 2) as u8]),
            2 => out.push((bits >> 4) as u8),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        for (text, expected) in [
            ("10", Some(10.0)),
            ("-1.5", Some(-1.5)),
            ("+2", Some(2.0)),
            (".5", Some(0.5)),
            ("007", Some(7.0)),
            ("1.", None),
            ("", None),
            ("-", None),
            ("1e3", None),
            ("inf", None),
            ("NaN", None),
            ("0x10", None),
            ("1 ", None),
        ] {
            assert_eq!(number(text), expected, "{text:?}");
        }
    }

    #[test]
    fn booleans_and_ranges() {
        assert_eq!(boolean("TRUE"), Some(true));
        assert_eq!(boolean("false"), Some(false));
        assert_eq!(boolean("yes"), None);
        assert_eq!(
            ip_range("10.1.2.3/8").map(|n| n.to_string()),
            Some("10.0.0.0/8".into())
        );
        assert_eq!(
            ip_range("10.1.2.3").map(|n| n.to_string()),
            Some("10.1.2.3/32".into())
        );
        assert_eq!(ip_range("2001:DB8::1").map(|n| n.prefix_len()), Some(128));
        assert_eq!(ip_range("10.0.0.0/33"), None);
        assert_eq!(ip_range("nope"), None);
    }

    #[test]
    fn base64_decodes() {
        assert_eq!(
            base64("QmluYXJ5VmFsdWVJbkJhc2U2NA==").as_deref(),
            Some(&b"BinaryValueInBase64"[..])
        );
        assert_eq!(base64("aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(base64("aGk").as_deref(), Some(&b"hi"[..]));
        assert_eq!(base64("").as_deref(), Some(&b""[..]));
        assert_eq!(base64("a"), None);
        assert_eq!(base64("aGk==="), None);
        assert_eq!(base64("a*k="), None);
    }
}
