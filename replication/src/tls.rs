//! Mutual TLS for replication: PEM loading, QUIC endpoint configuration,
//! and development certificates.
//!
//! The primary accepts only followers whose client certificate chains to
//! the configured CA, or whose certificate is one of the pinned ones; the
//! follower verifies the primary's certificate against the CA for the
//! configured server name. TLS 1.3 only (QUIC requires it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::{Deserialize, Serialize};

use crate::protocol::ALPN;
use crate::ReplError;

/// Where an endpoint's TLS material lives (PEM files).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TlsConfig {
    /// This endpoint's certificate chain (leaf first).
    pub cert: PathBuf,
    /// This endpoint's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificate(s) the peer's certificate must chain to.
    pub ca: PathBuf,
    /// Primary only: client certificates accepted as they are, in addition
    /// to those chaining to `ca` (pinning).
    #[serde(default)]
    pub pinned: Vec<PathBuf>,
}

/// TLS material in memory.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// Certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Private key.
    pub key: Arc<PrivateKeyDer<'static>>,
    /// Trusted CA certificates.
    pub ca: Vec<CertificateDer<'static>>,
    /// Pinned peer certificates.
    pub pinned: Vec<CertificateDer<'static>>,
}

fn tls_err(what: impl std::fmt::Display) -> ReplError {
    ReplError::Tls(what.to_string())
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ReplError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err(format!("reading {}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(format!("parsing {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_err(format!("{} holds no certificate", path.display())));
    }
    Ok(certs)
}

impl TlsMaterial {
    /// Loads the PEM files named by `config`.
    pub fn load(config: &TlsConfig) -> Result<TlsMaterial, ReplError> {
        let key = PrivateKeyDer::from_pem_file(&config.key)
            .map_err(|e| tls_err(format!("reading the key {}: {e}", config.key.display())))?;
        let mut pinned = Vec::new();
        for p in &config.pinned {
            pinned.extend(load_certs(p)?);
        }
        Ok(TlsMaterial {
            chain: load_certs(&config.cert)?,
            key: Arc::new(key),
            ca: load_certs(&config.ca)?,
            pinned,
        })
    }

    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, ReplError> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in &self.ca {
            roots.add(ca.clone()).map_err(tls_err)?;
        }
        Ok(Arc::new(roots))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// QUIC transport settings: windows sized for a long fat link (quinn's
/// defaults cap one stream near 12.5 MB/s at 100 ms RTT), keep-alives so
/// an idle link is noticed.
fn transport_config(window: u64, idle: Duration) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    let w = window.min(u32::MAX as u64) as u32;
    t.stream_receive_window(quinn::VarInt::from_u32(w));
    t.receive_window(quinn::VarInt::from_u32(w.saturating_mul(2)));
    t.send_window(window * 2);
    t.max_concurrent_uni_streams(4u32.into());
    t.max_concurrent_bidi_streams(2u32.into());
    t.keep_alive_interval(Some(idle / 3));
    if let Ok(idle) = quinn::IdleTimeout::try_from(idle) {
        t.max_idle_timeout(Some(idle));
    }
    t
}

/// The primary's receive windows (stream and connection): room for many
/// control frames of [`MAX_CONTROL_FRAME`](crate::protocol::MAX_CONTROL_FRAME).
const CONTROL_WINDOW: u32 = 1 << 20;

/// Accepts client certificates that chain to the CA (webpki), or that are
/// pinned byte for byte.
#[derive(Debug)]
struct ClientAuth {
    webpki: Arc<dyn ClientCertVerifier>,
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for ClientAuth {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            return Ok(ClientCertVerified::assertion());
        }
        self.webpki.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The primary's QUIC server configuration (client certificates required).
/// `window` sizes what the primary sends; a follower gets credit for one
/// bidirectional stream (its control stream), no unidirectional one, and
/// 1 MiB receive windows.
pub fn server_config(tls: &TlsMaterial, window: u64, idle: Duration) -> Result<quinn::ServerConfig, ReplError> {
    let provider = provider();
    let webpki = rustls::server::WebPkiClientVerifier::builder_with_provider(tls.roots()?, provider.clone())
        .build()
        .map_err(tls_err)?;
    let verifier = Arc::new(ClientAuth {
        webpki,
        pinned: tls.pinned.clone(),
        provider: provider.clone(),
    });
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(tls.chain.clone(), tls.key.clone_key())
        .map_err(tls_err)?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).map_err(tls_err)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    // A follower sends only its control stream (Hello and acks): the
    // primary gives it credit for that stream alone, and small windows, so
    // what a follower can make it buffer is bounded by these rather than
    // by `window` (which sizes what the primary sends).
    let mut t = transport_config(window, idle);
    t.stream_receive_window(quinn::VarInt::from_u32(CONTROL_WINDOW));
    t.receive_window(quinn::VarInt::from_u32(CONTROL_WINDOW));
    t.max_concurrent_uni_streams(0u32.into());
    t.max_concurrent_bidi_streams(1u32.into());
    config.transport_config(Arc::new(t));
    Ok(config)
}

/// A follower's QUIC client configuration (presents its certificate,
/// verifies the primary's).
pub fn client_config(tls: &TlsMaterial, window: u64, idle: Duration) -> Result<quinn::ClientConfig, ReplError> {
    let provider = provider();
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_root_certificates(tls.roots()?)
        .with_client_auth_cert(tls.chain.clone(), tls.key.clone_key())
        .map_err(tls_err)?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).map_err(tls_err)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport_config(window, idle)));
    Ok(config)
}

/// A development CA with server and client certificates (rcgen), as PEM.
#[derive(Clone)]
pub struct DevCerts {
    /// CA certificate.
    pub ca_pem: String,
    ca_cert: CertificateDer<'static>,
    issuer: Arc<(rcgen::Certificate, rcgen::KeyPair)>,
}

impl std::fmt::Debug for DevCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCerts")
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

/// A certificate and its key, as PEM.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// Certificate.
    pub cert_pem: String,
    /// Private key (PKCS#8).
    pub key_pem: String,
}

impl DevCerts {
    /// A new self-signed development CA named `name`.
    ///
    /// ```
    /// use ringkv_replication::tls::DevCerts;
    /// let ca = DevCerts::new("ringkv dev CA")?;
    /// let server = ca.server(&["localhost", "127.0.0.1"])?;
    /// let client = ca.client("follower-1")?;
    /// assert!(server.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    /// assert!(client.key_pem.contains("PRIVATE KEY"));
    /// # Ok::<(), ringkv_replication::ReplError>(())
    /// ```
    pub fn new(name: &str) -> Result<DevCerts, ReplError> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().map_err(tls_err)?;
        let cert = params.self_signed(&key).map_err(tls_err)?;
        Ok(DevCerts {
            ca_pem: cert.pem(),
            ca_cert: cert.der().clone(),
            issuer: Arc::new((cert, key)),
        })
    }

    fn issue(&self, cn: &str, sans: &[&str], usage: rcgen::ExtendedKeyUsagePurpose) -> Result<IssuedCert, ReplError> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).map_err(tls_err)?;
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = rcgen::KeyPair::generate().map_err(tls_err)?;
        let (issuer, issuer_key) = &*self.issuer;
        let cert = params.signed_by(&key, issuer, issuer_key).map_err(tls_err)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A server certificate for these names (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Result<IssuedCert, ReplError> {
        let cn = names.first().copied().unwrap_or("ringkv");
        self.issue(cn, names, rcgen::ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client (follower) certificate named `name`.
    pub fn client(&self, name: &str) -> Result<IssuedCert, ReplError> {
        self.issue(name, &[], rcgen::ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// In-memory TLS material for an issued certificate trusting this CA.
    pub fn material(&self, issued: &IssuedCert) -> Result<TlsMaterial, ReplError> {
        let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(tls_err)?;
        let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).map_err(tls_err)?;
        Ok(TlsMaterial {
            chain,
            key: Arc::new(key),
            ca: vec![self.ca_cert.clone()],
            pinned: Vec::new(),
        })
    }

    /// Writes `ca.pem`, `<name>.pem` and `<name>.key` files for an issued
    /// certificate into `dir`; returns the matching [`TlsConfig`].
    pub fn write(&self, dir: &Path, name: &str, issued: &IssuedCert) -> Result<TlsConfig, ReplError> {
        let io = |e: std::io::Error| tls_err(format!("writing certificates into {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &self.ca_pem).map_err(io)?;
        let cert = dir.join(format!("{name}.pem"));
        std::fs::write(&cert, &issued.cert_pem).map_err(io)?;
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&key, &issued.key_pem).map_err(io)?;
        Ok(TlsConfig {
            cert,
            key,
            ca,
            pinned: Vec::new(),
        })
    }
}

/// A short, stable identity for a peer certificate (SHA-256 prefix, hex).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}
