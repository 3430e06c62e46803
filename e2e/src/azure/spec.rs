//! The Managed Identity swagger documents the fake is checked against, and the table of ARM
//! routes it serves (each one a swagger path template + method, matched case-insensitively).

use anyhow::Context as _;
use axum::http::Method;
use serde_json::Value;

/// The swagger documents, embedded so the fake and its tests carry their own source of truth.
const DOCUMENTS: &[(&str, &str)] = &[
    (
        "ManagedIdentity-2023-01-31.json",
        include_str!("spec/ManagedIdentity-2023-01-31.json"),
    ),
    (
        "ManagedIdentity-2024-11-30.json",
        include_str!("spec/ManagedIdentity-2024-11-30.json"),
    ),
];

/// The swagger examples for federated identity credentials (2023-01-31), for shape tests.
pub mod examples {
    pub const CREATE: &str = include_str!("spec/FederatedIdentityCredentialCreate.json");
    pub const GET: &str = include_str!("spec/FederatedIdentityCredentialGet.json");
    pub const LIST: &str = include_str!("spec/FederatedIdentityCredentialList.json");
    pub const DELETE: &str = include_str!("spec/FederatedIdentityCredentialDelete.json");
}

const IDENTITY: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{resourceName}";
const FIC_LIST: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{resourceName}/federatedIdentityCredentials";
const FIC: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{resourceName}/federatedIdentityCredentials/{federatedIdentityCredentialResourceName}";

/// What a served ARM route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    IdentityGet,
    IdentityPut,
    IdentityDelete,
    FicList,
    FicGet,
    FicPut,
    FicDelete,
}

/// One ARM route the fake serves: a swagger path template, its method and operationId.
#[derive(Debug)]
pub struct Route {
    pub method: Method,
    pub template: &'static str,
    pub operation_id: &'static str,
    pub operation: Operation,
}

/// Every ARM route the fake serves. `tests/stack/azure.rs` checks each against the swagger.
pub const ROUTES: &[Route] = &[
    Route {
        method: Method::GET,
        template: IDENTITY,
        operation_id: "UserAssignedIdentities_Get",
        operation: Operation::IdentityGet,
    },
    Route {
        method: Method::PUT,
        template: IDENTITY,
        operation_id: "UserAssignedIdentities_CreateOrUpdate",
        operation: Operation::IdentityPut,
    },
    Route {
        method: Method::DELETE,
        template: IDENTITY,
        operation_id: "UserAssignedIdentities_Delete",
        operation: Operation::IdentityDelete,
    },
    Route {
        method: Method::GET,
        template: FIC_LIST,
        operation_id: "FederatedIdentityCredentials_List",
        operation: Operation::FicList,
    },
    Route {
        method: Method::GET,
        template: FIC,
        operation_id: "FederatedIdentityCredentials_Get",
        operation: Operation::FicGet,
    },
    Route {
        method: Method::PUT,
        template: FIC,
        operation_id: "FederatedIdentityCredentials_CreateOrUpdate",
        operation: Operation::FicPut,
    },
    Route {
        method: Method::DELETE,
        template: FIC,
        operation_id: "FederatedIdentityCredentials_Delete",
        operation: Operation::FicDelete,
    },
];

/// One parsed swagger document.
pub struct SpecDocument {
    pub file: &'static str,
    pub version: String,
    paths: serde_json::Map<String, Value>,
}

impl SpecDocument {
    /// The operationId the document declares for `method` on `template`, if any.
    pub fn operation_id(&self, method: &Method, template: &str) -> Option<&str> {
        self.paths
            .get(template)?
            .get(method.as_str().to_ascii_lowercase())?
            .get("operationId")?
            .as_str()
    }
}

/// Parses the embedded swagger documents.
pub fn documents() -> anyhow::Result<Vec<SpecDocument>> {
    DOCUMENTS
        .iter()
        .map(|(file, text)| {
            let doc: Value =
                serde_json::from_str(text).with_context(|| format!("parsing {file}"))?;
            let version = doc
                .pointer("/info/version")
                .and_then(Value::as_str)
                .with_context(|| format!("{file} has no info.version"))?
                .to_owned();
            let paths = doc
                .get("paths")
                .and_then(Value::as_object)
                .with_context(|| format!("{file} has no paths"))?
                .clone();
            Ok(SpecDocument {
                file,
                version,
                paths,
            })
        })
        .collect()
}

/// Fails unless every served route exists, with the same method and operationId, in every
/// embedded swagger document. Run at start-up so the fake can never drift from the specs.
pub fn check_routes(documents: &[SpecDocument]) -> anyhow::Result<()> {
    for doc in documents {
        for route in ROUTES {
            let declared = doc.operation_id(&route.method, route.template);
            anyhow::ensure!(
                declared == Some(route.operation_id),
                "{} {} is served as {} but {} declares {:?}",
                route.method,
                route.template,
                route.operation_id,
                doc.file,
                declared
            );
        }
    }
    Ok(())
}

/// The path parameters of a matched route.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pub subscription_id: String,
    pub resource_group: String,
    pub identity: String,
    pub fic: Option<String>,
}

/// The outcome of routing an ARM request.
#[derive(Debug)]
pub enum RouteMatch {
    Found(&'static Route, Params),
    /// The path is served but not with this method.
    MethodNotAllowed,
    NotFound,
}

/// Routes `method path` like ARM does: literal segments compare case-insensitively
/// (`resourcegroups` == `resourceGroups`), parameters capture one non-empty segment.
pub fn match_route(method: &Method, path: &str) -> RouteMatch {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut path_matched = false;
    for route in ROUTES {
        let Some(params) = match_template(route.template, &segments) else {
            continue;
        };
        if route.method == *method {
            return RouteMatch::Found(route, params);
        }
        path_matched = true;
    }
    if path_matched {
        RouteMatch::MethodNotAllowed
    } else {
        RouteMatch::NotFound
    }
}

fn match_template(template: &str, segments: &[&str]) -> Option<Params> {
    let parts: Vec<&str> = template.split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = Params::default();
    for (part, segment) in parts.iter().zip(segments) {
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => {
                if segment.is_empty() {
                    return None;
                }
                let value = (*segment).to_owned();
                match name {
                    "subscriptionId" => params.subscription_id = value,
                    "resourceGroupName" => params.resource_group = value,
                    "resourceName" => params.identity = value,
                    _ => params.fic = Some(value),
                }
            }
            None if part.eq_ignore_ascii_case(segment) => {}
            None => return None,
        }
    }
    Some(params)
}

/// Whether `version` looks like an ARM api-version (`YYYY-MM-DD` with an optional
/// `-preview`-style suffix). Malformed ones get `InvalidApiVersionParameter`.
pub fn well_formed_api_version(version: &str) -> bool {
    let (date, suffix) = version.split_at(version.len().min(10));
    let date_ok = date.len() == 10
        && date.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            _ => c.is_ascii_digit(),
        });
    let suffix_ok = suffix.is_empty()
        || suffix
            .strip_prefix('-')
            .is_some_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()));
    date_ok && suffix_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_segments_match_case_insensitively() {
        let path = "/subscriptions/S/resourcegroups/RG/providers/microsoft.managedidentity/USERASSIGNEDIDENTITIES/id1/federatedIdentityCredentials/fic";
        let RouteMatch::Found(route, params) = match_route(&Method::PUT, path) else {
            panic!("no match");
        };
        assert_eq!(route.operation, Operation::FicPut);
        assert_eq!(params.identity, "id1");
        assert_eq!(params.fic.as_deref(), Some("fic"));
        assert!(matches!(
            match_route(&Method::POST, path),
            RouteMatch::MethodNotAllowed
        ));
        assert!(matches!(
            match_route(&Method::GET, "/subscriptions/S"),
            RouteMatch::NotFound
        ));
    }

    #[test]
    fn api_version_shapes() {
        assert!(well_formed_api_version("2023-01-31"));
        assert!(well_formed_api_version("2025-01-31-preview"));
        assert!(!well_formed_api_version("2023-1-31"));
        assert!(!well_formed_api_version("latest"));
        assert!(!well_formed_api_version("2023-01-31-"));
    }

    #[test]
    fn embedded_documents_declare_every_served_route() -> anyhow::Result<()> {
        let docs = documents()?;
        assert_eq!(
            docs.iter().map(|d| d.version.as_str()).collect::<Vec<_>>(),
            ["2023-01-31", "2024-11-30"]
        );
        check_routes(&docs)
    }
}
