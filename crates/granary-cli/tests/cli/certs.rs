//! `granary admin certs`: a cluster CA and certificates for secure mode,
//! written locally, usable as they are, and never written over.

use std::path::Path;
use std::process::Command;

use granary_common::tls::{Material, Role, TlsFiles};

fn granary(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_granary"))
        // No namenode anywhere: these commands must not need one.
        .env("GRANARY_NAMENODE", "127.0.0.1:1")
        .args(args)
        .output()
        .expect("run granary")
}

fn files(dir: &Path, stem: &str) -> TlsFiles {
    TlsFiles {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
        ca: dir.join("ca.crt"),
    }
}

#[test]
fn init_writes_a_ca_and_certificates_that_load_and_issue_adds_more() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("certs");
    let d = dir.to_str().expect("utf-8");
    let o = granary(&["admin", "certs", "init", "--dir", d, "--client", "alice"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("granary://namenode/nn1") && said.contains("granary://user/alice"),
        "{said}"
    );

    let nn = Material::load(&files(&dir, "namenode")).expect("namenode certificate");
    assert_eq!(
        (
            nn.identity().expect("own").role,
            nn.identity().expect("own").name.as_str()
        ),
        (Role::Namenode, "nn1")
    );
    let dn = Material::load(&files(&dir, "datanode")).expect("datanode certificate");
    assert_eq!(dn.identity().expect("own").role, Role::Datanode);
    assert_eq!(dn.identity().expect("own").name.len(), 36, "named by a uuid");
    let alice = Material::load(&files(&dir, "alice")).expect("user certificate");
    assert_eq!(
        (
            alice.identity().expect("own").role,
            alice.identity().expect("own").name.as_str()
        ),
        (Role::User, "alice")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca.key", "namenode.key", "datanode.key", "alice.key"] {
            let mode = std::fs::metadata(dir.join(key))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{key} is readable by others: {mode:o}");
        }
    }

    // Never over what is there: the CA and every key stay as they were.
    let ca_before = std::fs::read(dir.join("ca.key")).expect("ca.key");
    let o = granary(&["admin", "certs", "init", "--dir", d]);
    assert_eq!(o.status.code(), Some(2), "usage error");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("never replaces"),
        "{o:?}"
    );
    assert_eq!(std::fs::read(dir.join("ca.key")).expect("ca.key"), ca_before);

    // One more datanode, signed by the same CA.
    let o = granary(&[
        "admin",
        "certs",
        "issue",
        "--dir",
        d,
        "datanode",
        "0b6c3a52-dn-4",
        "--host",
        "10.0.0.4",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dn4 = Material::load(&files(&dir, "0b6c3a52-dn-4")).expect("issued certificate");
    assert_eq!(
        dn4.identity().expect("own").uri(),
        "granary://datanode/0b6c3a52-dn-4"
    );
    let o = granary(&[
        "admin",
        "certs",
        "issue",
        "--dir",
        d,
        "datanode",
        "0b6c3a52-dn-4",
        "--host",
        "h",
    ]);
    assert!(!o.status.success(), "replaced an issued certificate");
    // A server certificate needs the hosts it is reached by; a name may not hold a '/'.
    let o = granary(&["admin", "certs", "issue", "--dir", d, "namenode", "nn2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--host"), "{o:?}");
    let o = granary(&["admin", "certs", "issue", "--dir", d, "user", "../etc/x"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    // Without a CA there: the missing file is named.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let o = granary(&[
        "admin",
        "certs",
        "issue",
        "--dir",
        empty.to_str().expect("utf-8"),
        "user",
        "bob",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("ca.crt"), "{o:?}");
}
