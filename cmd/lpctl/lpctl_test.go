package main

import (
	"bytes"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/registry"
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

// TestHistoryCausedBy: the history of an object made by a reconciler starts with the chain of
// changes that led to it, each with its actor and object, back to the user's.
func TestHistoryCausedBy(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	kc := s.Kubeconfig
	lpctl(t, kc, "create", "configmap", "source", "--from-literal=a=1")
	rv := strings.TrimSpace(lpctl(t, kc, "get", "cm", "source", "-o", "jsonpath={.metadata.resourceVersion}"))
	cause, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	cms, _ := builtin.Catalog().ByGroupResource(schema.GroupResource{Resource: "configmaps"})
	for _, name := range []string{"copy", "copy-of-copy"} {
		obj, err := s.API.Registry().Create(t.Context(), cms,
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}},
			registry.Request{Actor: registry.Reconciler("copier"), Cause: cause})
		if err != nil {
			t.Fatal(err)
		}
		acc, err := meta.Accessor(obj)
		if err != nil {
			t.Fatal(err)
		}
		if cause, err = strconv.ParseUint(acc.GetResourceVersion(), 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	hist := lpctl(t, kc, "history", "cm/copy-of-copy")
	want := regexp.MustCompile(`(?s)^REVISION +TIME +ACTOR +REASON +CAUSE\n` +
		rv + ` +\S+ +user/admin +create +-\n    created configmaps/default/source\n` +
		`\d+ +\S+ +reconciler/copier +create +` + rv + `\n    created configmaps/default/copy\n` +
		`\d+ +\S+ +reconciler/copier +create +\d+\n    created\n$`)
	if !want.MatchString(hist) {
		t.Errorf("history of an object made by a reconciler:\n%s", hist)
	}
}
