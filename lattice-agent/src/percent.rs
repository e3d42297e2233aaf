//! Percent-decoding (RFC 3986 `%XX`), one decoder for SigV4's canonical query string,
//! the auth context's query keys and the control API's paths and queries. It works on
//! bytes: a `%` not followed by two hex digits stays as it is, and text that is not
//! ASCII passes through whole (a slice of text could split a character and panic).

/// Decodes `%XX` escapes.
pub fn decode(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Decodes `%XX` escapes into text; bytes that are not UTF-8 become U+FFFD.
pub fn decode_text(text: &str) -> String {
    String::from_utf8_lossy(&decode(text)).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn escapes_decode_and_everything_else_stays() {
        for (text, expected) in [
            ("a%2Fb", &b"a/b"[..]),
            ("%41%42", b"AB"),
            ("%e2%82%ac", "€".as_bytes()),
            ("100%", b"100%"),
            ("%4", b"%4"),
            ("%zz", b"%zz"),
            // Not two hex digits: a sign is no digit here.
            ("%+1", b"%+1"),
            ("a+b", b"a+b"),
            // Text that is not ASCII right after a `%` is kept whole.
            ("%aé", "%aé".as_bytes()),
            ("%é", "%é".as_bytes()),
        ] {
            assert_eq!(decode(text), expected, "{text:?}");
        }
    }
}
