// passport-kube: a real Kubernetes control plane for Passport's e2e tests, in one process. It runs
// an embedded etcd, the kube-apiserver and the few kube-controller-manager controllers that a
// cluster without nodes still has, all on loopback. It is built from the Kubernetes release named
// in go.mod; the Rust side (e2e/src/realapi.rs) builds, starts and stops it.
//
// The caller provides the serving certificate (signed by the CA its clients trust) and a folder.
// The binary writes into that folder the service-account key, the token file, a kubeconfig for
// an admin in system:masters (`kubeconfig`) and, once /readyz answers and the controllers run,
// a `ready` marker. It stops on SIGTERM, SIGINT or when its standard input closes (so a killed
// parent never leaves it behind).
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
)

// The controllers a cluster without nodes still needs: default ServiceAccounts, their legacy
// token secrets, namespace deletion, cascading deletion and kube-root-ca.crt in every namespace.
const controllers = "serviceaccount-controller,serviceaccount-token-controller,namespace-controller," +
	"garbage-collector-controller,root-ca-certificate-publisher-controller"

// The user the tests act as, and the one the controller manager acts as.
const (
	adminUser = "passport-e2e-admin"
	kcmUser   = "system:kube-controller-manager"
)

// A binding real clusters add (kind and kubeadm users do it by hand) so that clients with no
// credentials, such as cloud token exchanges, can read the issuer's discovery document and JWKS.
const discoveryBinding = "passport-e2e:service-account-issuer-discovery:unauthenticated"

type config struct {
	dir      string
	port     int
	caFile   string
	certFile string
	keyFile  string
	issuer   string
	cleanup  bool
	timeout  time.Duration
	auditLog string
}

func main() {
	var c config
	flag.StringVar(&c.dir, "dir", "", "folder for etcd data, keys, the kubeconfig and the ready marker (required)")
	flag.IntVar(&c.port, "secure-port", 0, "the API server's HTTPS port on 127.0.0.1 (required)")
	flag.StringVar(&c.caFile, "ca-file", "", "PEM CA that signed --cert-file; clients and kube-root-ca.crt trust it (required)")
	flag.StringVar(&c.certFile, "cert-file", "", "PEM serving certificate for 127.0.0.1 (required)")
	flag.StringVar(&c.keyFile, "key-file", "", "PEM private key of --cert-file (required)")
	flag.StringVar(&c.issuer, "issuer", "", "service-account token issuer (default https://127.0.0.1:<secure-port>)")
	flag.BoolVar(&c.cleanup, "cleanup", false, "remove --dir on exit")
	flag.DurationVar(&c.timeout, "ready-timeout", 2*time.Minute, "give up when not ready within this time")
	flag.StringVar(&c.auditLog, "audit-log", "", "write the API server's audit log (every request at Metadata level, JSON lines) to this file")
	flag.Parse()
	if c.dir == "" || c.port == 0 || c.caFile == "" || c.certFile == "" || c.keyFile == "" {
		fmt.Fprintln(os.Stderr, "passport-kube: --dir, --secure-port, --ca-file, --cert-file and --key-file are required")
		os.Exit(2)
	}
	for _, path := range []*string{&c.dir, &c.caFile, &c.certFile, &c.keyFile, &c.auditLog} {
		if *path == "" {
			continue
		}
		abs, err := filepath.Abs(*path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "passport-kube:", err)
			os.Exit(2)
		}
		*path = abs
	}
	if c.issuer == "" {
		c.issuer = "https://127.0.0.1:" + strconv.Itoa(c.port)
	}
	err := run(c)
	if c.cleanup {
		_ = os.RemoveAll(c.dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "passport-kube:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// The parent holds our stdin; EOF means it is gone.
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()

	saKey, err := writeServiceAccountKey(c.dir)
	if err != nil {
		return err
	}
	adminToken, kcmToken := randomToken(), randomToken()
	tokens := filepath.Join(c.dir, "tokens.csv")
	tokenLines := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n%s,%s,%s,\"system:masters\"\n",
		adminToken, adminUser, adminUser, kcmToken, kcmUser, kcmUser)
	if err := os.WriteFile(tokens, []byte(tokenLines), 0o600); err != nil {
		return err
	}
	server := "https://127.0.0.1:" + strconv.Itoa(c.port)
	kcmKubeconfig := filepath.Join(c.dir, "kcm.kubeconfig")
	if err := writeKubeconfig(kcmKubeconfig, server, c.caFile, kcmToken); err != nil {
		return err
	}

	etcd, etcdURL, err := startEtcd(filepath.Join(c.dir, "etcd"))
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer etcd.Close()

	apiserverArgs := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.port),
		"--cert-dir=" + filepath.Join(c.dir, "certs"),
		"--tls-cert-file=" + c.certFile,
		"--tls-private-key-file=" + c.keyFile,
		"--token-auth-file=" + tokens,
		"--anonymous-auth=true",
		"--authorization-mode=RBAC",
		"--service-account-issuer=" + c.issuer,
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
	if c.auditLog != "" {
		// Metadata level: who did what to which object, and the answer's code; no bodies.
		policy := filepath.Join(c.dir, "audit-policy.yaml")
		const rules = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n"
		if err := os.WriteFile(policy, []byte(rules), 0o600); err != nil {
			return err
		}
		apiserverArgs = append(apiserverArgs,
			"--audit-policy-file="+policy,
			"--audit-log-path="+c.auditLog,
			"--audit-log-mode=blocking",
			"--audit-log-maxbackup=0",
		)
	}
	apiserverDone := make(chan error, 1)
	go func() {
		apiserverDone <- runAPIServer(ctx, apiserverArgs)
	}()

	readyCtx, readyCancel := context.WithTimeout(ctx, c.timeout)
	defer readyCancel()
	if err := waitReady(readyCtx, server, c.caFile, adminToken, apiserverDone); err != nil {
		return err
	}
	adminKubeconfig := filepath.Join(c.dir, "kubeconfig")
	if err := writeKubeconfig(adminKubeconfig, server, c.caFile, adminToken); err != nil {
		return err
	}
	client, err := clientFor(adminKubeconfig)
	if err != nil {
		return err
	}
	if err := bindDiscoveryForUnauthenticated(readyCtx, client); err != nil {
		return err
	}

	kcmDone := make(chan error, 1)
	go func() {
		kcmDone <- runControllerManager(ctx, []string{
			"--kubeconfig=" + kcmKubeconfig,
			"--controllers=" + controllers,
			"--service-account-private-key-file=" + saKey,
			"--root-ca-file=" + c.caFile,
			"--use-service-account-credentials=false",
			"--leader-elect=false",
			"--secure-port=0",
			"--profiling=false",
		})
	}()
	if err := waitDefaultServiceAccount(readyCtx, client, kcmDone); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.dir, "ready"), []byte(server+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Println("ready", server)

	select {
	case <-ctx.Done():
	case err := <-apiserverDone:
		return fmt.Errorf("kube-apiserver stopped: %w", err)
	case err := <-kcmDone:
		return fmt.Errorf("kube-controller-manager stopped: %w", err)
	}
	// Let the API server finish its graceful shutdown before etcd goes away.
	select {
	case <-apiserverDone:
	case <-time.After(20 * time.Second):
	}
	return nil
}

func runAPIServer(ctx context.Context, args []string) error {
	s := apiserveroptions.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, set := range s.Flags().FlagSets {
		fs.AddFlagSet(set)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return errors.Join(errs...)
	}
	return apiserverapp.Run(ctx, completed)
}

func runControllerManager(ctx context.Context, args []string) error {
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	known, disabled, aliases := kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases()
	named := s.Flags(known, disabled, aliases)
	s.ParsedFlags = &named
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	for _, set := range named.FlagSets {
		fs.AddFlagSet(set)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := s.Config(ctx, known, disabled, aliases)
	if err != nil {
		return err
	}
	return kcmapp.Run(ctx, c.Complete())
}

func startEtcd(dir string) (*embed.Etcd, string, error) {
	clientPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	clientURL := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(clientPort)}
	peerURL := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(peerPort)}
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.LogLevel = "error"
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.Name + "=" + peerURL.String()
	// Test data: durability across power loss is not needed, speed is.
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, clientURL.String(), nil
	case err := <-e.Err():
		e.Close()
		return nil, "", err
	case <-time.After(time.Minute):
		e.Close()
		return nil, "", errors.New("etcd not ready within a minute")
	}
}

func waitReady(ctx context.Context, server, caFile, token string, apiserverDone <-chan error) error {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("no certificate in %s", caFile)
	}
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	last := "no answer"
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/readyz", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := client.Do(req); err != nil {
			last = err.Error()
		} else {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		select {
		case err := <-apiserverDone:
			return fmt.Errorf("kube-apiserver stopped before it was ready: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready (last /readyz: %s): %w", last, ctx.Err())
		case <-tick.C:
		}
	}
}

func bindDiscoveryForUnauthenticated(ctx context.Context, client kubernetes.Interface) error {
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: discoveryBinding},
		RoleRef: rbacv1.RoleRef{
			APIGroup: rbacv1.GroupName,
			Kind:     "ClusterRole",
			Name:     "system:service-account-issuer-discovery",
		},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:unauthenticated"}},
	}
	_, err := client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// Ready means what a test needs: the controller manager has given `default` its ServiceAccount.
func waitDefaultServiceAccount(ctx context.Context, client kubernetes.Interface, kcmDone <-chan error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		select {
		case err := <-kcmDone:
			return fmt.Errorf("kube-controller-manager stopped before it was ready: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("no default ServiceAccount in namespace default (last: %v): %w", err, ctx.Err())
		case <-tick.C:
		}
	}
}

func clientFor(kubeconfig string) (kubernetes.Interface, error) {
	restConfig, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(restConfig)
}

func writeKubeconfig(path, server, caFile, token string) error {
	text := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: passport-e2e
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: passport-e2e-admin
  user:
    token: %s
contexts:
- name: passport-e2e
  context:
    cluster: passport-e2e
    user: passport-e2e-admin
current-context: passport-e2e
`, server, caFile, token)
	return os.WriteFile(path, []byte(text), 0o600)
}

func writeServiceAccountKey(dir string) (string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "sa.key")
	block := &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}
	return path, os.WriteFile(path, pem.EncodeToMemory(block), 0o600)
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
