package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A ginkgo log as a parallel pass prints it: passed tests as dots, failures with their name (the
// node type inserted, the labels appended) and message.
const ginkgoLog = `Running Suite: Kubernetes e2e suite
••
• [FAILED] [0.033 seconds]
[sig-apps] Job [It] should delete a job [Conformance] [sig-apps, Conformance]
/root/go/pkg/mod/k8s.io/kubernetes@v1.34.4/test/e2e/apps/job.go:1

  Timeline >>
  STEP: Creating a kubernetes client
  << Timeline

  [FAILED] failed to ensure active pods == parallelism:
  Timed out after 900.001s.
  In [It] at: /root/go/pkg/mod/k8s.io/kubernetes@v1.34.4/test/e2e/apps/job.go:2 @ 12/06/26 09:08:22.863
------------------------------
•
• [TIMEDOUT] [2688.442 seconds]
[sig-network] Service endpoints latency [It] should not be very high [Conformance] [sig-network, Conformance]
  << Timeline

  [TIMEDOUT] A suite timeout occurred
  In [It] at: /x.go:60
`

const junitReport = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="3">
  <testsuite name="Kubernetes e2e suite" tests="3">
    <testcase name="[It] [sig-node] Pods should be submitted and removed [Conformance]" status="passed" time="3"></testcase>
    <testcase name="[It] [sig-node] Pods should get a host IP [Conformance]" status="failed" time="2">
      <failure message="[FAILED] Expected&#xA;    &lt;string&gt;: a&#xA;to equal b" type="failed">details</failure>
    </testcase>
    <testcase name="[It] [sig-node] Pods should be updated [NodeConformance]" status="passed" time="1"></testcase>
    <testcase name="[It] [sig-apps] Job should delete a job [Conformance]" status="skipped" time="0"><skipped message="skipped"/></testcase>
  </testsuite>
</testsuites>`

func TestSummaryFromLogAndReport(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	log := write("ginkgo.log", ginkgoLog)
	tests := write("tests.txt", strings.Join([]string{
		"[sig-apps] Job should delete a job [Conformance]",
		"[sig-apps] Deployment should run [Conformance]",
		"[sig-network] Service endpoints latency should not be very high [Conformance]",
		"[sig-network] DNS should provide DNS for the cluster [Conformance]",
		"[sig-storage] Projected should mount [Conformance]",
	}, "\n")+"\n")
	junit := write("junit.xml", junitReport)

	results := map[string]*result{}
	re := regexp.MustCompile(`\[Conformance\]`)
	if err := readReport(junit, re, results); err != nil {
		t.Fatal(err)
	}
	unfinished, err := readLog(log, tests, re, results)
	if err != nil {
		t.Fatal(err)
	}
	// 5 tests, 5 dots in the log (3 passed, 2 failed): all finished.
	if unfinished != 0 {
		t.Errorf("unfinished = %d, want 0", unfinished)
	}
	want := map[string]string{
		"[sig-node] Pods should be submitted and removed [Conformance]":                 "passed",
		"[sig-node] Pods should get a host IP [Conformance]":                            "failed",
		"[sig-apps] Job should delete a job [Conformance]":                              "failed", // the log's failure beats the report's skip
		"[sig-apps] Deployment should run [Conformance]":                                "passed",
		"[sig-network] Service endpoints latency should not be very high [Conformance]": "failed",
		"[sig-network] DNS should provide DNS for the cluster [Conformance]":            "passed",
		"[sig-storage] Projected should mount [Conformance]":                            "passed",
	}
	for name, status := range want {
		r, ok := results[name]
		if !ok {
			t.Errorf("%s: missing from %v", name, keys(results))
			continue
		}
		if r.status != status {
			t.Errorf("%s: %s, want %s", name, r.status, status)
		}
	}
	if len(results) != len(want) {
		t.Errorf("results %v, want %d", keys(results), len(want))
	}
	if got := results["[sig-apps] Job should delete a job [Conformance]"]; got.reason != "failed to ensure active pods == parallelism: Timed out after 900.001s." || got.sig != "[sig-apps]" {
		t.Errorf("job failure: reason %q, sig %q", got.reason, got.sig)
	}
	if got := results["[sig-node] Pods should get a host IP [Conformance]"].reason; got != "Expected <string>: a to equal b" {
		t.Errorf("junit failure reason %q", got)
	}

	var out strings.Builder
	writeSummary(&out, results, 2)
	for _, line := range []string{
		"4 passed out of 7 run (3 failed); 0 skipped.",
		"2 tests did not finish",
		"| [sig-apps] | 1 | 1 | 0 |",
		"| [sig-network] | 1 | 1 | 0 |",
		"| [sig-node] | 1 | 1 | 0 |",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("summary lacks %q:\n%s", line, out.String())
		}
	}
}

func keys(m map[string]*result) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
