//! IAM OIDC providers: one per issuer and account. Passport creates it, or adopts an existing one
//! by adding its audience to the client IDs, and deletes only one this cluster created.

use async_trait::async_trait;

use super::{AwsProvider, error::map, policy::issuer_host, tag_map, tags};
use crate::cloud::{
    Access, Change, CloudError, Deleted, Ensured, OidcProviderIntent, OidcProviderRelease,
    OidcProviderState, OidcProviders, Owner, OwnerKind,
};

/// The ARN IAM gives the provider of `issuer`.
pub fn oidc_provider_arn(partition: &str, account_id: &str, issuer: &str) -> String {
    format!(
        "arn:{partition}:iam::{account_id}:oidc-provider/{}",
        issuer_host(issuer)
    )
}

struct Observed {
    client_ids: Vec<String>,
    owner: Option<Owner>,
    tags: std::collections::BTreeMap<String, String>,
}

impl AwsProvider {
    async fn read_provider(&self, arn: &str) -> Result<Option<Observed>, CloudError> {
        let result = self
            .caller
            .run("GetOpenIDConnectProvider", Access::Read, || async {
                self.iam
                    .get_open_id_connect_provider()
                    .open_id_connect_provider_arn(arn)
                    .send()
                    .await
                    .map_err(|e| map("GetOpenIDConnectProvider", e))
            })
            .await;
        match result {
            Ok(out) => {
                let tags = tag_map(out.tags());
                Ok(Some(Observed {
                    client_ids: out.client_id_list().to_vec(),
                    owner: Owner::from_tags(&tags),
                    tags,
                }))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Whether `owner` (from the provider's tags) means this cluster created the provider.
fn created_by(owner: Option<&Owner>, cluster: &str) -> bool {
    owner.is_some_and(|o| o.cluster == cluster && o.kind == OwnerKind::FederatedTrust)
}

#[async_trait]
impl OidcProviders for AwsProvider {
    async fn ensure_oidc_provider(
        &self,
        intent: &OidcProviderIntent,
    ) -> Result<Ensured<OidcProviderState>, CloudError> {
        let arn = oidc_provider_arn(&intent.partition, &intent.account_id, &intent.issuer);
        let Some(observed) = self.read_provider(&arn).await? else {
            let mut all_tags = intent.tags.clone();
            all_tags.extend(intent.owner.tags());
            let tags = tags(&all_tags)?;
            let url = format!("https://{}", issuer_host(&intent.issuer));
            let created = self
                .caller
                .run("CreateOpenIDConnectProvider", Access::Write, || async {
                    self.iam
                        .create_open_id_connect_provider()
                        .url(&url)
                        .client_id_list(&intent.audience)
                        .set_tags(Some(tags.clone()))
                        .send()
                        .await
                        .map_err(|e| map("CreateOpenIDConnectProvider", e))
                })
                .await?;
            tracing::info!(provider = %arn, "created iam oidc provider");
            return Ok(Ensured {
                state: OidcProviderState {
                    arn: created
                        .open_id_connect_provider_arn()
                        .map_or(arn, str::to_owned),
                    created: true,
                    client_ids: vec![intent.audience.clone()],
                },
                change: Change::Created,
                changes: vec![format!("created OIDC provider for {}", intent.issuer)],
            });
        };
        let created = created_by(observed.owner.as_ref(), &intent.owner.cluster);
        let mut changes = Vec::new();
        let mut client_ids = observed.client_ids.clone();
        if !client_ids.contains(&intent.audience) {
            self.caller
                .run(
                    "AddClientIDToOpenIDConnectProvider",
                    Access::Write,
                    || async {
                        self.iam
                            .add_client_id_to_open_id_connect_provider()
                            .open_id_connect_provider_arn(&arn)
                            .client_id(&intent.audience)
                            .send()
                            .await
                            .map_err(|e| map("AddClientIDToOpenIDConnectProvider", e))
                    },
                )
                .await?;
            client_ids.push(intent.audience.clone());
            changes.push(format!("added client ID {}", intent.audience));
        }
        if created {
            // Only the trust's extra tags are kept current, and only on a provider we own.
            let missing: std::collections::BTreeMap<String, String> = intent
                .tags
                .iter()
                .filter(|(k, v)| observed.tags.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !missing.is_empty() {
                let tags = tags(&missing)?;
                self.caller
                    .run("TagOpenIDConnectProvider", Access::Write, || async {
                        self.iam
                            .tag_open_id_connect_provider()
                            .open_id_connect_provider_arn(&arn)
                            .set_tags(Some(tags.clone()))
                            .send()
                            .await
                            .map_err(|e| map("TagOpenIDConnectProvider", e))
                    })
                    .await?;
                changes.push("updated tags".to_owned());
            }
        }
        let change = if changes.is_empty() {
            Change::Unchanged
        } else {
            Change::Updated
        };
        Ok(Ensured {
            state: OidcProviderState {
                arn,
                created,
                client_ids,
            },
            change,
            changes,
        })
    }

    async fn delete_oidc_provider(
        &self,
        release: &OidcProviderRelease,
    ) -> Result<Deleted, CloudError> {
        let arn = oidc_provider_arn(&release.partition, &release.account_id, &release.issuer);
        let Some(observed) = self.read_provider(&arn).await? else {
            return Ok(Deleted::Absent);
        };
        if !created_by(observed.owner.as_ref(), &release.owner.cluster) {
            return Ok(Deleted::Kept {
                why: match observed.owner {
                    Some(owner) => format!("the OIDC provider belongs to {owner}"),
                    None => "the OIDC provider was not created by Passport".to_owned(),
                },
            });
        }
        if release.still_used {
            return Ok(Deleted::Kept {
                why: "another FederatedTrust still uses the OIDC provider".to_owned(),
            });
        }
        let result = self
            .caller
            .run("DeleteOpenIDConnectProvider", Access::Write, || async {
                self.iam
                    .delete_open_id_connect_provider()
                    .open_id_connect_provider_arn(&arn)
                    .send()
                    .await
                    .map_err(|e| map("DeleteOpenIDConnectProvider", e))
            })
            .await;
        match result {
            Ok(_) => {
                tracing::info!(provider = %arn, "deleted iam oidc provider");
                Ok(Deleted::Deleted)
            }
            Err(e) if e.is_not_found() => Ok(Deleted::Absent),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_arns_name_the_issuer_without_its_scheme() {
        assert_eq!(
            oidc_provider_arn("aws-cn", "123456789012", "https://oidc.example.com/c1/"),
            "arn:aws-cn:iam::123456789012:oidc-provider/oidc.example.com/c1"
        );
    }

    #[test]
    fn only_a_trust_of_this_cluster_counts_as_creator() {
        let ours = Owner::trust("prod", "aws");
        assert!(created_by(Some(&ours), "prod"));
        assert!(!created_by(Some(&ours), "staging"));
        assert!(!created_by(Some(&Owner::policy("prod", "ns", "p")), "prod"));
        assert!(!created_by(None, "prod"));
    }
}
