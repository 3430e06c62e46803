package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

const armScope = "https://management.azure.com/.default"

// probeAzure: azidentity's workload identity credential from its four variables, asked for
// an ARM token (a client-assertion grant at AZURE_AUTHORITY_HOST).
func probeAzure(ctx context.Context, _ *view) (string, error) {
	credential, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
		// MSAL asks login.microsoftonline.com about authority hosts it does not know, as
		// this one (a local stand-in, like Azure Stack) is; Microsoft documents turning that
		// off for such clouds. MSAL then reads the authority's own OpenID configuration.
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		return "", err
	}
	token, err := credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{armScope}})
	if err != nil {
		return "", err
	}
	claims, err := jwtClaims(token.Token)
	if err != nil {
		return "", err
	}
	client := claims["appid"]
	if client == "" {
		client = claims["azp"]
	}
	return fmt.Sprintf("Entra ID issued a token for client %s (object %s, tenant %s)", client, claims["oid"], claims["tid"]), nil
}

// jwtClaims reads the string claims of a JWT without verifying it: the probe reports what
// Entra issued, it is no relying party.
func jwtClaims(jwt string) (map[string]string, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("the access token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("the access token's payload: %w", err)
	}
	var all map[string]any
	if err := json.Unmarshal(payload, &all); err != nil {
		return nil, fmt.Errorf("the access token's claims: %w", err)
	}
	claims := map[string]string{}
	for k, v := range all {
		if s, ok := v.(string); ok {
			claims[k] = s
		}
	}
	return claims, nil
}
