//! The request path in its normal form, which the rules, the policies (`Resource` is
//! the service's ARN and the path, and `vpc-lattice-svcs:RequestPath`) and the target
//! all see. Without it, a path that a Deny does not match (`/%61dmin/users`,
//! `//admin`, `/public/../admin`) could reach a target that reads it as the path the
//! Deny names, since web servers decode and normalize before they route.
//!
//! The steps, as Envoy's `normalize_path` and `merge_slashes` take them:
//! 1. percent-escapes of unreserved characters decoded (RFC 3986 6.2.2.2: `%61` is
//!    `a`, `%2E` is `.`); other escapes (`%2F`, `%20`) stay, so a `/` that was data
//!    stays data;
//! 2. runs of `/` merged into one;
//! 3. `.` and `..` segments removed (RFC 3986 5.2.4), never above the root.
//!
//! A SigV4 signature is checked on the path as the caller sent it (the signer signed
//! that one), which the normal form is made from.

/// `path` in its normal form; `None` when it is that already (the usual case, found
/// with one scan and no allocation).
pub fn normalize(path: &str) -> Option<String> {
    // `*` (OPTIONS *) and other targets without a leading `/` are no path to normalize.
    if !path.starts_with('/') || is_normal(path) {
        return None;
    }
    let decoded = decode_unreserved(path);
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            // Merged slashes; the leading one is put back below.
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
        // A path ending in a segment that went (`/a/.`, `/a/..`, `/a//`) ends with `/`.
        if i == last && i > 0 && matches!(*segment, "" | "." | "..") && !out.is_empty() {
            out.push("");
        }
    }
    let mut normal = String::with_capacity(decoded.len());
    normal.push('/');
    normal.push_str(&out.join("/"));
    (normal != path).then_some(normal)
}

/// Whether nothing in `path` (which starts with `/`) would change: no `%`, no `//`,
/// no `.` or `..` segment.
fn is_normal(path: &str) -> bool {
    let bytes = path.as_bytes();
    if memchr::memchr(b'%', bytes).is_some() {
        return false;
    }
    !bytes.windows(2).any(|w| w == b"//") && path.split('/').all(|s| s != "." && s != "..")
}

/// `%XX` escapes of unreserved characters (ALPHA, DIGIT, `-`, `.`, `_`, `~`) decoded;
/// every other byte as it was.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let b = (hi * 16 + lo) as u8;
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    // Only ASCII bytes were made from escapes: the text stays what it was, UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn paths_take_one_normal_form() {
        for (path, normal) in [
            ("/orders", None),
            ("/orders/7/", None),
            ("/", None),
            ("/a.b/c..d/.e", None),
            ("/%61dmin/users", Some("/admin/users")),
            ("/%2e%2E/admin", Some("/admin")),
            ("//admin", Some("/admin")),
            ("/a//b///c", Some("/a/b/c")),
            ("/./admin", Some("/admin")),
            ("/public/../admin/users", Some("/admin/users")),
            ("/public/%2e%2e/admin", Some("/admin")),
            ("/../../etc", Some("/etc")),
            ("/a/b/..", Some("/a/")),
            ("/a/.", Some("/a/")),
            ("/a/b//", Some("/a/b/")),
            // Escapes of reserved characters and others stay, as they were written.
            ("/files/a%2Fb", None),
            ("/files/a%2fb", None),
            ("/with%20space", None),
            ("/%7Euser", Some("/~user")),
            ("/bad%zzescape", None),
            ("/trailing%", None),
            ("/trailing%4", None),
            ("*", None),
        ] {
            assert_eq!(normalize(path).as_deref(), normal, "{path:?}");
        }
    }
}
