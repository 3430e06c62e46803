package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2/google"
)

const cloudPlatform = "https://www.googleapis.com/auth/cloud-platform"

// probeGCP: the credential configuration GOOGLE_APPLICATION_CREDENTIALS names, as
// application default credentials would read it, exchanged at its token_url (Google STS)
// and, when it names one, at its service_account_impersonation_url (IAM Credentials).
func probeGCP(ctx context.Context, v *view) (string, error) {
	file := os.Getenv("GOOGLE_APPLICATION_CREDENTIALS")
	if file == "" {
		return "", errors.New("GOOGLE_APPLICATION_CREDENTIALS is not set")
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	var config map[string]any
	if err := json.Unmarshal(raw, &config); err != nil {
		return "", fmt.Errorf("reading %s: %w", file, err)
	}
	// The file names the token file by its path in the container.
	if source, ok := config["credential_source"].(map[string]any); ok {
		if path, ok := source["file"].(string); ok {
			source["file"] = v.host(path)
		}
	}
	if raw, err = json.Marshal(config); err != nil {
		return "", err
	}
	credentials, err := google.CredentialsFromJSONWithType(ctx, raw, google.ExternalAccount, cloudPlatform)
	if err != nil {
		return "", err
	}
	token, err := credentials.TokenSource.Token()
	if err != nil {
		return "", err
	}
	who := "the federated principal"
	if url, _ := config["service_account_impersonation_url"].(string); url != "" {
		who = impersonated(url)
	}
	return fmt.Sprintf("Google issued an access token for %s (expires %s)", who, token.Expiry.UTC().Format(time.RFC3339)), nil
}

// impersonated is the account of ".../serviceAccounts/<email>:generateAccessToken".
func impersonated(url string) string {
	_, account, _ := strings.Cut(url, "/serviceAccounts/")
	account, _, _ = strings.Cut(account, ":")
	return account
}
