package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// result is what a command printed and how it ended.
type result struct {
	out, errOut string
	err         error
}

func (r result) String() string {
	return fmt.Sprintf("exit: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.out, r.errOut)
}

// run runs a program as the user would, with KUBECONFIG pointing at the machine's kubeconfig.
func (m *machine) run(timeout time.Duration, stdin string, name string, args ...string) result {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(m.t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+m.kubeconfig(), "KUBECACHEDIR="+filepath.Join(m.logs, "kubecache"))
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return result{out: out.String(), errOut: errOut.String(), err: err}
}

// kubectl runs kubectl and returns what it printed, whether it succeeded or not.
func (m *machine) kubectl(args ...string) result {
	m.t.Helper()
	return m.run(2*time.Minute, "", kubectlPath, args...)
}

// k runs kubectl, fails the test if it fails, and returns its standard output.
func (m *machine) k(args ...string) string {
	m.t.Helper()
	r := m.kubectl(args...)
	if r.err != nil {
		m.t.Fatalf("kubectl %s: %s", strings.Join(args, " "), r)
	}
	return r.out
}

// apply runs kubectl apply -f - with the manifest and returns what it printed.
func (m *machine) apply(manifest string) string {
	m.t.Helper()
	r := m.run(time.Minute, manifest, kubectlPath, "apply", "-f", "-")
	if r.err != nil {
		m.t.Fatalf("kubectl apply: %s", r)
	}
	return r.out
}

// lpctl runs lpctl and fails the test if it fails.
func (m *machine) lpctl(args ...string) string {
	m.t.Helper()
	r := m.run(time.Minute, "", m.bin.lpctl, args...)
	if r.err != nil {
		m.t.Fatalf("lpctl %s: %s", strings.Join(args, " "), r)
	}
	return r.out
}

// table is a table kubectl printed: rows of cells by column name.
type table struct {
	header []string
	rows   []map[string]string
	text   string
}

var columnGap = regexp.MustCompile(`\S+( \S+)*`)

// parseTable reads kubectl's aligned columns. Column names may hold single spaces (NOMINATED
// NODE); cells are cut at the columns' starting offsets, which kubectl's tab writer aligns.
func parseTable(t *testing.T, text string) table {
	t.Helper()
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	tbl := table{text: text}
	if len(lines) == 0 || lines[0] == "" {
		return tbl
	}
	cols := columnGap.FindAllStringIndex(lines[0], -1)
	for _, c := range cols {
		tbl.header = append(tbl.header, lines[0][c[0]:c[1]])
	}
	for _, line := range lines[1:] {
		row := map[string]string{}
		for i, c := range cols {
			start, end := c[0], len(line)
			if i+1 < len(cols) {
				end = cols[i+1][0]
			}
			if start > len(line) {
				start = len(line)
			}
			if end > len(line) {
				end = len(line)
			}
			row[tbl.header[i]] = strings.TrimSpace(line[start:end])
		}
		tbl.rows = append(tbl.rows, row)
	}
	return tbl
}

// get runs kubectl get with args and parses the table it printed.
func (m *machine) get(args ...string) table {
	m.t.Helper()
	return parseTable(m.t, m.k(append([]string{"get"}, args...)...))
}

// row returns the row whose NAME is name, failing the test if there is none.
func (tb table) row(t *testing.T, name string) map[string]string {
	t.Helper()
	for _, r := range tb.rows {
		if r["NAME"] == name {
			return r
		}
	}
	t.Fatalf("no row %q in:\n%s", name, tb.text)
	return nil
}

// expect checks the cells of a row against want (column → value).
func expect(t *testing.T, tb table, row map[string]string, want map[string]string) {
	t.Helper()
	for col, v := range want {
		got, ok := row[col]
		if !ok {
			t.Errorf("no column %s in:\n%s", col, tb.text)
			continue
		}
		if got != v {
			t.Errorf("%s of %s is %q, want %q, in:\n%s", col, row["NAME"], got, v, tb.text)
		}
	}
}

// eventually retries f until it returns nil or timeout passes, then fails with f's last error.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitAPI waits until the API server answers kubectl.
func (m *machine) waitAPI() {
	m.t.Helper()
	eventually(m.t, 60*time.Second, func() error {
		if _, err := os.Stat(m.kubeconfig()); err != nil {
			return err
		}
		if r := m.kubectl("get", "--raw", "/readyz"); r.err != nil {
			return fmt.Errorf("API server not ready: %s", r)
		}
		return nil
	})
}

// waitNodeReady waits until kubectl shows the machine's node Ready.
func (m *machine) waitNodeReady() {
	m.t.Helper()
	eventually(m.t, 60*time.Second, func() error {
		r := m.kubectl("wait", "--for=condition=Ready", "node/"+m.node, "--timeout=20s")
		if r.err != nil {
			return fmt.Errorf("node not ready: %s", r)
		}
		return nil
	})
}

// podNames lists the names of the pods a selector matches, in kubectl's order.
func (m *machine) podNames(selector string) []string {
	m.t.Helper()
	out := m.k("get", "pods", "-l", selector, "-o", "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}")
	return strings.Fields(out)
}

// jsonpath reads a field of an object with kubectl get -o jsonpath.
func (m *machine) jsonpath(object, path string) string {
	m.t.Helper()
	return m.k("get", object, "-o", "jsonpath="+path)
}

// waitRootCA waits until namespace ns has the ConfigMap kube-root-ca.crt holding the CA that the
// API server wrote in the machine's data directory, as the conformance suite waits for it in
// every test's namespace.
func (m *machine) waitRootCA(ns string) {
	m.t.Helper()
	eventually(m.t, 30*time.Second, func() error {
		want, err := os.ReadFile(filepath.Join(m.dir, "pki", "ca.crt"))
		if err != nil {
			return err
		}
		r := m.kubectl("-n", ns, "get", "configmap", "kube-root-ca.crt", "-o", `jsonpath={.data.ca\.crt}`)
		if r.err != nil || r.out != string(want) {
			return fmt.Errorf("kube-root-ca.crt in %s: want the API server's CA:\n%s\ngot %s", ns, want, r)
		}
		return nil
	})
}
