package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"sync"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/logplane/logplane/apiserver/pki"
	"github.com/logplane/logplane/nodeagent/podworker"
)

// defaultAPIServer is the API server the agent asks for tokens when neither --api-server nor
// the data directory's kubeconfig names one.
const defaultAPIServer = "https://127.0.0.1:6443"

// apiServerURL is --api-server, else --join's, else the server of the kubeconfig in the first
// of dirs that has one (the data directory's, which the API server writes, or the one beside
// --pki-dir on a control-plane machine), else defaultAPIServer.
func apiServerURL(flag, join string, dirs ...string) string {
	if flag != "" {
		return flag
	}
	if join != "" {
		return join
	}
	for _, dir := range dirs {
		cfg, err := clientcmd.LoadFromFile(filepath.Join(dir, "kubeconfig"))
		if err != nil {
			continue
		}
		for _, c := range cfg.Clusters {
			if c.Server != "" {
				return c.Server
			}
		}
	}
	return defaultAPIServer
}

// nodeTokens makes, for each node, a client of the TokenRequest API that authenticates as the
// node (system:node:<name> in system:nodes, by a client certificate of the cluster CA), as the
// kubelet's client does: the API server gives a node only tokens bound to its own pods. creds
// gives the node's client TLS.
func nodeTokens(url string, creds func(node string) (rest.TLSClientConfig, error)) func(string) podworker.Tokens {
	return func(node string) podworker.Tokens { return &tokenClient{url: url, creds: creds, node: node} }
}

// caClientCreds issues each node a client certificate of ca: for agents beside the control
// plane, which hold the CA (`logplane up`, simulated nodes).
func caClientCreds(ca *pki.CA) func(string) (rest.TLSClientConfig, error) {
	return func(node string) (rest.TLSClientConfig, error) {
		cert, key, err := ca.Issue("system:node:"+node, []string{"system:nodes"}, nil, x509.ExtKeyUsageClientAuth)
		if err != nil {
			return rest.TLSClientConfig{}, fmt.Errorf("node %s client certificate: %w", node, err)
		}
		return rest.TLSClientConfig{CAData: ca.CertPEM, CertData: cert, KeyData: key}, nil
	}
}

// identityCreds is the certificate a node got when it joined (dir: identityDir), which serves
// as its client certificate too.
func identityCreds(dir string) func(string) (rest.TLSClientConfig, error) {
	return func(string) (rest.TLSClientConfig, error) {
		return rest.TLSClientConfig{CAFile: filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "node.crt"), KeyFile: filepath.Join(dir, "node.key")}, nil
	}
}

// tokenClient is one node's client, made at its first use (the API server may start later).
type tokenClient struct {
	url   string
	creds func(node string) (rest.TLSClientConfig, error)
	node  string

	once sync.Once
	cs   kubernetes.Interface
	err  error
}

func (c *tokenClient) CreateToken(ctx context.Context, namespace, name string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	c.once.Do(func() {
		tlsc, err := c.creds(c.node)
		if err != nil {
			c.err = err
			return
		}
		c.cs, c.err = kubernetes.NewForConfig(&rest.Config{Host: c.url, UserAgent: "logplane-agent/" + c.node, TLSClientConfig: tlsc})
	})
	if c.err != nil {
		return nil, c.err
	}
	return c.cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, tr, metav1.CreateOptions{})
}
