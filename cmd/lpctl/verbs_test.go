package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

// These tests run the lpctl binary (see binary_test.go) on logplane's verbs.

// TestAuditLimitNewest: --limit N shows the newest N changes, oldest first, as its help says.
func TestAuditLimitNewest(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	kc := s.Kubeconfig
	lpctlOK(t, "--kubeconfig", kc, "create", "configmap", "settings", "--from-literal=a=1")
	lpctlOK(t, "--kubeconfig", kc, "patch", "configmap", "settings", "-p", `{"data":{"a":"2"}}`)
	lpctlOK(t, "--kubeconfig", kc, "delete", "configmap", "settings")
	out := lpctlOK(t, "--kubeconfig", kc, "audit", "--resource", "configmaps", "--name", "settings", "--limit", "2")
	want := regexp.MustCompile(`^TIME +ACTOR +CHANGE +OBJECT +REVISION +CAUSE\n` +
		`\S+ +user/admin +update +configmaps/default/settings +\d+ +-\n` +
		`\S+ +user/admin +delete +configmaps/default/settings +\d+ +-\n$`)
	if !want.MatchString(out) {
		t.Errorf("audit --limit 2, want the update and the deletion:\n%s", out)
	}
}

// TestAuditShowsDenials: a request that authorization refused is in the audit, as DENIED with
// its verb and what it asked for.
func TestAuditShowsDenials(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{Tokens: "eve-token,eve,1001\n"})
	eve := rest.AnonymousClientConfig(s.Config)
	eve.BearerToken = "eve-token"
	_, err := kubernetes.NewForConfigOrDie(eve).CoreV1().Secrets("kube-system").List(t.Context(), metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("eve lists kube-system's secrets: %v", err)
	}
	out := lpctlOK(t, "--kubeconfig", s.Kubeconfig, "audit", "--actor", "eve")
	want := regexp.MustCompile(`(?m)^\S+ +user/eve +DENIED list +secrets/kube-system +- +-$`)
	if !want.MatchString(out) {
		t.Errorf("audit --actor eve, want eve's denied list of secrets:\n%s", out)
	}
}

// TestGetAtBeyondTheLog: get --at a time in the future, or a resourceVersion the log has not
// reached, says so instead of printing the present.
func TestGetAtBeyondTheLog(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	kc := s.Kubeconfig
	lpctlOK(t, "--kubeconfig", kc, "create", "configmap", "settings", "--from-literal=a=1")

	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	r := lpctlRun(t, "--kubeconfig", kc, "get", "cm", "--at", future)
	if r.err == nil || !regexp.MustCompile(`Error from server \(BadRequest\): .*cannot read the state at `+future+`: it is in the future`).MatchString(r.errOut) {
		t.Errorf("get --at %s (an hour from now):\n%s", future, r)
	}
	r = lpctlRun(t, "--kubeconfig", kc, "get", "cm", "settings", "--at", "99999999")
	if r.err == nil || !regexp.MustCompile(`Error from server \(Timeout\): Timeout: Too large resource version: 99999999, current: \d+`).MatchString(r.errOut) {
		t.Errorf("get --at 99999999 (beyond the log's last sequence):\n%s", r)
	}
}

// TestGetAtAges: the AGE of a list read in the past is the age each object had then.
func TestGetAtAges(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	kc := s.Kubeconfig
	lpctlOK(t, "--kubeconfig", kc, "create", "configmap", "settings", "--from-literal=a=1")
	meta := strings.Fields(lpctlOK(t, "--kubeconfig", kc, "get", "cm", "settings", "-o",
		"jsonpath={.metadata.resourceVersion} {.metadata.creationTimestamp}"))
	rv := meta[0]
	created, err := time.Parse(time.RFC3339, meta[1])
	if err != nil {
		t.Fatal(err)
	}
	// Let the configmap grow a few seconds older than the ages asked for below.
	time.Sleep(time.Until(created.Add(5 * time.Second)))

	age := func(at string) string {
		t.Helper()
		out := lpctlOK(t, "--kubeconfig", kc, "get", "cm", "settings", "--at", at, "--no-headers")
		f := strings.Fields(out)
		if len(f) != 3 {
			t.Fatalf("get cm settings --at %s printed %q", at, out)
		}
		return f[2] // NAME DATA AGE
	}
	// At its own creation it was 0s old; 2.5s after the (second-precise) creation time, 2s.
	if got := age(rv); got != "0s" {
		t.Errorf("AGE at resourceVersion %s (its creation): %s, want 0s", rv, got)
	}
	at := created.Add(2500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	if got := age(at); got != "2s" {
		t.Errorf("AGE at %s: %s, want 2s", at, got)
	}
	if got := strings.Fields(lpctlOK(t, "--kubeconfig", kc, "get", "cm", "settings", "--no-headers"))[2]; got == "0s" || got == "2s" {
		t.Errorf("AGE now: %s, want 5s or more", got)
	}
}

// TestHistoryValuesAsTheyAre: a history diff prints values as written, not HTML-escaped.
func TestHistoryValuesAsTheyAre(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	kc := s.Kubeconfig
	lpctlOK(t, "--kubeconfig", kc, "create", "configmap", "x", "--from-literal=html=<b>a & b</b>")
	lpctlOK(t, "--kubeconfig", kc, "patch", "configmap", "x", "-p", `{"data":{"html":"<i>c & d</i>"}}`)
	out := lpctlOK(t, "--kubeconfig", kc, "history", "cm/x")
	if want := `~ data.html: "<b>a & b</b>" → "<i>c & d</i>"`; !strings.Contains(out, want) {
		t.Errorf("history lacks %q:\n%s", want, out)
	}
}
