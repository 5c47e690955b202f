//! Certificates for every TLS endpoint (QUIC, WebTransport, and wss:// when enabled): the configured PEM
//! chain and key, or else a development certificate made at start.
//!
//! A development certificate is what browsers accept through `serverCertificateHashes`: ECDSA P-256,
//! valid for less than 14 days. Its SHA-256 is served at `GET /cert-hash`. One resolver hands the current
//! certificate to every new handshake, so a renewed development certificate or changed PEM files take
//! effect without touching established sessions. A development certificate's successor is made a day
//! before it takes over and listed at `/cert-hash` with it, so that a page loaded in that day pins both
//! and keeps WebTransport across the replacement.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::TlsConfig;
use crate::data_dir::{DataDir, DataDirError};

/// The development certificate's file in the data directory.
const KEPT_FILE: &str = "development-certificate.json";
/// Its announced successor's.
const NEXT_FILE: &str = "development-certificate-next.json";

/// How long a development certificate is valid: under the 14 days browsers allow for pinned hashes.
const DEVELOPMENT_VALIDITY: Duration = Duration::from_secs(13 * 24 * 3600);
/// A development certificate is replaced once it has less than this left.
const RENEW_BEFORE: Duration = Duration::from_secs(3 * 24 * 3600);
/// A development certificate's successor is made and listed at /cert-hash this long before it takes over.
const ANNOUNCE_BEFORE: Duration = Duration::from_secs(24 * 3600);
/// Clock skew allowed for at the start of a development certificate's validity.
const BACKDATE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {path}: {source}")]
    Certificate {
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("cannot read the private key {path}: {source}")]
    Key {
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the certificate chain {0} is empty")]
    EmptyChain(String),
    #[error("the private key is not usable with the certificate: {0}")]
    UnusableKey(rustls::Error),
    #[error("cannot make a development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot keep the development certificate: {0}")]
    Keep(#[from] DataDirError),
    #[error("cannot read the modification time of {path}: {source}")]
    Metadata {
        path: String,
        source: std::io::Error,
    },
}

/// Where certificates come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateSource {
    /// PEM files, reloaded when they change.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed development certificate for these names (plus localhost, 127.0.0.1 and ::1),
    /// renewed before it expires, and kept in a data directory (if given) so that a restart presents
    /// the same one while it is valid: browsers pinned its hash.
    Development {
        hosts: Vec<String>,
        kept_in: Option<DataDir>,
    },
}

const DEFAULT_CERT: &str = "certs/cert.pem";
const DEFAULT_KEY: &str = "certs/key.pem";

impl CertificateSource {
    /// The configured PEM files, the default ones if both are present, or a development certificate
    /// kept in `data_dir`.
    ///
    /// # Panics
    /// With only one of `tls_cert` and `tls_key`, which [`crate::Config::validate`] refuses.
    pub fn from_config(config: &TlsConfig, data_dir: &DataDir) -> Self {
        match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Self::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            (None, None) => {
                let (cert, key) = (PathBuf::from(DEFAULT_CERT), PathBuf::from(DEFAULT_KEY));
                if cert.exists() && key.exists() {
                    Self::Files { cert, key }
                } else {
                    Self::Development {
                        hosts: config.cert_hosts.clone(),
                        kept_in: Some(data_dir.clone()),
                    }
                }
            }
            _ => {
                unreachable!("a validated configuration has both tls_cert and tls_key, or neither")
            }
        }
    }
}

/// The certificate in use.
struct Current {
    certified: Arc<CertifiedKey>,
    sha256: [u8; 32],
    /// When the certificate stops being valid, read from it when it was loaded; `None` if it could not
    /// be parsed.
    not_after: Option<SystemTime>,
    /// The files' modification times when they were read.
    modified: Option<(SystemTime, SystemTime)>,
}

impl Current {
    /// Whether a development certificate is due for replacement at `now`.
    fn due(&self, now: SystemTime) -> bool {
        self.not_after
            .is_some_and(|not_after| now + RENEW_BEFORE >= not_after)
    }
}

/// A development certificate with the form it is kept in.
struct Development {
    current: Current,
    kept_json: Vec<u8>,
}

/// The certificate in use and, for a development certificate near its replacement, its successor.
struct Held {
    current: Current,
    next: Option<Development>,
}

/// What a refresh did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refreshed {
    Unchanged,
    /// A development certificate's successor was made; /cert-hash lists it too.
    NextMade,
    Replaced,
}

/// The certificate every TLS handshake uses, replaceable while the server runs.
pub struct Certificates {
    source: CertificateSource,
    held: RwLock<Held>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    pub fn load(source: CertificateSource) -> Result<Arc<Self>, TlsError> {
        Self::load_at(source, SystemTime::now())
    }

    /// Loads the certificates as at `now` (a development certificate's validity is judged by it).
    fn load_at(source: CertificateSource, now: SystemTime) -> Result<Arc<Self>, TlsError> {
        let held = match &source {
            CertificateSource::Files { cert, key } => Held {
                current: read_files(cert, key)?,
                next: None,
            },
            CertificateSource::Development { hosts, kept_in } => {
                development(hosts, kept_in.as_ref(), now)?
            }
        };
        Ok(Arc::new(Self {
            source,
            held: RwLock::new(held),
        }))
    }

    pub fn source(&self) -> &CertificateSource {
        &self.source
    }

    /// SHA-256 of the DER leaf certificate, as browsers pin it.
    pub fn sha256(&self) -> [u8; 32] {
        self.read().current.sha256
    }

    /// SHA-256 of the current certificate, then of its announced successor if there is one: what a
    /// page passes as `serverCertificateHashes` to keep working across the replacement.
    pub fn sha256s(&self) -> Vec<[u8; 32]> {
        let held = self.read();
        std::iter::once(held.current.sha256)
            .chain(held.next.as_ref().map(|next| next.current.sha256))
            .collect()
    }

    /// The DER leaf certificate, for clients that trust it directly (tests, tools).
    pub fn leaf_der(&self) -> CertificateDer<'static> {
        self.read().current.certified.cert[0].clone()
    }

    /// When the certificate presented now stops being valid (development certificates and PEM files
    /// alike); `None` if it could not be parsed.
    pub fn not_after(&self) -> Option<SystemTime> {
        self.read().current.not_after
    }

    /// At `now`: a development certificate due for replacement gives way to its announced successor (or
    /// a new one), and one due within a day gets its successor made and listed; PEM files whose
    /// modification time changed are read again.
    pub fn refresh(&self, now: SystemTime) -> Result<Refreshed, TlsError> {
        match &self.source {
            CertificateSource::Development { hosts, kept_in } => {
                let mut held = self.held.write().unwrap_or_else(PoisonError::into_inner);
                if held.current.due(now) {
                    // Kept before it is taken: if keeping fails, the announced successor stays announced.
                    let successor = match held.next.as_ref() {
                        Some(next) if !next.current.due(now) => {
                            keep(kept_in.as_ref(), KEPT_FILE, &next.kept_json)?;
                            held.next.take().expect("just seen")
                        }
                        _ => {
                            let made = make_development(development_names(hosts), now)?;
                            keep(kept_in.as_ref(), KEPT_FILE, &made.kept_json)?;
                            made
                        }
                    };
                    *held = Held {
                        current: successor.current,
                        next: None,
                    };
                    Ok(Refreshed::Replaced)
                } else if held.next.is_none() && held.current.due(now + ANNOUNCE_BEFORE) {
                    let next = make_development(development_names(hosts), now)?;
                    keep(kept_in.as_ref(), NEXT_FILE, &next.kept_json)?;
                    held.next = Some(next);
                    Ok(Refreshed::NextMade)
                } else {
                    Ok(Refreshed::Unchanged)
                }
            }
            CertificateSource::Files { cert, key } => {
                if self.read().current.modified == Some(modification_times(cert, key)?) {
                    return Ok(Refreshed::Unchanged);
                }
                let current = read_files(cert, key)?;
                *self.held.write().unwrap_or_else(PoisonError::into_inner) = Held {
                    current,
                    next: None,
                };
                Ok(Refreshed::Replaced)
            }
        }
    }

    /// A TLS server configuration that always presents the current certificate.
    pub fn server_config(
        self: &Arc<Self>,
        tls13_only: bool,
        alpn: &[&[u8]],
    ) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
            &[&rustls::version::TLS13]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        // Stateless session tickets (keys rotated every 6 hours): a client reconnecting resumes its TLS
        // session without the certificate signature, and the server keeps nothing per client for it
        // (rustls's default is a cache of 256 sessions shared by every client).
        config.ticketer = rustls::crypto::ring::Ticketer::new()
            .expect("random numbers from the operating system");
        config
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Held> {
        self.held.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.read().current.certified.clone())
    }
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> Result<Current, TlsError> {
    let signing_key =
        rustls::crypto::ring::sign::any_supported_type(key).map_err(TlsError::UnusableKey)?;
    let sha256 = ring::digest::digest(&ring::digest::SHA256, &chain[0]);
    let not_after = not_after_of(&chain[0]);
    let certified = CertifiedKey::new(chain, signing_key);
    // A key that does not belong to the certificate would fail every handshake; refusing it keeps the
    // current certificate in place (say, between the two writes of a renewal).
    certified.keys_match().map_err(TlsError::UnusableKey)?;
    Ok(Current {
        sha256: sha256.as_ref().try_into().expect("SHA-256 is 32 bytes"),
        certified: Arc::new(certified),
        not_after,
        modified: None,
    })
}

/// When `leaf` stops being valid, as it says.
fn not_after_of(leaf: &CertificateDer<'_>) -> Option<SystemTime> {
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let seconds = certificate.validity().not_after.timestamp();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

fn read_files(cert_path: &Path, key_path: &Path) -> Result<Current, TlsError> {
    let modified = modification_times(cert_path, key_path)?;
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certificate {
            path: cert_path.display().to_string(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::EmptyChain(cert_path.display().to_string()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|source| TlsError::Key {
        path: key_path.display().to_string(),
        source,
    })?;
    let mut current = certified_key(chain, &key)?;
    current.modified = Some(modified);
    Ok(current)
}

fn modification_times(cert: &Path, key: &Path) -> Result<(SystemTime, SystemTime), TlsError> {
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|metadata| metadata.modified())
            .map_err(|source| TlsError::Metadata {
                path: path.display().to_string(),
                source,
            })
    };
    Ok((modified(cert)?, modified(key)?))
}

/// A development certificate as kept in the data directory.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct KeptCertificate {
    names: Vec<String>,
    /// Seconds since the Unix epoch.
    not_after: u64,
    certificate_pem: String,
    key_pem: String,
}

/// The development certificate to present at `now` and its announced successor: the kept ones if they
/// are for these names and not yet due for replacement (a successor whose predecessor is due takes
/// over); otherwise a new one, kept in its place.
fn development(
    hosts: &[String],
    kept_in: Option<&DataDir>,
    now: SystemTime,
) -> Result<Held, TlsError> {
    let names = development_names(hosts);
    let reuse = |file| kept_in.and_then(|dir| reuse_kept(dir, file, &names, now));
    let (current, next) = match (reuse(KEPT_FILE), reuse(NEXT_FILE)) {
        (Some(current), next) => {
            let next = next.filter(|next| next.current.sha256 != current.current.sha256);
            (current, next)
        }
        (None, Some(successor)) => {
            keep(kept_in, KEPT_FILE, &successor.kept_json)?;
            (successor, None)
        }
        (None, None) => {
            let made = make_development(names, now)?;
            keep(kept_in, KEPT_FILE, &made.kept_json)?;
            (made, None)
        }
    };
    Ok(Held {
        current: current.current,
        next,
    })
}

fn keep(kept_in: Option<&DataDir>, file: &str, json: &[u8]) -> Result<(), TlsError> {
    if let Some(dir) = kept_in {
        dir.write(file, json)?;
    }
    Ok(())
}

fn reuse_kept(dir: &DataDir, file: &str, names: &[String], now: SystemTime) -> Option<Development> {
    let kept_json = dir.read(file).ok()??;
    let kept: KeptCertificate = serde_json::from_slice(&kept_json).ok()?;
    let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(kept.not_after);
    if kept.names != names || now + RENEW_BEFORE >= not_after {
        return None;
    }
    let chain = CertificateDer::pem_slice_iter(kept.certificate_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_slice(kept.key_pem.as_bytes()).ok()?;
    let current = certified_key(chain, &key).ok()?;
    Some(Development { current, kept_json })
}

/// localhost, 127.0.0.1, ::1, then the configured hosts.
fn development_names(hosts: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for host in hosts {
        if !names.contains(host) {
            names.push(host.clone());
        }
    }
    names
}

fn make_development(names: Vec<String>, now: SystemTime) -> Result<Development, TlsError> {
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(names.clone())?;
    let not_before = now - BACKDATE;
    let not_after = not_before + DEVELOPMENT_VALIDITY;
    // Whole seconds, so that the kept time is the certificate's own.
    let not_after = SystemTime::UNIX_EPOCH
        + Duration::from_secs(
            not_after
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
        );
    params.not_before = time::OffsetDateTime::from(not_before);
    params.not_after = time::OffsetDateTime::from(not_after);
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "zajel-signal development certificate",
    );
    let certificate = params.self_signed(&key_pair)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let current = certified_key(vec![certificate.der().clone()], &key)?;
    let kept = KeptCertificate {
        names,
        not_after: not_after
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
        certificate_pem: certificate.pem(),
        key_pem: key_pair.serialize_pem(),
    };
    let kept_json = serde_json::to_vec(&kept).expect("a kept certificate serializes");
    Ok(Development { current, kept_json })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_certificates_suit_browsers() {
        let now = SystemTime::now();
        let current = make_development(development_names(&["signal.example".into()]), now)
            .unwrap()
            .current;
        let valid_for = current
            .not_after
            .unwrap()
            .duration_since(now - BACKDATE)
            .unwrap();
        assert!(valid_for < Duration::from_secs(14 * 24 * 3600));
        assert_eq!(
            current.certified.key.algorithm(),
            rustls::SignatureAlgorithm::ECDSA
        );
        let der = &current.certified.cert[0];
        let expected = ring::digest::digest(&ring::digest::SHA256, der);
        assert_eq!(current.sha256.as_slice(), expected.as_ref());
    }

    #[test]
    fn a_development_certificate_is_announced_a_day_ahead_then_takes_over() {
        let certificates = Certificates::load(CertificateSource::Development {
            hosts: vec![],
            kept_in: None,
        })
        .unwrap();
        let first = certificates.sha256();
        let now = SystemTime::now();
        assert_eq!(certificates.refresh(now).unwrap(), Refreshed::Unchanged);
        assert_eq!(
            certificates.refresh(now + days(8)).unwrap(),
            Refreshed::Unchanged
        );
        assert_eq!(certificates.sha256s(), vec![first]);
        assert_eq!(
            certificates.refresh(now + days(9)).unwrap(),
            Refreshed::NextMade
        );
        let hashes = certificates.sha256s();
        assert_eq!(hashes.len(), 2);
        assert_eq!(hashes[0], first, "the current one first");
        assert_ne!(hashes[1], first);
        assert_eq!(certificates.sha256(), first, "the current one still serves");
        assert_eq!(
            certificates
                .refresh(now + days(9) + Duration::from_secs(3600))
                .unwrap(),
            Refreshed::Unchanged,
            "made once"
        );
        assert_eq!(
            certificates.refresh(now + days(10)).unwrap(),
            Refreshed::Replaced
        );
        assert_eq!(
            certificates.sha256s(),
            vec![hashes[1]],
            "the announced one took over"
        );
    }

    fn days(count: u64) -> Duration {
        Duration::from_secs(count * 24 * 3600)
    }

    #[test]
    fn an_announced_successor_is_listed_again_after_a_restart() {
        let root = std::env::temp_dir().join(format!("zajel-tls-next-{}", std::process::id()));
        let dir = DataDir::open(&root).unwrap();
        let source = || CertificateSource::Development {
            hosts: vec![],
            kept_in: Some(dir.clone()),
        };
        let first = Certificates::load(source()).unwrap();
        let now = SystemTime::now();
        assert_eq!(first.refresh(now + days(9)).unwrap(), Refreshed::NextMade);
        let restarted = Certificates::load(source()).unwrap();
        assert_eq!(restarted.sha256s(), first.sha256s());
        assert_eq!(
            restarted.refresh(now + days(10)).unwrap(),
            Refreshed::Replaced
        );
        assert_eq!(restarted.sha256(), first.sha256s()[1]);
        let restarted_again = Certificates::load(source()).unwrap();
        assert_eq!(
            restarted_again.sha256s(),
            vec![first.sha256s()[1]],
            "the successor is now the kept certificate, listed once"
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_server_down_when_its_certificate_was_due_starts_with_the_announced_successor() {
        let root = std::env::temp_dir().join(format!("zajel-tls-down-{}", std::process::id()));
        let dir = DataDir::open(&root).unwrap();
        let source = || CertificateSource::Development {
            hosts: vec![],
            kept_in: Some(dir.clone()),
        };
        let now = SystemTime::now();
        let before = Certificates::load_at(source(), now).unwrap();
        assert_eq!(before.refresh(now + days(9)).unwrap(), Refreshed::NextMade);
        let announced = before.sha256s()[1];
        // Down from day 9 to day 11: the kept certificate is due at start.
        let after = Certificates::load_at(source(), now + days(11)).unwrap();
        assert_eq!(after.sha256s(), vec![announced]);
        let again = Certificates::load_at(source(), now + days(11)).unwrap();
        assert_eq!(again.sha256(), announced, "and kept as the current one");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_kept_development_certificate_is_presented_again_after_a_restart() {
        let root = std::env::temp_dir().join(format!("zajel-tls-kept-{}", std::process::id()));
        let dir = DataDir::open(&root).unwrap();
        let source = |hosts: &[&str]| CertificateSource::Development {
            hosts: hosts.iter().map(|host| host.to_string()).collect(),
            kept_in: Some(dir.clone()),
        };
        let first = Certificates::load(source(&["a.example"])).unwrap();
        let restarted = Certificates::load(source(&["a.example"])).unwrap();
        assert_eq!(restarted.sha256(), first.sha256());
        let other_names = Certificates::load(source(&["b.example"])).unwrap();
        assert_ne!(
            other_names.sha256(),
            first.sha256(),
            "made for the new names"
        );
        // Renewal keeps the new certificate too.
        let renewal = SystemTime::now() + Duration::from_secs(11 * 24 * 3600);
        assert_eq!(other_names.refresh(renewal).unwrap(), Refreshed::Replaced);
        let restarted = Certificates::load(source(&["b.example"])).unwrap();
        assert_eq!(restarted.sha256(), other_names.sha256());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn pem_files_are_reloaded_when_they_change() {
        let dir = std::env::temp_dir().join(format!("zajel-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let write = |name: &str| {
            let made = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
            std::fs::write(&cert, made.cert.pem()).unwrap();
            std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
            made.cert.der().clone()
        };
        let first = write("one.example");
        let certificates = Certificates::load(CertificateSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        })
        .unwrap();
        assert_eq!(certificates.leaf_der(), first);
        assert_eq!(
            certificates.refresh(SystemTime::now()).unwrap(),
            Refreshed::Unchanged
        );
        // Make sure the new files get a different modification time.
        let later = SystemTime::now() + Duration::from_secs(5);
        let second = write("two.example");
        for path in [&cert, &key] {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(later)
                .unwrap();
        }
        assert_eq!(
            certificates.refresh(SystemTime::now()).unwrap(),
            Refreshed::Replaced
        );
        assert_eq!(certificates.leaf_der(), second);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = std::env::temp_dir().join(format!("zajel-tls-mismatch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let one = rcgen::generate_simple_self_signed(vec!["one.example".into()]).unwrap();
        let two = rcgen::generate_simple_self_signed(vec!["two.example".into()]).unwrap();
        std::fs::write(dir.join("cert.pem"), one.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), two.signing_key.serialize_pem()).unwrap();
        let result = Certificates::load(CertificateSource::Files {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        });
        assert!(
            matches!(result, Err(TlsError::UnusableKey(_))),
            "{result:?}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn missing_files_are_a_clear_error() {
        let error = Certificates::load(CertificateSource::Files {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        })
        .unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/cert.pem"),
            "{error}"
        );
    }
}
