//! Numbers in decimal without the formatting machinery: the request path writes several
//! per request (access log fields, timestamps, a context key), and `core::fmt` costs
//! more than the digits.

/// `value`'s decimal digits, at the end of `buf`.
fn digits(buf: &mut [u8; 20], mut value: u64) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    &buf[start..]
}

/// `value` in decimal, in `buf`.
pub fn to_str(buf: &mut [u8; 20], value: u64) -> &str {
    std::str::from_utf8(digits(buf, value)).unwrap_or_default()
}

/// `value` in decimal, appended to `out`.
pub fn push(out: &mut String, value: u64) {
    out.push_str(to_str(&mut [0; 20], value));
}

/// `value` in decimal, appended to bytes (no UTF-8 check: digits are ASCII).
pub fn push_bytes(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(digits(&mut [0; 20], value));
}

/// `value`'s last `digits.len()` decimal digits into `digits`, zero-padded.
pub fn put_padded(digits: &mut [u8], mut value: u64) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_as_the_formatter_writes_them() {
        for n in [0, 7, 10, 65_535, 1_000_000, u64::MAX] {
            let mut out = String::new();
            push(&mut out, n);
            assert_eq!(out, n.to_string());
            let mut bytes = Vec::new();
            push_bytes(&mut bytes, n);
            assert_eq!(bytes, n.to_string().into_bytes());
        }
        let mut padded = [0u8; 4];
        put_padded(&mut padded, 7);
        assert_eq!(&padded, b"0007");
        put_padded(&mut padded, 123_456);
        assert_eq!(&padded, b"3456");
    }
}
