//! The operator's own cloud permissions (`config/cloud/`) checked against the calls the cloud
//! modules make: the calls are found by scanning the modules' source, so a new call without its
//! permission, or a permission no call needs, fails a test. Test-only.

#[cfg(test)]
mod tests {
    use std::{
        collections::{BTreeMap, BTreeSet},
        path::{Path, PathBuf},
    };

    use anyhow::{Context as _, bail, ensure};
    use serde_json::Value;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn read(path: &str) -> anyhow::Result<String> {
        std::fs::read_to_string(repo().join(path)).with_context(|| format!("reading {path}"))
    }

    /// The non-test source of every `.rs` file under `operator/src/cloud/<module>`, by path.
    fn module_sources(module: &str) -> anyhow::Result<BTreeMap<PathBuf, String>> {
        let mut files = BTreeMap::new();
        let mut dirs = vec![repo().join("operator/src/cloud").join(module)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
                let path = entry?.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path)?;
                    let code = text
                        .split("#[cfg(test)]\nmod tests")
                        .next()
                        .unwrap_or_default();
                    files.insert(path, code.to_owned());
                }
            }
        }
        ensure!(!files.is_empty(), "no source found for cloud/{module}");
        Ok(files)
    }

    fn all(sources: &BTreeMap<PathBuf, String>) -> String {
        sources.values().cloned().collect::<Vec<_>>().join("\n")
    }

    fn is_ident(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_'
    }

    /// The operations of fluent SDK calls on a client variable: `<client>.<operation>()` with the
    /// chain going on (`.role_name(..)...send()`), across line breaks.
    fn client_calls(source: &str, client: &str) -> Vec<String> {
        let mut calls = Vec::new();
        for (at, _) in source.match_indices(client) {
            let before = source[..at].chars().next_back();
            let rest = &source[at + client.len()..];
            if before.is_some_and(is_ident) || rest.starts_with(is_ident) {
                continue;
            }
            let Some(rest) = rest.trim_start().strip_prefix('.') else {
                continue;
            };
            let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
            let Some(after) = rest[name.len()..].strip_prefix("()") else {
                continue;
            };
            if !name.is_empty() && after.trim_start().starts_with('.') {
                calls.push(name);
            }
        }
        calls
    }

    /// The comma-separated arguments after each `marker` (which ends with the opening
    /// parenthesis), up to the first closing one; enough for call sites whose arguments hold no
    /// nested call before the ones read here.
    fn call_arguments(source: &str, marker: &str) -> Vec<Vec<String>> {
        source
            .match_indices(marker)
            .map(|(at, _)| {
                let rest = &source[at + marker.len()..];
                let end = rest.find(')').unwrap_or(rest.len());
                rest[..end]
                    .split(',')
                    .map(|a| a.trim().to_owned())
                    .collect()
            })
            .collect()
    }

    /// The value of every `<name>: "<value>"` field line, or of `const <NAME>: &str = "<value>";`.
    fn string_values(source: &str, name: &str) -> Vec<String> {
        let field = format!("{name}: \"");
        let constant = format!("const {name}: &str = \"");
        source
            .lines()
            .filter_map(|line| {
                let line = line.trim();
                let value = line
                    .strip_prefix(&field)
                    .or_else(|| line.strip_prefix(&constant))?;
                Some(value.split('"').next().unwrap_or_default().to_owned())
            })
            .collect()
    }

    fn unquote(argument: &str) -> Option<&str> {
        argument.strip_prefix('"')?.strip_suffix('"')
    }

    // AWS: aws-sdk-iam calls in cloud/aws against config/cloud/aws/passport-operator-policy.json.

    const AWS_POLICY: &str = "config/cloud/aws/passport-operator-policy.json";
    const ROLES: &str = "arn:aws:iam::${ACCOUNT_ID}:role/passport/";
    const ADOPTED: &str = "${ADOPTED_ROLE_ARN_PATTERN}";
    const OIDC_PROVIDER: &str = "arn:aws:iam::${ACCOUNT_ID}:oidc-provider/${ISSUER_HOST_PATH}";
    const BOUNDARY: &str = "${PERMISSIONS_BOUNDARY_ARN}";
    /// Called by the code, and denied on purpose: removing a role's boundary would lift the cap
    /// on everything attached to it (config/cloud/README.md).
    const DENIED: &[&str] = &["iam:DeleteRolePermissionsBoundary"];

    /// `get_open_id_connect_provider` -> `iam:GetOpenIDConnectProvider`.
    fn iam_action(operation: &str) -> String {
        let words: String = operation
            .split('_')
            .map(|word| match word {
                "id" => "ID".to_owned(),
                _ => {
                    let mut chars = word.chars();
                    chars.next().map_or_else(String::new, |first| {
                        first.to_ascii_uppercase().to_string() + chars.as_str()
                    })
                }
            })
            .collect();
        format!("iam:{words}")
    }

    /// Every IAM action the AWS module calls, checked against the operation names it counts
    /// the calls under.
    fn aws_actions() -> anyhow::Result<BTreeSet<String>> {
        let sources = module_sources("aws")?;
        let code = all(&sources);
        let calls = client_calls(&code, "iam");
        ensure!(
            calls.len() == code.matches(".send()").count(),
            "found {} IAM calls but {} .send(): a call on another variable than `iam`?",
            calls.len(),
            code.matches(".send()").count()
        );
        let actions: BTreeSet<String> = calls.iter().map(|c| iam_action(c)).collect();
        for action in &actions {
            let name = action.trim_start_matches("iam:");
            ensure!(
                code.contains(&format!("\"{name}\"")),
                "{action} is not an operation name in the AWS module: a wrong conversion?"
            );
        }
        Ok(actions)
    }

    fn as_list(value: &Value) -> Vec<String> {
        match value {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn aws_statements() -> anyhow::Result<Vec<Value>> {
        let policy: Value = serde_json::from_str(&read(AWS_POLICY)?).context(AWS_POLICY)?;
        ensure!(
            policy["Version"] == "2012-10-17",
            "Version must be 2012-10-17"
        );
        let Some(statements) = policy["Statement"].as_array().filter(|s| !s.is_empty()) else {
            bail!("{AWS_POLICY} has no Statement list");
        };
        Ok(statements.clone())
    }

    fn actions_with_effect(statements: &[Value], effect: &str) -> BTreeSet<String> {
        statements
            .iter()
            .filter(|s| s["Effect"] == effect)
            .flat_map(|s| as_list(&s["Action"]))
            .collect()
    }

    #[test]
    fn the_aws_policy_parses_and_every_statement_is_scoped() -> anyhow::Result<()> {
        for statement in aws_statements()? {
            let sid = statement["Sid"]
                .as_str()
                .context("a statement without Sid")?;
            ensure!(
                statement["Effect"] == "Allow" || statement["Effect"] == "Deny",
                "{sid}: Effect"
            );
            ensure!(
                statement.get("NotAction").is_none() && statement.get("NotResource").is_none(),
                "{sid}: NotAction and NotResource grant too much"
            );
            let actions = as_list(&statement["Action"]);
            ensure!(!actions.is_empty(), "{sid}: no Action");
            ensure!(
                actions.iter().all(|a| !a.contains('*')),
                "{sid}: wildcard action"
            );
            let resources = as_list(&statement["Resource"]);
            ensure!(!resources.is_empty(), "{sid}: no Resource");
            for resource in resources {
                let role = resource.strip_prefix(ROLES).is_some_and(|rest| rest == "*");
                ensure!(
                    role || resource == ADOPTED || resource == OIDC_PROVIDER,
                    "{sid}: {resource} is not a role under /passport/, the adopted roles' \
                     pattern or the issuer's OIDC provider"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn the_aws_policy_grants_exactly_the_iam_calls_of_the_aws_module() -> anyhow::Result<()> {
        let called = aws_actions()?;
        ensure!(called.len() >= 20, "too few IAM calls found: {called:?}");
        let statements = aws_statements()?;
        let allowed = actions_with_effect(&statements, "Allow");
        let denied = actions_with_effect(&statements, "Deny");
        let missing: Vec<_> = called
            .iter()
            .filter(|a| !allowed.contains(*a) && !denied.contains(*a))
            .collect();
        ensure!(
            missing.is_empty(),
            "called but not in the policy: {missing:?}"
        );
        let unused: Vec<_> = allowed
            .union(&denied)
            .filter(|a| !called.contains(*a))
            .collect();
        ensure!(
            unused.is_empty(),
            "in the policy but never called: {unused:?}"
        );
        let want_denied: BTreeSet<String> = DENIED.iter().map(|a| (*a).to_owned()).collect();
        ensure!(
            denied == want_denied,
            "denied {denied:?}, want {want_denied:?}"
        );
        ensure!(allowed.is_disjoint(&denied), "allowed and denied at once");
        Ok(())
    }

    #[test]
    fn roles_are_created_only_with_the_boundary_and_adopted_ones_only_get_a_trust_policy()
    -> anyhow::Result<()> {
        let statements = aws_statements()?;
        for statement in &statements {
            let actions = as_list(&statement["Action"]);
            let boundary = &statement["Condition"]["StringEquals"]["iam:PermissionsBoundary"];
            for action in ["iam:CreateRole", "iam:PutRolePermissionsBoundary"] {
                if statement["Effect"] == "Allow" && actions.iter().any(|a| a == action) {
                    ensure!(
                        boundary == BOUNDARY,
                        "{action} without the boundary condition"
                    );
                }
            }
            if as_list(&statement["Resource"]).iter().any(|r| r == ADOPTED) {
                ensure!(
                    actions
                        .iter()
                        .all(|a| a == "iam:GetRole" || a == "iam:UpdateAssumeRolePolicy"),
                    "adopted roles get more than their trust policy: {actions:?}"
                );
            }
        }
        let creates = statements.iter().any(|s| {
            s["Effect"] == "Allow" && as_list(&s["Action"]).iter().any(|a| a == "iam:CreateRole")
        });
        ensure!(creates, "no statement allows iam:CreateRole");
        Ok(())
    }

    #[test]
    fn every_placeholder_is_documented() -> anyhow::Result<()> {
        let readme = read("config/cloud/README.md")?;
        for path in [
            AWS_POLICY,
            GCP_PROJECT_ROLE,
            GCP_SERVICE_ACCOUNT_ROLE,
            AZURE_ROLE,
        ] {
            let text = read(path)?;
            for piece in text.split("${").skip(1) {
                let name = piece.split('}').next().unwrap_or_default();
                ensure!(
                    readme.contains(&format!("`${{{name}}}`")),
                    "{path}: placeholder ${{{name}}} is not in config/cloud/README.md"
                );
            }
        }
        Ok(())
    }

    // GCP: the REST calls (pools, providers, operations) and the google-cloud-iam-admin-v1
    // calls (service-account IAM policies) against the two custom roles in config/cloud/gcp.

    const GCP_PROJECT_ROLE: &str = "config/cloud/gcp/passport-operator-role.yaml";
    const GCP_SERVICE_ACCOUNT_ROLE: &str = "config/cloud/gcp/passport-operator-sa-role.yaml";

    /// Each REST operation of the GCP module: its HTTP method, its method in the IAM discovery
    /// document, and the permissions Google checks for it.
    const GCP_REST: &[(&str, &str, &str, &[&str])] = &[
        (
            "GetWorkloadIdentityPool",
            "GET",
            "projects.locations.workloadIdentityPools.get",
            &["iam.workloadIdentityPools.get"],
        ),
        (
            "CreateWorkloadIdentityPool",
            "POST",
            "projects.locations.workloadIdentityPools.create",
            &["iam.workloadIdentityPools.create"],
        ),
        (
            "PatchWorkloadIdentityPool",
            "PATCH",
            "projects.locations.workloadIdentityPools.patch",
            &["iam.workloadIdentityPools.update"],
        ),
        (
            "UndeleteWorkloadIdentityPool",
            "POST",
            "projects.locations.workloadIdentityPools.undelete",
            &["iam.workloadIdentityPools.undelete"],
        ),
        (
            "DeleteWorkloadIdentityPool",
            "DELETE",
            "projects.locations.workloadIdentityPools.delete",
            &["iam.workloadIdentityPools.delete"],
        ),
        (
            "GetWorkloadIdentityPoolProvider",
            "GET",
            "projects.locations.workloadIdentityPools.providers.get",
            &["iam.workloadIdentityPoolProviders.get"],
        ),
        (
            "CreateWorkloadIdentityPoolProvider",
            "POST",
            "projects.locations.workloadIdentityPools.providers.create",
            &["iam.workloadIdentityPoolProviders.create"],
        ),
        (
            "PatchWorkloadIdentityPoolProvider",
            "PATCH",
            "projects.locations.workloadIdentityPools.providers.patch",
            &["iam.workloadIdentityPoolProviders.update"],
        ),
        (
            "UndeleteWorkloadIdentityPoolProvider",
            "POST",
            "projects.locations.workloadIdentityPools.providers.undelete",
            &["iam.workloadIdentityPoolProviders.undelete"],
        ),
        (
            "DeleteWorkloadIdentityPoolProvider",
            "DELETE",
            "projects.locations.workloadIdentityPools.providers.delete",
            &["iam.workloadIdentityPoolProviders.delete"],
        ),
        (
            "ListWorkloadIdentityPoolProviders",
            "GET",
            "projects.locations.workloadIdentityPools.providers.list",
            &["iam.workloadIdentityPoolProviders.list"],
        ),
        // The long-running operations of pools and of providers have no permission of their
        // own: reading one needs the get permission of the pool or provider it belongs to.
        (
            "GetOperation",
            "GET",
            "projects.locations.workloadIdentityPools[.providers].operations.get",
            &[
                "iam.workloadIdentityPools.get",
                "iam.workloadIdentityPoolProviders.get",
            ],
        ),
    ];

    /// The google-cloud-iam-admin-v1 calls: `projects/-/serviceAccounts/{email}:getIamPolicy`
    /// and `:setIamPolicy` (discovery `projects.serviceAccounts.getIamPolicy`, `.setIamPolicy`).
    const GCP_SDK: &[(&str, &str)] = &[
        ("get_iam_policy", "iam.serviceAccounts.getIamPolicy"),
        ("set_iam_policy", "iam.serviceAccounts.setIamPolicy"),
    ];

    /// (operation, HTTP method) of every `Request::get` and `Request::write` in the GCP module;
    /// `kind.<field>` operations resolve to every value of that field in the same file.
    fn gcp_rest_calls() -> anyhow::Result<BTreeSet<(String, String)>> {
        let mut calls = BTreeSet::new();
        for (path, code) in module_sources("gcp")? {
            let sites = call_arguments(&code, "Request::get(")
                .into_iter()
                .map(|args| (args, "GET".to_owned()))
                .chain(
                    call_arguments(&code, "Request::write(")
                        .into_iter()
                        .map(|args| {
                            let method =
                                args.get(1).map_or("", |m| m.trim_start_matches("Method::"));
                            (args.clone(), method.to_owned())
                        }),
                );
            for (args, method) in sites {
                let first = args.first().map_or("", String::as_str);
                let operations = match (unquote(first), first.strip_prefix("kind.")) {
                    (Some(literal), _) => vec![literal.to_owned()],
                    (None, Some(field)) => string_values(&code, field),
                    _ => bail!("{}: cannot resolve operation {first}", path.display()),
                };
                ensure!(
                    !operations.is_empty(),
                    "{}: no value for {first}",
                    path.display()
                );
                for operation in operations {
                    calls.insert((operation, method.clone()));
                }
            }
        }
        Ok(calls)
    }

    fn role_permissions(path: &str) -> anyhow::Result<BTreeSet<String>> {
        let role: serde_yaml::Value =
            serde_yaml::from_str(&read(path)?).with_context(|| path.to_owned())?;
        ensure!(
            role["title"].is_string() && role["stage"] == "GA",
            "{path}: title, stage"
        );
        let Some(permissions) = role["includedPermissions"].as_sequence() else {
            bail!("{path}: no includedPermissions");
        };
        Ok(permissions
            .iter()
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect())
    }

    #[test]
    fn every_gcp_rest_call_is_in_the_permission_table_and_every_row_is_called() -> anyhow::Result<()>
    {
        let found = gcp_rest_calls()?;
        let table: BTreeSet<(String, String)> = GCP_REST
            .iter()
            .map(|(op, method, _, _)| ((*op).to_owned(), (*method).to_owned()))
            .collect();
        ensure!(found.len() >= 12, "too few REST calls found: {found:?}");
        let missing: Vec<_> = found.difference(&table).collect();
        ensure!(
            missing.is_empty(),
            "REST calls without a row in GCP_REST: {missing:?}"
        );
        let stale: Vec<_> = table.difference(&found).collect();
        ensure!(
            stale.is_empty(),
            "rows of GCP_REST no code calls: {stale:?}"
        );
        // Every request goes through `Rest::send`, the one place that speaks HTTP.
        let code = all(&module_sources("gcp")?);
        ensure!(
            code.matches(".request(").count() == 1,
            "HTTP outside Rest::attempt"
        );
        Ok(())
    }

    #[test]
    fn the_gcp_roles_hold_exactly_the_permissions_of_the_gcp_module() -> anyhow::Result<()> {
        let code = all(&module_sources("gcp")?);
        let sdk = client_calls(&code, "iam");
        ensure!(
            sdk.len() + code.matches("builder.send()").count() == code.matches(".send()").count(),
            "an SDK call the scan does not see: {sdk:?}"
        );
        let table: BTreeMap<&str, &str> = GCP_SDK.iter().copied().collect();
        let mut needed = BTreeSet::new();
        for call in &sdk {
            let permission = table
                .get(call.as_str())
                .context(format!("{call} not in GCP_SDK"))?;
            needed.insert((*permission).to_owned());
        }
        ensure!(
            needed.len() == GCP_SDK.len(),
            "rows of GCP_SDK no code calls"
        );
        for (_, _, _, permissions) in GCP_REST {
            needed.extend(permissions.iter().map(|p| (*p).to_owned()));
        }
        let project = role_permissions(GCP_PROJECT_ROLE)?;
        let service_accounts = role_permissions(GCP_SERVICE_ACCOUNT_ROLE)?;
        let granted: BTreeSet<String> = project.union(&service_accounts).cloned().collect();
        let missing: Vec<_> = needed.difference(&granted).collect();
        let unused: Vec<_> = granted.difference(&needed).collect();
        ensure!(
            missing.is_empty() && unused.is_empty(),
            "needed but not granted: {missing:?}; granted but never needed: {unused:?}"
        );
        // Granted on the project, the first must not reach service accounts; the second is
        // granted on each allowed service account and holds nothing else.
        ensure!(
            project
                .iter()
                .all(|p| p.starts_with("iam.workloadIdentityPool")),
            "{GCP_PROJECT_ROLE} holds more than pool permissions: {project:?}"
        );
        ensure!(
            service_accounts
                .iter()
                .all(|p| p.starts_with("iam.serviceAccounts.")),
            "{GCP_SERVICE_ACCOUNT_ROLE} holds more than service-account permissions"
        );
        Ok(())
    }

    // Azure: the ARM calls in cloud/azure against config/cloud/azure/passport-operator-role.json.

    const AZURE_ROLE: &str = "config/cloud/azure/passport-operator-role.json";
    const FIC: &str =
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials";
    const IDENTITY: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";

    /// Each ARM operation of the Azure module, its HTTP method and the RBAC action ARM checks.
    fn azure_table() -> Vec<(&'static str, &'static str, String)> {
        vec![
            (
                "GetFederatedIdentityCredential",
                "GET",
                format!("{FIC}/read"),
            ),
            (
                "ListFederatedIdentityCredentials",
                "GET",
                format!("{FIC}/read"),
            ),
            (
                "PutFederatedIdentityCredential",
                "PUT",
                format!("{FIC}/write"),
            ),
            (
                "DeleteFederatedIdentityCredential",
                "DELETE",
                format!("{FIC}/delete"),
            ),
            ("GetUserAssignedIdentity", "GET", format!("{IDENTITY}/read")),
        ]
    }

    /// (operation, HTTP method) of every `.call(OPERATION, access, Method::X, ..)`, the one
    /// door to ARM, with the operation constants resolved.
    fn azure_calls() -> anyhow::Result<BTreeSet<(String, String)>> {
        let code = all(&module_sources("azure")?);
        ensure!(
            code.matches("arm::send(").count() == 1,
            "ARM reached outside call()"
        );
        let mut calls = BTreeSet::new();
        for args in call_arguments(&code, ".call(") {
            let constant = args.first().map_or("", String::as_str);
            let values = string_values(&code, constant);
            let [operation] = values.as_slice() else {
                bail!("the operation constant {constant} has values {values:?}");
            };
            let method = args.get(2).map_or("", |m| m.trim_start_matches("Method::"));
            calls.insert((operation.clone(), method.to_owned()));
        }
        Ok(calls)
    }

    #[test]
    fn the_azure_role_covers_exactly_the_arm_calls_of_the_azure_module() -> anyhow::Result<()> {
        let found = azure_calls()?;
        let table = azure_table();
        ensure!(found.len() == table.len(), "ARM calls found: {found:?}");
        for (operation, method, action) in &table {
            ensure!(
                found.contains(&((*operation).to_owned(), (*method).to_owned())),
                "{operation} {method} is not called"
            );
            let verb = match *method {
                "GET" => "/read",
                "PUT" => "/write",
                "DELETE" => "/delete",
                other => bail!("unexpected method {other}"),
            };
            ensure!(
                action.ends_with(verb),
                "{operation}: {method} needs a {verb} action"
            );
        }
        let role: Value = serde_json::from_str(&read(AZURE_ROLE)?).context(AZURE_ROLE)?;
        ensure!(
            role["IsCustom"] == true && role["Name"].is_string(),
            "Name, IsCustom"
        );
        let actions: BTreeSet<String> = as_list(&role["Actions"]).into_iter().collect();
        let needed: BTreeSet<String> = table.into_iter().map(|(_, _, a)| a).collect();
        let missing: Vec<_> = needed.difference(&actions).collect();
        let unused: Vec<_> = actions.difference(&needed).collect();
        ensure!(
            missing.is_empty() && unused.is_empty(),
            "needed but not allowed: {missing:?}; allowed but never needed: {unused:?}"
        );
        for empty in ["NotActions", "DataActions", "NotDataActions"] {
            ensure!(as_list(&role[empty]).is_empty(), "{empty} must be empty");
        }
        let scopes = as_list(&role["AssignableScopes"]);
        ensure!(
            !scopes.is_empty() && scopes.iter().all(|s| s.contains("/resourceGroups/")),
            "AssignableScopes must name the identities' resource group: {scopes:?}"
        );
        Ok(())
    }

    #[test]
    fn the_source_scans_find_what_they_are_shown() {
        let aws = "let iam = &self.iam;\niam.get_role()\n    .role_name(n)\n    .send();\n\
                   self.iam\n    .add_client_id_to_open_id_connect_provider()\n    .send();\n\
                   from_conf(iam.build()); aws_sdk_iam.x().y(); iam.endpoint_url(e);";
        assert_eq!(
            client_calls(aws, "iam"),
            ["get_role", "add_client_id_to_open_id_connect_provider"]
        );
        assert_eq!(
            iam_action("add_client_id_to_open_id_connect_provider"),
            "iam:AddClientIDToOpenIDConnectProvider"
        );
        assert_eq!(
            iam_action("list_instance_profiles_for_role"),
            "iam:ListInstanceProfilesForRole"
        );
        let gcp = "const POOL: Kind = Kind {\n    get: \"GetPool\",\n};\n\
                   Request::write(kind.get, Method::PATCH, path)";
        assert_eq!(
            call_arguments(gcp, "Request::write(")[0][1],
            "Method::PATCH"
        );
        assert_eq!(string_values(gcp, "get"), ["GetPool"]);
        assert_eq!(
            string_values("const GET_FIC: &str = \"GetFic\";", "GET_FIC"),
            ["GetFic"]
        );
    }
}
