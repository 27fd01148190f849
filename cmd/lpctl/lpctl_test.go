package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

// lpctl runs the real command tree in-process against the test server and returns its output.
func lpctl(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	// kubectl's commands print to the IOStreams they are made with (os.Stdout): capture it.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	cmd := newRootCommand(append([]string{"lpctl"}, args...))
	cmd.SetArgs(append([]string{"--kubeconfig", kubeconfig}, args...))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	runErr := cmd.ExecuteContext(t.Context())
	w.Close()
	os.Stdout = stdout
	var piped bytes.Buffer
	if _, err := piped.ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	if runErr != nil {
		t.Fatalf("lpctl %s: %v\n%s%s", strings.Join(args, " "), runErr, errOut.String(), piped.String())
	}
	return piped.String() + out.String()
}

func TestHistoryAuditAndAt(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	kc := s.Kubeconfig
	lpctl(t, kc, "create", "configmap", "settings", "--from-literal=a=1")
	before := strings.TrimSpace(lpctl(t, kc, "get", "cm", "settings", "-o", "jsonpath={.metadata.resourceVersion}"))
	lpctl(t, kc, "patch", "configmap", "settings", "-p", `{"data":{"a":"2"}}`)
	lpctl(t, kc, "delete", "configmap", "settings")

	hist := lpctl(t, kc, "history", "cm/settings")
	for _, want := range []string{"REVISION", "user/admin", "create", "created", `~ data.a: "1" → "2"`, "delete", "deleted"} {
		if !strings.Contains(hist, want) {
			t.Errorf("history lacks %q:\n%s", want, hist)
		}
	}
	audit := lpctl(t, kc, "audit", "--resource", "configmaps", "--name", "settings")
	if n := strings.Count(audit, "configmaps/default/settings"); n != 3 {
		t.Errorf("audit shows %d changes to the configmap, want 3:\n%s", n, audit)
	}
	past := lpctl(t, kc, "get", "cm", "settings", "--at", before, "-o", "jsonpath={.data.a}")
	if strings.TrimSpace(past) != "1" {
		t.Errorf("get --at %s gave data.a=%q, want 1", before, past)
	}
}
