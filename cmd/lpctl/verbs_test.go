package main

import (
	"regexp"
	"strings"
	"testing"

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
