package main

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// probeAWS: the default chain, which picks web identity from AWS_ROLE_ARN and
// AWS_WEB_IDENTITY_TOKEN_FILE (AssumeRoleWithWebIdentity at AWS_ENDPOINT_URL_STS), then asks
// STS who the caller is with the credentials it got.
func probeAWS(ctx context.Context, v *view) (string, error) {
	var options []func(*config.LoadOptions) error
	if v.offNode {
		// The chain ends with the instance metadata service; the machine that holds a pod's
		// files is not the pod's node, and its metadata must be neither asked nor used.
		options = append(options, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	cfg, err := config.LoadDefaultConfig(ctx, options...)
	if err != nil {
		return "", err
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return "", err
	}
	if creds.Source != "WebIdentityCredentials" {
		return "", errors.New("the default chain found " + creds.Source + " credentials, not web identity")
	}
	caller, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return "", err
	}
	return "AWS STS says the caller is " + aws.ToString(caller.Arn), nil
}
