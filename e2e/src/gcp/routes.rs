//! The fake's route table, written in the discovery documents' `flatPath` syntax so a test can
//! check every served route against `specs/gcp/`, and the matcher that dispatches on it.

use std::collections::HashMap;

/// Which Google API (and so which discovery document) a route belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `iam.googleapis.com`, discovery document `iam.v1.json`.
    Iam,
    /// `sts.googleapis.com`, discovery document `sts.v1.json`.
    Sts,
    /// `iamcredentials.googleapis.com`; no discovery document in `specs/gcp/`.
    IamCredentials,
    /// Test-only additions that do not exist at Google.
    TestOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    CreatePool,
    ListPools,
    GetPool,
    PatchPool,
    DeletePool,
    UndeletePool,
    GetPoolOperation,
    CreateProvider,
    ListProviders,
    GetProvider,
    PatchProvider,
    DeleteProvider,
    UndeleteProvider,
    GetProviderOperation,
    GetServiceAccount,
    GetIamPolicy,
    SetIamPolicy,
    Token,
    GenerateAccessToken,
    WhoAmI,
    SeedServiceAccount,
}

impl Endpoint {
    /// Calls to `iam.googleapis.com` authenticated with a Bearer token at Google. STS takes
    /// none, and `generateAccessToken` checks its caller itself.
    pub(crate) fn is_iam(self) -> bool {
        !matches!(
            self,
            Self::Token | Self::GenerateAccessToken | Self::WhoAmI | Self::SeedServiceAccount
        )
    }
}

/// One served route: HTTP method and path pattern (`{param}` segments, optionally followed by
/// a `:verb` suffix, as in discovery `flatPath`s).
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub api: Api,
    pub method: &'static str,
    pub path: &'static str,
    /// Query parameters the fake reads (each one a parameter of the method in the discovery
    /// document).
    pub query: &'static [&'static str],
    pub(crate) endpoint: Endpoint,
}

// Macros rather than consts so `concat!` can build the longer paths at compile time.
macro_rules! pools {
    () => {
        "v1/projects/{projectsId}/locations/{locationsId}/workloadIdentityPools"
    };
}
macro_rules! pool {
    () => {
        concat!(pools!(), "/{workloadIdentityPoolsId}")
    };
}
macro_rules! providers {
    () => {
        concat!(pool!(), "/providers")
    };
}
macro_rules! provider {
    () => {
        concat!(providers!(), "/{providersId}")
    };
}
macro_rules! service_account {
    () => {
        "v1/projects/{projectsId}/serviceAccounts/{serviceAccountsId}"
    };
}

macro_rules! route {
    ($api:ident, $method:literal, $path:expr, $endpoint:ident) => {
        route!($api, $method, $path, $endpoint, [])
    };
    ($api:ident, $method:literal, $path:expr, $endpoint:ident, [$($query:literal),*]) => {
        Route {
            api: Api::$api,
            method: $method,
            path: $path,
            query: &[$($query),*],
            endpoint: Endpoint::$endpoint,
        }
    };
}

/// Every route the fake serves.
pub const ROUTES: &[Route] = &[
    route!(
        Iam,
        "POST",
        pools!(),
        CreatePool,
        ["workloadIdentityPoolId"]
    ),
    route!(
        Iam,
        "GET",
        pools!(),
        ListPools,
        ["pageSize", "pageToken", "showDeleted"]
    ),
    route!(Iam, "GET", pool!(), GetPool),
    route!(Iam, "PATCH", pool!(), PatchPool, ["updateMask"]),
    route!(Iam, "DELETE", pool!(), DeletePool),
    route!(Iam, "POST", concat!(pool!(), ":undelete"), UndeletePool),
    route!(
        Iam,
        "GET",
        concat!(pool!(), "/operations/{operationsId}"),
        GetPoolOperation
    ),
    route!(
        Iam,
        "POST",
        providers!(),
        CreateProvider,
        ["workloadIdentityPoolProviderId"]
    ),
    route!(
        Iam,
        "GET",
        providers!(),
        ListProviders,
        ["pageSize", "pageToken", "showDeleted"]
    ),
    route!(Iam, "GET", provider!(), GetProvider),
    route!(Iam, "PATCH", provider!(), PatchProvider, ["updateMask"]),
    route!(Iam, "DELETE", provider!(), DeleteProvider),
    route!(
        Iam,
        "POST",
        concat!(provider!(), ":undelete"),
        UndeleteProvider
    ),
    route!(
        Iam,
        "GET",
        concat!(provider!(), "/operations/{operationsId}"),
        GetProviderOperation
    ),
    route!(Iam, "GET", service_account!(), GetServiceAccount),
    route!(
        Iam,
        "POST",
        concat!(service_account!(), ":getIamPolicy"),
        GetIamPolicy,
        ["options.requestedPolicyVersion"]
    ),
    route!(
        Iam,
        "POST",
        concat!(service_account!(), ":setIamPolicy"),
        SetIamPolicy
    ),
    route!(Sts, "POST", "v1/token", Token),
    route!(
        IamCredentials,
        "POST",
        concat!(service_account!(), ":generateAccessToken"),
        GenerateAccessToken
    ),
    route!(TestOnly, "GET", "_whoami", WhoAmI),
    route!(TestOnly, "POST", "_gcp/serviceAccounts", SeedServiceAccount),
];

/// A request matched to a route, with its decoded path parameters.
pub(crate) struct Matched {
    pub endpoint: Endpoint,
    pub params: HashMap<&'static str, String>,
}

/// Why no route matched.
pub(crate) enum Miss {
    /// No route has this path.
    NotFound,
    /// A route has this path but not this method.
    MethodNotAllowed,
}

/// Finds the route for `method` and `path` (with or without the leading slash).
pub(crate) fn find(method: &str, path: &str) -> Result<Matched, Miss> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut path_matched = false;
    for route in ROUTES {
        let Some(params) = match_path(route.path, &segments) else {
            continue;
        };
        if route.method == method {
            return Ok(Matched {
                endpoint: route.endpoint,
                params,
            });
        }
        path_matched = true;
    }
    Err(if path_matched {
        Miss::MethodNotAllowed
    } else {
        Miss::NotFound
    })
}

fn match_path(pattern: &'static str, segments: &[&str]) -> Option<HashMap<&'static str, String>> {
    let parts: Vec<&'static str> = pattern.split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = HashMap::new();
    for (part, segment) in parts.into_iter().zip(segments) {
        let segment = percent_decode(segment)?;
        match part.strip_prefix('{').and_then(|p| p.split_once('}')) {
            Some((name, suffix)) => {
                let value = segment.strip_suffix(suffix)?;
                // Without a `:verb` suffix the value must not carry one either, or
                // `pool:undelete` would be taken for a pool id.
                if value.is_empty() || (suffix.is_empty() && value.contains(':')) {
                    return None;
                }
                params.insert(name, value.to_owned());
            }
            None if part == segment => {}
            None => return None,
        }
    }
    Some(params)
}

/// Decodes `%XX` escapes (service-account emails arrive as `sa%40project.iam...`).
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_and_ids_are_told_apart() {
        let Ok(m) = find(
            "POST",
            "/v1/projects/p/locations/global/workloadIdentityPools/pool-1:undelete",
        ) else {
            panic!("undelete did not match");
        };
        assert_eq!(m.endpoint, Endpoint::UndeletePool);
        assert_eq!(m.params["workloadIdentityPoolsId"], "pool-1");
        assert!(matches!(
            find(
                "GET",
                "/v1/projects/p/locations/global/workloadIdentityPools/pool-1:undelete"
            ),
            Err(Miss::MethodNotAllowed)
        ));
        let Ok(m) = find(
            "POST",
            "/v1/projects/-/serviceAccounts/sa%40p.iam.gserviceaccount.com:generateAccessToken",
        ) else {
            panic!("generateAccessToken did not match");
        };
        assert_eq!(m.endpoint, Endpoint::GenerateAccessToken);
        assert_eq!(
            m.params["serviceAccountsId"],
            "sa@p.iam.gserviceaccount.com"
        );
        assert!(matches!(find("GET", "/v1/nothing"), Err(Miss::NotFound)));
    }
}
