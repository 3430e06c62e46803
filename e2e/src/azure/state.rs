//! The Azure fake's state: subscriptions, user-assigned identities, their federated identity
//! credentials (FICs) and service principals, with the rules the real service enforces on FICs.
//! Pure data and checks; no IO, so the rules are unit-tested here.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::IdentitySeed;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// A user-assigned identity can carry at most this many FICs (no quota increase exists).
pub const MAX_FICS_PER_IDENTITY: usize = 20;
/// Issuer, subject and audience are each limited to this many characters.
pub const MAX_FIELD_CHARS: usize = 600;

pub const IDENTITY_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";
pub const FIC_TYPE: &str =
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials";

/// A deterministic UUID (version 4 layout) derived from `seed`, so seeded identities get
/// stable client and principal IDs across runs.
pub fn uuid_from(seed: &str) -> String {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&Sha256::digest(seed.as_bytes())[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// A federated identity credential on a user-assigned identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fic {
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
}

impl Fic {
    pub fn to_json(&self, identity_id: &str) -> Value {
        json!({
            "id": format!("{identity_id}/federatedIdentityCredentials/{}", self.name),
            "name": self.name,
            "type": FIC_TYPE,
            "properties": {
                "issuer": self.issuer,
                "subject": self.subject,
                "audiences": self.audiences,
            },
        })
    }
}

/// A stored FIC and when Entra starts honouring it (real FICs take minutes to propagate).
#[derive(Clone, Debug)]
pub struct StoredFic {
    pub fic: Fic,
    pub usable_from: Instant,
}

/// A user-assigned managed identity: what it was created with, plus its credentials.
#[derive(Clone, Debug)]
pub struct Identity {
    pub seed: IdentitySeed,
    /// In creation order, like the real list.
    pub fics: Vec<StoredFic>,
    /// A FIC write is in flight: a second one gets 409.
    pub busy: bool,
}

impl Identity {
    /// The ARM resource ID, spelled like the real service returns it (`resourcegroups`).
    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourcegroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
            self.seed.subscription_id, self.seed.resource_group, self.seed.name
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id(),
            "name": self.seed.name,
            "type": IDENTITY_TYPE,
            "location": self.seed.location,
            "tags": self.seed.tags,
            "properties": {
                "tenantId": self.seed.tenant_id,
                "principalId": self.seed.principal_id,
                "clientId": self.seed.client_id,
            },
        })
    }

    pub fn fic(&self, name: &str) -> Option<&Fic> {
        self.fics
            .iter()
            .map(|s| &s.fic)
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// Checks that `fic` may be written (created or replaced by name). Returns whether it would
    /// be a creation.
    pub fn check_upsert(&self, fic: &Fic) -> Result<bool, FicError> {
        let existing = self.fic(&fic.name).is_some();
        let clash = self.fics.iter().map(|s| &s.fic).any(|other| {
            !other.name.eq_ignore_ascii_case(&fic.name)
                && other.issuer == fic.issuer
                && other.subject == fic.subject
        });
        if clash {
            return Err(FicError::DuplicateIssuerSubject);
        }
        if !existing && self.fics.len() >= MAX_FICS_PER_IDENTITY {
            return Err(FicError::LimitReached);
        }
        Ok(!existing)
    }

    /// Creates or replaces `fic` (the name keeps its original spelling on replace).
    pub fn upsert(&mut self, fic: Fic, usable_from: Instant) {
        match self
            .fics
            .iter_mut()
            .find(|s| s.fic.name.eq_ignore_ascii_case(&fic.name))
        {
            Some(stored) => {
                let name = std::mem::take(&mut stored.fic.name);
                *stored = StoredFic {
                    fic: Fic { name, ..fic },
                    usable_from,
                };
            }
            None => self.fics.push(StoredFic { fic, usable_from }),
        }
    }

    /// Removes the FIC named `name`; whether it existed.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.fics.len();
        self.fics.retain(|s| !s.fic.name.eq_ignore_ascii_case(name));
        self.fics.len() != before
    }
}

/// Why a FIC write is refused (all 400 Bad Request in ARM).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FicError {
    #[error(
        "Federated Identity Credential name '{0}' is invalid. The name must be 3 to 120 characters long, start with a letter or number, and contain only letters, numbers, hyphens and underscores."
    )]
    InvalidName(String),
    #[error("Federated Identity Credential from HTTP body has empty properties.")]
    EmptyProperties,
    #[error("The Federated Identity Credential property '{0}' is required.")]
    MissingField(&'static str),
    #[error("Federated Identity Credential must have exactly 1 audience.")]
    AudienceCount,
    #[error(
        "The Federated Identity Credential {field} must be at most {MAX_FIELD_CHARS} characters long; it has {len}."
    )]
    TooLong { field: &'static str, len: usize },
    #[error("The Federated Identity Credential issuer '{0}' must be a valid https URL.")]
    IssuerNotHttps(String),
    #[error("Issuer and subject combination already exists for this Managed Identity.")]
    DuplicateIssuerSubject,
    #[error(
        "Too many Federated Identity Credentials: a user assigned identity can have at most {MAX_FICS_PER_IDENTITY} federated identity credentials."
    )]
    LimitReached,
}

/// Checks a FIC name against `^[a-zA-Z0-9][a-zA-Z0-9-_]{2,119}$`.
pub fn validate_name(name: &str) -> Result<(), FicError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let len_ok = (3..=120).contains(&name.len());
    if first_ok && rest_ok && len_ok {
        Ok(())
    } else {
        Err(FicError::InvalidName(name.to_owned()))
    }
}

/// Parses and validates a FIC PUT body `{"properties":{"issuer","subject","audiences"}}`.
pub fn parse_fic(name: &str, body: &Value) -> Result<Fic, FicError> {
    validate_name(name)?;
    let props = body
        .get("properties")
        .and_then(Value::as_object)
        .filter(|p| !p.is_empty())
        .ok_or(FicError::EmptyProperties)?;
    let text = |field: &'static str| {
        props
            .get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or(FicError::MissingField(field))
    };
    let issuer = text("issuer")?;
    let subject = text("subject")?;
    let audiences: Vec<String> = props
        .get("audiences")
        .and_then(Value::as_array)
        .ok_or(FicError::MissingField("audiences"))?
        .iter()
        .map(|a| a.as_str().map(str::to_owned).unwrap_or_default())
        .collect();
    if audiences.len() != 1 || audiences.iter().any(String::is_empty) {
        return Err(FicError::AudienceCount);
    }
    for (field, value) in [
        ("issuer", &issuer),
        ("subject", &subject),
        ("audience", &audiences[0]),
    ] {
        let len = value.chars().count();
        if len > MAX_FIELD_CHARS {
            return Err(FicError::TooLong { field, len });
        }
    }
    let https = reqwest::Url::parse(&issuer)
        .is_ok_and(|url| url.scheme() == "https" && url.host_str().is_some_and(|h| !h.is_empty()));
    if !https {
        return Err(FicError::IssuerNotHttps(issuer));
    }
    Ok(Fic {
        name: name.to_owned(),
        issuer,
        subject,
        audiences,
    })
}

/// An app registration's service principal that authenticates with a client secret (what the
/// operator itself can use when it does not run on workload identity).
#[derive(Clone, Debug)]
pub struct ServicePrincipal {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
}

/// Lower-cased `subscription/resourceGroup/name`: ARM resource IDs are case-insensitive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdentityKey(String);

impl IdentityKey {
    pub fn new(subscription_id: &str, resource_group: &str, name: &str) -> Self {
        Self(format!("{subscription_id}/{resource_group}/{name}").to_ascii_lowercase())
    }
}

/// Everything the fake knows.
#[derive(Debug, Default)]
pub struct Store {
    /// Lower-cased subscription ID -> tenant ID.
    pub subscriptions: HashMap<String, String>,
    pub identities: HashMap<IdentityKey, Identity>,
    pub service_principals: Vec<ServicePrincipal>,
    /// How long a new or changed FIC takes before Entra honours it.
    pub propagation: Duration,
    /// Identities created through ARM so far: part of the seed for their fresh IDs.
    pub created: u64,
}

impl Store {
    pub fn subscription_tenant(&self, subscription_id: &str) -> Option<&str> {
        self.subscriptions
            .get(&subscription_id.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn tenant_exists(&self, tenant_id: &str) -> bool {
        self.subscriptions
            .values()
            .chain(self.service_principals.iter().map(|sp| &sp.tenant_id))
            .any(|t| t.eq_ignore_ascii_case(tenant_id))
    }

    /// The identity in `tenant_id` whose clientId is `client_id` (GUIDs compare case-insensitively).
    pub fn identity_by_client_id(&self, tenant_id: &str, client_id: &str) -> Option<&Identity> {
        self.identities.values().find(|i| {
            i.seed.client_id.eq_ignore_ascii_case(client_id)
                && i.seed.tenant_id.eq_ignore_ascii_case(tenant_id)
        })
    }

    pub fn service_principal(&self, tenant_id: &str, client_id: &str) -> Option<&ServicePrincipal> {
        self.service_principals.iter().find(|sp| {
            sp.client_id.eq_ignore_ascii_case(client_id)
                && sp.tenant_id.eq_ignore_ascii_case(tenant_id)
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;

    fn body(issuer: &str, subject: &str, audiences: &[&str]) -> Value {
        json!({"properties": {"issuer": issuer, "subject": subject, "audiences": audiences}})
    }

    fn identity() -> Identity {
        Identity {
            seed: IdentitySeed {
                subscription_id: "sub".into(),
                resource_group: "rg".into(),
                name: "id".into(),
                location: "westus".into(),
                tags: Map::new(),
                tenant_id: "t".into(),
                client_id: "c".into(),
                principal_id: "p".into(),
            },
            fics: Vec::new(),
            busy: false,
        }
    }

    #[test]
    fn names_follow_the_arm_pattern() {
        for ok in ["abc", "a-_", "0ab", &"a".repeat(120)] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ab",
            "-ab",
            "_ab",
            "a b",
            "a.b",
            "ä12",
            &"a".repeat(121),
            "",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bodies_need_one_audience_an_https_issuer_and_bounded_fields() {
        let ok = parse_fic(
            "fic",
            &body("https://i.test/x/", "s", &["api://AzureADTokenExchange"]),
        );
        assert_eq!(ok.map(|f| f.issuer), Ok("https://i.test/x/".to_owned()));
        assert_eq!(
            parse_fic("fic", &body("https://i.test", "s", &[])),
            Err(FicError::AudienceCount)
        );
        assert_eq!(
            parse_fic("fic", &body("https://i.test", "s", &["a", "b"])),
            Err(FicError::AudienceCount)
        );
        assert!(matches!(
            parse_fic("fic", &body("http://i.test", "s", &["a"])),
            Err(FicError::IssuerNotHttps(_))
        ));
        assert!(matches!(
            parse_fic("fic", &body("https://i.test", &"s".repeat(601), &["a"])),
            Err(FicError::TooLong {
                field: "subject",
                len: 601
            })
        ));
        let long_issuer = format!("https://i.test/{}", "p".repeat(600));
        assert!(matches!(
            parse_fic("fic", &body(&long_issuer, "s", &["a"])),
            Err(FicError::TooLong {
                field: "issuer",
                ..
            })
        ));
        assert_eq!(parse_fic("fic", &json!({})), Err(FicError::EmptyProperties));
        assert_eq!(
            parse_fic("fic", &json!({"properties": {"issuer": "https://i.test"}})),
            Err(FicError::MissingField("subject"))
        );
    }

    #[test]
    fn issuer_subject_pairs_are_unique_and_identities_hold_twenty() -> anyhow::Result<()> {
        let mut id = identity();
        let now = Instant::now();
        for n in 0..MAX_FICS_PER_IDENTITY {
            let fic = parse_fic(
                &format!("fic{n}"),
                &body("https://i.test", &format!("s{n}"), &["a"]),
            )?;
            assert_eq!(id.check_upsert(&fic), Ok(true));
            id.upsert(fic, now);
        }
        let extra = parse_fic("fic-extra", &body("https://i.test", "new", &["a"]))?;
        assert_eq!(id.check_upsert(&extra), Err(FicError::LimitReached));
        // Replacing an existing one by name (any case) is an update, allowed at the limit.
        let update = parse_fic("FIC0", &body("https://i.test", "s0", &["b"]))?;
        assert_eq!(id.check_upsert(&update), Ok(false));
        id.upsert(update, now);
        assert_eq!(
            id.fic("fic0")
                .map(|f| (f.name.as_str(), f.audiences[0].as_str())),
            Some(("fic0", "b"))
        );
        let dup = parse_fic("fic1", &body("https://i.test", "s2", &["a"]))?;
        assert_eq!(id.check_upsert(&dup), Err(FicError::DuplicateIssuerSubject));
        assert!(id.remove("FIC1"));
        assert!(!id.remove("fic1"));
        Ok(())
    }

    #[test]
    fn uuids_are_stable_and_shaped() {
        let a = uuid_from("x");
        assert_eq!(a, uuid_from("x"));
        assert_ne!(a, uuid_from("y"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
