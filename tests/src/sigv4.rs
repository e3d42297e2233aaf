//! Requests signed by botocore (AWS's Python SDK signer), from the Python environment
//! `cargo xtask setup` makes (`target/lattice-py`, botocore from PyPI).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

/// The Python interpreter with botocore; panics, saying how to get it, when missing.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("LATTICE_PYTHON") {
        return PathBuf::from(p);
    }
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/lattice-py/bin/python3");
    assert!(
        python.exists(),
        "{} is missing: `cargo xtask setup` makes it (botocore from PyPI), or set LATTICE_PYTHON",
        python.display()
    );
    python
}

/// How to sign.
#[derive(Debug, Clone)]
pub struct Signing<'a> {
    pub key_id: &'a str,
    pub secret_file: &'a Path,
    pub region: &'a str,
    pub body: Option<&'a str>,
    pub unsigned_payload: bool,
    /// Sign as if the clock were this many seconds behind.
    pub age_secs: u64,
    /// Extra headers to sign (`name`, `value`).
    pub headers: &'a [(&'a str, &'a str)],
}

impl<'a> Signing<'a> {
    /// Signing with this access key, in the region `local`, nothing else set.
    pub fn new(key_id: &'a str, secret_file: &'a Path) -> Signing<'a> {
        Signing {
            key_id,
            secret_file,
            region: "local",
            body: None,
            unsigned_payload: false,
            age_secs: 0,
            headers: &[],
        }
    }
}

/// The headers botocore's SigV4Auth adds to `method url` (Authorization, X-Amz-Date,
/// and the ones given).
pub fn sign(method: &str, url: &str, s: &Signing<'_>) -> BTreeMap<String, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/sign_sigv4.py");
    let mut cmd = Command::new(python());
    cmd.arg(script)
        .args([method, url, "--key-id", s.key_id, "--secret-file"])
        .arg(s.secret_file)
        .args([
            "--region",
            if s.region.is_empty() {
                "local"
            } else {
                s.region
            },
        ]);
    if let Some(body) = s.body {
        cmd.args(["--body", body]);
    }
    if s.unsigned_payload {
        cmd.arg("--unsigned-payload");
    }
    if s.age_secs > 0 {
        cmd.args(["--age", &s.age_secs.to_string()]);
    }
    for (name, value) in s.headers {
        cmd.args(["--header", &format!("{name}:{value}")]);
    }
    let out = cmd.output().expect("run the botocore signer");
    assert!(
        out.status.success(),
        "botocore signer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the signer prints a JSON object")
}
