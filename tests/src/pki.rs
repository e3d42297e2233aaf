//! Test certificates made with the `openssl` CLI: CAs, and server or client
//! certificates they sign, with DNS and URI SANs. Keys are P-256; everything is valid
//! for one day.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// A folder of test CAs and certificates.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

/// A certificate and its key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("create the PKI folder");
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A self-signed CA `<stem>.pem` / `<stem>.key` (made once).
    pub fn ca(&self, stem: &str, subject: &str) -> Issued {
        let issued = self.paths(stem);
        if !issued.cert.exists() {
            self.openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-noenc",
                "-keyout",
                &format!("{stem}.key"),
                "-out",
                &format!("{stem}.pem"),
                "-days",
                "1",
                "-subj",
                subject,
            ]);
        }
        issued
    }

    /// A certificate `<stem>.pem` / `<stem>.key` signed by the CA `ca` (a stem made by
    /// [`Pki::ca`]), with subject `subject` and `sans` (`DNS:name`, `URI:spiffe://...`).
    pub fn issue(&self, ca: &str, stem: &str, subject: &str, sans: &[&str]) -> Issued {
        let ext = format!("{stem}.ext");
        let mut text = String::new();
        if !sans.is_empty() {
            text.push_str(&format!("subjectAltName={}\n", sans.join(",")));
        }
        std::fs::write(self.dir.join(&ext), text).expect("write the extensions file");
        let (key, csr, pem) = (
            format!("{stem}.key"),
            format!("{stem}.csr"),
            format!("{stem}.pem"),
        );
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-noenc",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            subject,
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "1",
            "-extfile",
            &ext,
        ]);
        self.paths(stem)
    }

    fn paths(&self, stem: &str) -> Issued {
        Issued {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        }
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .current_dir(&self.dir)
            .args(args)
            .output()
            .expect("run openssl (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
