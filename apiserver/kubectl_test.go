package apiserver_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

const kubectlBin = "/usr/bin/kubectl"

// kubectl runs the real kubectl against s, with stdin, and returns its output and error.
func kubectl(t *testing.T, s *apiservertest.Server, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectlBin, append([]string{"--kubeconfig", s.Kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECACHEDIR="+t.TempDir(), "HOME="+t.TempDir())
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func needKubectl(t *testing.T) {
	if _, err := os.Stat(kubectlBin); err != nil {
		t.Skipf("kubectl is not installed at %s", kubectlBin)
	}
}

func TestKubectlExplore(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	for _, c := range [][]string{
		{"version"},
		{"get", "ns"},
		{"api-resources"},
		{"create", "configmap", "c1", "--from-literal=a=b"},
		{"get", "cm", "-o", "wide"},
		{"get", "cm", "c1", "-o", "yaml"},
	} {
		out, err := kubectl(t, s, "", c...)
		t.Logf("kubectl %v: err=%v\n%s", c, err, out)
	}
	pod := `apiVersion: v1
kind: Pod
metadata:
  name: nginx
  labels:
    app: nginx
spec:
  containers:
  - name: nginx
    image: nginx:1.7.9
    ports:
    - containerPort: 80
`
	out, err := kubectl(t, s, pod, "apply", "-f", "-")
	t.Logf("apply: %v\n%s", err, out)
	out, err = kubectl(t, s, pod, "apply", "-f", "-")
	t.Logf("apply2: %v\n%s", err, out)
	out, err = kubectl(t, s, strings.Replace(pod, "1.7.9", "1.8", 1), "apply", "-f", "-")
	t.Logf("apply3: %v\n%s", err, out)
	out, err = kubectl(t, s, "", "get", "pods", "-l", "app in (nginx)", "-o", "wide")
	t.Logf("get: %v\n%s", err, out)
	out, err = kubectl(t, s, "", "describe", "pod", "nginx")
	t.Logf("describe: %v\n%s", err, out)
	out, err = kubectl(t, s, strings.Replace(pod, "containers:", "bogus: 1\n  containers:", 1), "apply", "-f", "-")
	t.Logf("bogus: %v\n%s", err, out)
	out, err = kubectl(t, s, "", "delete", "pod", "-l", "app=nginx")
	t.Logf("delete: %v\n%s", err, out)
}
