//! The webhook's TLS, managed by Passport itself: a self-signed CA and a serving certificate
//! kept in a Secret (shared by every replica), renewed well before expiry, reloaded into the
//! running server without a restart, and the CA patched into the MutatingWebhookConfiguration's
//! `caBundle`. With `--webhook-tls-dir` (cert-manager, or any other issuer) Passport reads
//! `tls.crt` and `tls.key` from that folder instead and reloads them when they change.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::Context as _;
use axum_server::tls_rustls::RustlsConfig;
use k8s_openapi::{
    ByteString,
    api::{admissionregistration::v1::MutatingWebhookConfiguration, core::v1::Secret},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// How long a serving certificate lasts, and when Passport renews it.
pub const SERVING_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const NOT_AFTER: &str = "passport.dev/not-after";
const DNS_NAMES: &str = "passport.dev/dns-names";
const CA_KEY: &str = "ca.key";

/// Where the certificate comes from and what it must cover.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// The Secret holding the CA and serving certificate (self-managed mode).
    pub secret_namespace: String,
    pub secret_name: String,
    /// Names the serving certificate covers (`<service>.<namespace>.svc`, loopback names...).
    pub names: Vec<String>,
    /// The MutatingWebhookConfiguration whose `caBundle` Passport keeps current; None leaves it
    /// to someone else (cert-manager's CA injector).
    pub configuration: Option<String>,
    /// A folder with `tls.crt` and `tls.key` written by another issuer.
    pub cert_dir: Option<PathBuf>,
}

/// One certificate, in PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Material {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "passport webhook CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = time_now();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::seconds(lifetime.as_secs() as i64);
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(jiff::Timestamp::now().as_second())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A serving certificate for `names`, signed by the CA key `ca_key`.
fn issue(ca_key: &KeyPair, names: &[String]) -> anyhow::Result<(String, String, jiff::Timestamp)> {
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().map_or("passport-webhook", String::as_str),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, SERVING_VALIDITY);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let not_after =
        jiff::Timestamp::now() + jiff::SignedDuration::from_secs(SERVING_VALIDITY.as_secs() as i64);
    Ok((cert.pem(), key.serialize_pem(), not_after))
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// The certificate in the Secret, renewed (or the whole Secret created) when it is missing,
/// expiring within [`RENEW_BEFORE`], or not covering `names`. Replicas racing to create or
/// renew it converge on whichever write wins.
pub async fn ensure_secret(client: &Client, settings: &TlsSettings) -> anyhow::Result<Material> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &settings.secret_namespace);
    let existing = api.get_opt(&settings.secret_name).await?;
    let wanted_names = settings.names.join(",");
    if let Some(secret) = &existing {
        let annotations = secret.metadata.annotations.clone().unwrap_or_default();
        let fresh = annotations
            .get(NOT_AFTER)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|not_after| {
                not_after
                    > jiff::Timestamp::now()
                        + jiff::SignedDuration::from_secs(RENEW_BEFORE.as_secs() as i64)
            });
        let covers = annotations.get(DNS_NAMES) == Some(&wanted_names);
        if let (true, true, Some(ca_pem), Some(cert_pem), Some(key_pem)) = (
            fresh,
            covers,
            text(secret, "ca.crt"),
            text(secret, "tls.crt"),
            text(secret, "tls.key"),
        ) {
            return Ok(Material {
                ca_pem,
                cert_pem,
                key_pem,
            });
        }
    }
    // Keep the CA across renewals, so that the caBundle does not change with every certificate.
    let kept_ca = existing.as_ref().and_then(|s| {
        let ca_pem = text(s, "ca.crt")?;
        let key = KeyPair::from_pem(&text(s, CA_KEY)?).ok()?;
        Some((ca_pem, key))
    });
    let (ca_pem, ca_key) = match kept_ca {
        Some(kept) => kept,
        None => {
            let key = KeyPair::generate()?;
            let mut params = ca_params()?;
            validity(&mut params, CA_VALIDITY);
            (params.self_signed(&key)?.pem(), key)
        }
    };
    let (cert_pem, key_pem, not_after) = issue(&ca_key, &settings.names)?;
    let data = BTreeMap::from([
        ("ca.crt".to_owned(), ByteString(ca_pem.clone().into_bytes())),
        (
            CA_KEY.to_owned(),
            ByteString(ca_key.serialize_pem().into_bytes()),
        ),
        (
            "tls.crt".to_owned(),
            ByteString(cert_pem.clone().into_bytes()),
        ),
        (
            "tls.key".to_owned(),
            ByteString(key_pem.clone().into_bytes()),
        ),
    ]);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(settings.secret_name.clone()),
            namespace: Some(settings.secret_namespace.clone()),
            annotations: Some(BTreeMap::from([
                (NOT_AFTER.to_owned(), not_after.to_string()),
                (DNS_NAMES.to_owned(), wanted_names),
            ])),
            resource_version: existing
                .as_ref()
                .and_then(|s| s.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Secret::default()
    };
    let written = match existing {
        Some(_) => {
            api.replace(&settings.secret_name, &PostParams::default(), &secret)
                .await
        }
        None => api.create(&PostParams::default(), &secret).await,
    };
    match written {
        Ok(_) => {
            tracing::info!(secret = %settings.secret_name, %not_after, "issued the webhook's serving certificate");
            Ok(Material {
                ca_pem,
                cert_pem,
                key_pem,
            })
        }
        // Another replica wrote first: use what it wrote.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let secret = api.get(&settings.secret_name).await?;
            Ok(Material {
                ca_pem: text(&secret, "ca.crt").context("the Secret has no ca.crt")?,
                cert_pem: text(&secret, "tls.crt").context("the Secret has no tls.crt")?,
                key_pem: text(&secret, "tls.key").context("the Secret has no tls.key")?,
            })
        }
        Err(error) => Err(error.into()),
    }
}

/// The certificate from `--webhook-tls-dir`.
fn read_dir(dir: &std::path::Path) -> anyhow::Result<Material> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .with_context(|| format!("reading {}", dir.join(name).display()))
    };
    Ok(Material {
        ca_pem: read("ca.crt").unwrap_or_default(),
        cert_pem: read("tls.crt")?,
        key_pem: read("tls.key")?,
    })
}

/// The current certificate, from the folder or the Secret.
pub async fn current(client: &Client, settings: &TlsSettings) -> anyhow::Result<Material> {
    match &settings.cert_dir {
        Some(dir) => read_dir(dir),
        None => ensure_secret(client, settings).await,
    }
}

/// What a caBundle patch found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patched {
    Patched,
    AlreadyCurrent,
    /// No configuration of that name.
    Missing,
}

/// Writes `ca_pem` into every webhook's `caBundle` of the configuration, when it differs.
pub async fn patch_ca_bundle(client: &Client, name: &str, ca_pem: &str) -> anyhow::Result<Patched> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let Some(configuration) = api.get_opt(name).await? else {
        return Ok(Patched::Missing);
    };
    let bundle = ByteString(ca_pem.as_bytes().to_vec());
    let webhooks = configuration.webhooks.unwrap_or_default();
    if webhooks
        .iter()
        .all(|w| w.client_config.ca_bundle.as_ref() == Some(&bundle))
    {
        return Ok(Patched::AlreadyCurrent);
    }
    let patch: Vec<json_patch::PatchOperation> = webhooks
        .iter()
        .enumerate()
        .filter(|(_, w)| w.client_config.ca_bundle.as_ref() != Some(&bundle))
        .filter_map(|(i, _)| {
            serde_json::from_value(serde_json::json!({
                "op": "add",
                "path": format!("/webhooks/{i}/clientConfig/caBundle"),
                "value": bundle,
            }))
            .ok()
        })
        .collect();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::<()>::Json(json_patch::Patch(patch)),
    )
    .await?;
    tracing::info!(configuration = name, "patched the webhook's caBundle");
    Ok(Patched::Patched)
}

/// Keeps the served certificate and the `caBundle` current: checks every `interval`, reloads
/// the server's certificate when it changed, and patches the configuration.
pub async fn keep_current(
    client: Client,
    settings: TlsSettings,
    server: RustlsConfig,
    mut served: Material,
    interval: Duration,
) {
    let mut missing_reported = false;
    loop {
        if let Some(name) = &settings.configuration
            && !served.ca_pem.is_empty()
        {
            match patch_ca_bundle(&client, name, &served.ca_pem).await {
                Ok(Patched::Missing) if !missing_reported => {
                    tracing::warn!(
                        configuration = %name,
                        "the MutatingWebhookConfiguration does not exist (yet): its caBundle is \
                         patched once it does; check --webhook-configuration"
                    );
                    missing_reported = true;
                }
                Ok(Patched::Missing) => {}
                Ok(_) => missing_reported = false,
                Err(error) => {
                    tracing::warn!(%error, configuration = %name, "patching the caBundle failed")
                }
            }
        }
        tokio::time::sleep(interval).await;
        match current(&client, &settings).await {
            Ok(material) if material != served => {
                match server
                    .reload_from_pem(
                        material.cert_pem.clone().into_bytes(),
                        material.key_pem.clone().into_bytes(),
                    )
                    .await
                {
                    Ok(()) => {
                        tracing::info!("reloaded the webhook's serving certificate");
                        served = material;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "reloading the serving certificate failed")
                    }
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "reading the webhook certificate failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serving_certificate_is_signed_by_the_kept_ca() {
        let ca_key = KeyPair::generate().unwrap();
        let (cert, key, not_after) = issue(
            &ca_key,
            &["passport-webhook.passport-system.svc".to_owned()],
        )
        .unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        assert!(key.contains("PRIVATE KEY"));
        let days = (not_after - jiff::Timestamp::now()).get_seconds() / 86_400;
        assert!((89..=90).contains(&days), "{days}");
        // A certificate issued with a rebuilt CA chain verifies against the stored CA.
        let mut params = ca_params().unwrap();
        validity(&mut params, CA_VALIDITY);
        let ca_pem = params.self_signed(&ca_key).unwrap().pem();
        let mut roots = rustls::RootCertStore::empty();
        for der in rustls_pemfile_certs(&ca_pem) {
            roots.add(der).unwrap();
        }
        use rustls::client::danger::ServerCertVerifier as _;
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let verifier = rustls::client::WebPkiServerVerifier::builder(std::sync::Arc::new(roots))
            .build()
            .unwrap();
        let chain = rustls_pemfile_certs(&cert);
        let name = rustls::pki_types::ServerName::try_from("passport-webhook.passport-system.svc")
            .unwrap();
        verifier
            .verify_server_cert(
                &chain[0],
                &[],
                &name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .unwrap();
    }

    fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        use rustls::pki_types::pem::PemObject as _;
        rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|c| c.unwrap())
            .collect()
    }
}
