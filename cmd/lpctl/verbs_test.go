package main

import (
	"strings"
	"testing"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

// These tests run the lpctl binary (see binary_test.go) on logplane's verbs.

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
