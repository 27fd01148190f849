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

// must runs kubectl and fails the test if it fails or its output lacks any of want.
func must(t *testing.T, s *apiservertest.Server, stdin string, want []string, args ...string) string {
	t.Helper()
	out, err := kubectl(t, s, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("kubectl %s: output lacks %q:\n%s", strings.Join(args, " "), w, out)
		}
	}
	return out
}

// fails runs kubectl, expecting it to fail with output containing every one of want.
func fails(t *testing.T, s *apiservertest.Server, stdin string, want []string, args ...string) {
	t.Helper()
	out, err := kubectl(t, s, stdin, args...)
	if err == nil {
		t.Fatalf("kubectl %s succeeded, want an error:\n%s", strings.Join(args, " "), out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("kubectl %s: output lacks %q:\n%s", strings.Join(args, " "), w, out)
		}
	}
}

const nginxPod = `apiVersion: v1
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

func TestKubectlApply(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	must(t, s, "", []string{"Server Version: v1.34"}, "version")
	must(t, s, nginxPod, []string{"pod/nginx created"}, "apply", "-f", "-")
	must(t, s, nginxPod, []string{"pod/nginx unchanged"}, "apply", "-f", "-")
	must(t, s, strings.Replace(nginxPod, "1.7.9", "1.8", 1), []string{"pod/nginx configured"}, "apply", "-f", "-")
	must(t, s, "", []string{"image: nginx:1.8", "app: nginx"}, "get", "pod", "nginx", "-o", "yaml")
	fails(t, s, strings.Replace(nginxPod, "containers:", "bogus: 1\n  containers:", 1), []string{`unknown field "spec.bogus"`}, "apply", "-f", "-")
	must(t, s, "", []string{"image: nginx:1.8"}, "get", "pod", "nginx", "-o", "yaml")
	must(t, s, "", []string{`pod "nginx" deleted`}, "delete", "pod", "-l", "app=nginx")
	fails(t, s, "", []string{"NotFound", `"nginx" not found`}, "get", "pod", "nginx")
}
