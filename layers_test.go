// Package logplane_test holds the checks that keep the repository's shape: which package may
// import what (docs/ARCHITECTURE.md, "Layers"), and that every package says what it is.
package logplane_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/logplane/logplane"

type pkg struct {
	ImportPath string
	Dir        string
	Imports    []string
	GoFiles    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// rel is the package's folder in the repository, "" for the root.
func rel(p pkg) string { return strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/") }

func under(path string, roots ...string) bool {
	for _, r := range roots {
		if path == r || strings.HasPrefix(path, r+"/") {
			return true
		}
	}
	return false
}

// TestLayers checks the import rules of docs/ARCHITECTURE.md on production code (not tests).
func TestLayers(t *testing.T) {
	rules := []struct {
		who    []string // the packages the rule is about (folders, with their subfolders)
		bad    []string // import paths (prefixes) they must not import
		reason string
	}{
		{[]string{"proto", "kinds", "defaults", "validation", "printers", "dataplane", "projections", "apiserver", "admission", "registry", "reconcilers", "nodeagent", "encryption", "cmd"},
			[]string{"github.com/nats-io/"}, "only eventlog talks to NATS"},
		{[]string{"proto"}, []string{module + "/eventlog", module + "/kinds", module + "/projections", module + "/apiserver", module + "/registry", module + "/reconcilers", module + "/nodeagent", module + "/dataplane"},
			"proto imports nothing of ours but other protos"},
		{[]string{"kinds", "defaults", "validation", "printers"}, []string{module + "/eventlog", module + "/projections", module + "/registry", module + "/dataplane", "github.com/containerd/"},
			"object semantics are pure: no log, no machine"},
		{[]string{"dataplane"}, []string{module + "/eventlog", module + "/projections", module + "/registry", module + "/apiserver", module + "/reconcilers"},
			"the dataplane knows the machine, not the log"},
		{[]string{"apiserver", "admission", "registry", "projections", "eventlog", "reconcilers"}, []string{"github.com/containerd/", "sigs.k8s.io/knftables", "github.com/google/nftables", "github.com/vishvananda/netlink", module + "/dataplane", module + "/nodeagent"},
			"the control plane never touches the machine"},
		{[]string{"reconcilers"}, []string{module + "/apiserver"}, "reconcilers read projections and write through the registry, not HTTP"},
	}
	for _, p := range listPackages(t) {
		r := rel(p)
		if strings.HasSuffix(r, "test") || strings.Contains(r, "test/") {
			continue // test support packages (eventlogtest, ...)
		}
		for _, imp := range p.Imports {
			if imp == "testing" && !under(r, "cmd") {
				t.Errorf("%s imports testing: production code must not", r)
			}
			for _, rule := range rules {
				if !under(r, rule.who...) {
					continue
				}
				for _, b := range rule.bad {
					if strings.HasPrefix(imp, b) || imp == strings.TrimSuffix(b, "/") {
						t.Errorf("%s imports %s: %s", r, imp, rule.reason)
					}
				}
			}
		}
	}
}

// TestPackageDocs checks that every package has exactly one doc comment.
func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		if len(p.GoFiles) == 0 {
			continue
		}
		docs := 0
		for _, f := range p.GoFiles {
			src, err := os.ReadFile(filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			af, err := parser.ParseFile(token.NewFileSet(), f, src, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if af.Doc != nil && !strings.HasPrefix(strings.TrimSpace(af.Doc.Text()), "Code generated") {
				docs++
			}
		}
		if docs != 1 {
			t.Errorf("%s has %d package doc comments, want exactly 1", rel(p), docs)
		}
	}
}

// TestDaemonCarriesNoCLI checks that the daemon links none of the CLI's libraries: kubectl (and
// kustomize through it) are lpctl's; a release of the daemon need not carry them.
func TestDaemonCarriesNoCLI(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./cmd/logplane").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		for _, bad := range []string{"k8s.io/kubectl", "k8s.io/cli-runtime", "sigs.k8s.io/kustomize"} {
			if p == bad || strings.HasPrefix(p, bad+"/") {
				t.Errorf("cmd/logplane links %s", p)
			}
		}
	}
}
