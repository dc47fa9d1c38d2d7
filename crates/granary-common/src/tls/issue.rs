//! A cluster CA and the certificates it signs (rcgen): what
//! `granary admin certs init` and `issue` write. ECDSA P-256 keys; each
//! certificate names its holder with one `granary://ROLE/NAME` URI and is
//! valid for the host names and addresses given (servers are reached by
//! them).

use std::io::Write;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};

use super::{Peer, Role, TlsError};

/// How long certificates written here are valid.
const VALID_DAYS: i64 = 825;
/// How long the CA is valid.
const CA_VALID_DAYS: i64 = 3650;

fn failed(what: &str, e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(format!("cannot {what}: {e}"))
}

/// The cluster CA: its certificate and the key it signs with.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

/// A certificate and its key, in PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // A little slack for clocks a minute apart.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

/// Writes `contents` to `path`, readable by its owner alone when `secret`.
/// Never replaces a file: a key overwritten by mistake is a cluster locked out.
fn write_new(path: &Path, contents: &str, secret: bool) -> Result<(), TlsError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let _ = secret;
    let mut f = opts.open(path).map_err(|e| TlsError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| TlsError::Read {
            path: path.to_path_buf(),
            source: e,
        })
}

impl Authority {
    /// A new CA named for `cluster`.
    pub fn new(cluster: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(|e| failed("make a key", e))?;
        let key_pem = key.serialize_pem();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Granary");
        dn.push(DnType::CommonName, format!("Granary CA {cluster}"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, CA_VALID_DAYS);
        let cert_pem = params
            .self_signed(&key)
            .map_err(|e| failed("sign the CA", e))?
            .pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_pem,
            key_pem,
        })
    }

    /// The CA written earlier by [`Authority::write`] to `dir`.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| TlsError::Read { path, source })
        };
        let (cert_pem, key_pem) = (read("ca.crt")?, read("ca.key")?);
        let bad = |reason: String| TlsError::Invalid {
            path: dir.join("ca.key"),
            reason,
        };
        let key = KeyPair::from_pem(&key_pem).map_err(|e| bad(format!("not a CA key: {e}")))?;
        let issuer: Issuer<'static, KeyPair> = Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(|e| bad(format!("does not go with ca.crt: {e}")))?;
        Ok(Self {
            issuer,
            cert_pem,
            key_pem,
        })
    }

    /// The CA's certificate, in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes `ca.crt` and `ca.key` (owner-only) to `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), TlsError> {
        self.write_cert(dir)?;
        write_new(&dir.join("ca.key"), &self.key_pem, true)
    }

    /// Writes `ca.crt` alone (what every node needs of the CA).
    pub fn write_cert(&self, dir: &Path) -> Result<(), TlsError> {
        let path = dir.join("ca.crt");
        if path.exists() {
            return Ok(());
        }
        write_new(&path, &self.cert_pem, false)
    }

    /// A certificate for `peer`, valid for `hosts` (names or addresses;
    /// a server's clients check it against the one they dialled).
    pub fn issue(&self, peer: &Peer, hosts: &[String]) -> Result<Issued, TlsError> {
        let key = KeyPair::generate().map_err(|e| failed("make a key", e))?;
        let mut params = CertificateParams::new(hosts.to_vec()).map_err(|e| failed("name the hosts", e))?;
        let uri = peer.uri().try_into().map_err(|e| failed("name the holder", e))?;
        params.subject_alt_names.push(SanType::URI(uri));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Granary");
        dn.push(DnType::CommonName, peer.name.clone());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match peer.role {
            Role::User => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Role::Namenode | Role::Datanode => {
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ]
            }
        };
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, VALID_DAYS);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| failed("sign the certificate", e))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl Issued {
    /// Writes `NAME.crt` and `NAME.key` (owner-only) to `dir`; refuses to
    /// replace either.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(), TlsError> {
        write_new(&dir.join(format!("{name}.crt")), &self.cert_pem, false)?;
        write_new(&dir.join(format!("{name}.key")), &self.key_pem, true)
    }
}
