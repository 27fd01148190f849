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

// apiServerURL is --api-server, else the server of the data directory's kubeconfig (which the
// API server writes), else defaultAPIServer.
func apiServerURL(flag, dataDir string) string {
	if flag != "" {
		return flag
	}
	if cfg, err := clientcmd.LoadFromFile(filepath.Join(dataDir, "kubeconfig")); err == nil {
		for _, c := range cfg.Clusters {
			if c.Server != "" {
				return c.Server
			}
		}
	}
	return defaultAPIServer
}

// nodeTokens makes, for each node, a client of the TokenRequest API that authenticates as the
// node (system:node:<name> in system:nodes, a client certificate of the cluster CA), as the
// kubelet's client does: the API server gives a node only tokens bound to its own pods.
func nodeTokens(url string, ca *pki.CA) func(string) podworker.Tokens {
	return func(node string) podworker.Tokens { return &tokenClient{url: url, ca: ca, node: node} }
}

// tokenClient is one node's client, made at its first use (the API server may start later).
type tokenClient struct {
	url  string
	ca   *pki.CA
	node string

	once sync.Once
	cs   kubernetes.Interface
	err  error
}

func (c *tokenClient) CreateToken(ctx context.Context, namespace, name string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	c.once.Do(func() {
		cert, key, err := c.ca.Issue("system:node:"+c.node, []string{"system:nodes"}, nil, x509.ExtKeyUsageClientAuth)
		if err != nil {
			c.err = fmt.Errorf("node %s client certificate: %w", c.node, err)
			return
		}
		c.cs, c.err = kubernetes.NewForConfig(&rest.Config{Host: c.url, UserAgent: "logplane-agent/" + c.node,
			TLSClientConfig: rest.TLSClientConfig{CAData: c.ca.CertPEM, CertData: cert, KeyData: key}})
	})
	if c.err != nil {
		return nil, c.err
	}
	return c.cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, tr, metav1.CreateOptions{})
}
