//! The local stack's certificate authority: one self-signed CA per stack, serving certificates
//! for loopback names, and HTTP clients that trust it.

use std::{path::Path, sync::Arc};

use anyhow::Context as _;
use axum_server::tls_rustls::RustlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// Installs aws-lc-rs as the process-wide rustls provider. Several crates in the graph enable
/// more than one backend, and rustls refuses to guess; call this before the first TLS use.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A self-signed certificate authority for the stack.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new() -> anyhow::Result<Self> {
        install_crypto_provider();
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "passport local stack CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self { issuer })
    }

    /// The CA certificate, PEM: what goes into a kubeconfig's `certificate-authority-data` or a
    /// webhook's `caBundle`.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Issues a server certificate for the given DNS names and IP addresses.
    pub fn issue(&self, names: &[&str]) -> anyhow::Result<ServingCert> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServingCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A rustls server configuration for `localhost` and `127.0.0.1`.
    pub async fn loopback_server_config(&self) -> anyhow::Result<RustlsConfig> {
        let cert = self.issue(&["localhost", "127.0.0.1"])?;
        RustlsConfig::from_pem(cert.cert_pem.into_bytes(), cert.key_pem.into_bytes())
            .await
            .context("building the TLS server configuration")
    }

    /// An HTTP client that trusts this CA (and nothing else).
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        client_trusting(&self.cert_pem())
    }

    /// Writes the CA certificate to `path`.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.cert_pem())
            .with_context(|| format!("writing the stack CA to {}", path.display()))
    }
}

/// An HTTP client that trusts only the given PEM CA bundle.
pub fn client_trusting(ca_pem: &str) -> anyhow::Result<reqwest::Client> {
    install_crypto_provider();
    let certs = reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes())?;
    Ok(reqwest::Client::builder()
        .tls_certs_only(certs)
        .timeout(std::time::Duration::from_secs(30))
        .build()?)
}

/// Shared handle to a CA, for servers that outlive the function that made it.
pub type SharedCa = Arc<Ca>;

/// The TLS client configuration kube-apiserver's Go TLS amounts to for a webhook's `caBundle`:
/// chains to the bundle's certificates as usual, and also a self-signed serving certificate
/// that is itself in the bundle even when it is marked CA:TRUE (what `openssl req -x509` makes
/// by default). Go accepts such a certificate as its own root; webpki alone refuses a CA
/// certificate as an end entity. The host name is checked either way.
pub fn webhook_client_config(ca_pem: &[u8]) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    install_crypto_provider();
    let bundle: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<_, _>>()
        .context("parsing the caBundle")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in &bundle {
        roots
            .add(cert.clone())
            .context("adding a caBundle certificate")?;
    }
    let inner = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots)).build()?;
    let verifier = Arc::new(BundleVerifier { inner, bundle });
    Ok(rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

#[derive(Debug)]
struct BundleVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    bundle: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl rustls::client::danger::ServerCertVerifier for BundleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => Ok(verified),
            Err(_)
                if self
                    .bundle
                    .iter()
                    .any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            Err(error) => Err(error),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
