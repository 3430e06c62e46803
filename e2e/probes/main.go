// Command passport-probe obtains credentials with each cloud's own Go SDK from what Passport's
// admission webhook gives a pod, and prints, per cloud, the identity the cloud issued
// credentials for, or "FAILED: <error>". It exits 1 when any cloud failed.
//
//   - aws: aws-sdk-go-v2's config.LoadDefaultConfig (web identity from AWS_ROLE_ARN and
//     AWS_WEB_IDENTITY_TOKEN_FILE, STS from AWS_ENDPOINT_URL_STS), then STS GetCallerIdentity.
//   - gcp: golang.org/x/oauth2/google on the external_account credential configuration that
//     GOOGLE_APPLICATION_CREDENTIALS names: Google STS, then service-account impersonation.
//   - azure: azidentity's NewWorkloadIdentityCredential from AZURE_CLIENT_ID, AZURE_TENANT_ID,
//     AZURE_FEDERATED_TOKEN_FILE and AZURE_AUTHORITY_HOST, then a token for ARM.
//
// Inside a container it reads its own environment:
//
//	passport-probe [aws] [gcp] [azure]
//
// Outside, given the pod as JSON and the folder where a kubelet (Passport's kubelet stand-in)
// wrote the pod's volumes as <root>/<namespace>/<pod>/<volume>/, it runs with that container's
// env instead, every path under one of its mounts rewritten to where the kubelet wrote it:
//
//	passport-probe --pod pod.json --root DIR --container app [aws] [gcp] [azure]
//
// In that mode nothing of its own environment is kept but the TLS trust (SSL_CERT_FILE,
// SSL_CERT_DIR), so stray credentials of the calling shell cannot stand in for the pod's.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"
)

// clouds in the order they are tried and printed.
var clouds = []struct {
	name string
	run  func(context.Context, *view) (string, error)
}{
	{"aws", probeAWS},
	{"gcp", probeGCP},
	{"azure", probeAzure},
}

func main() {
	podFile := flag.String("pod", "", "the pod as JSON (kubectl get pod -o json); without it, this process's own environment is the container's")
	root := flag.String("root", "", "with --pod: the folder holding <namespace>/<pod>/<volume>/ as the kubelet wrote them")
	container := flag.String("container", "", "with --pod: the container whose env and mounts to use (default: the first)")
	timeout := flag.Duration("timeout", 60*time.Second, "time allowed for each cloud")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [--pod POD.json --root DIR [--container NAME]] [aws] [gcp] [azure]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()

	selected := map[string]bool{}
	for _, arg := range flag.Args() {
		if !known(arg) {
			fmt.Fprintf(os.Stderr, "passport-probe: unknown cloud %q (aws, gcp, azure)\n", arg)
			os.Exit(2)
		}
		selected[arg] = true
	}

	v := ownView()
	if *podFile != "" {
		if *root == "" {
			fmt.Fprintln(os.Stderr, "passport-probe: --pod needs --root")
			os.Exit(2)
		}
		var err error
		if v, err = podView(*podFile, *root, *container); err != nil {
			fmt.Fprintf(os.Stderr, "passport-probe: %v\n", err)
			os.Exit(2)
		}
		if err := v.becomeProcessEnv(); err != nil {
			fmt.Fprintf(os.Stderr, "passport-probe: %v\n", err)
			os.Exit(2)
		}
	}

	failed := false
	for _, cloud := range clouds {
		if len(selected) > 0 && !selected[cloud.name] {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		identity, err := cloud.run(ctx, v)
		cancel()
		if err != nil {
			failed = true
			fmt.Printf("  %-5s FAILED: %v\n", cloud.name, err)
			continue
		}
		fmt.Printf("  %-5s %s\n", cloud.name, identity)
	}
	if failed {
		os.Exit(1)
	}
}

func known(name string) bool {
	for _, cloud := range clouds {
		if cloud.name == name {
			return true
		}
	}
	return false
}
