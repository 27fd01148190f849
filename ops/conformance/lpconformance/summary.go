package main

import (
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// junitSuites is what ginkgo's JUnit report holds (reporters.JUnitTestSuites), as far as the summary
// needs it.
type junitSuites struct {
	Suites []struct {
		Cases []junitCase `xml:"testcase"`
	} `xml:"testsuite"`
}

type junitCase struct {
	Name    string  `xml:"name,attr"`
	Status  string  `xml:"status,attr"`
	Time    float64 `xml:"time,attr"`
	Failure *struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"failure"`
	Error *struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"error"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
}

// result is one test's outcome over every report given: a test that ran in one pass and was
// skipped in another counts as run.
type result struct {
	name, sig, status, reason string
	seconds                   float64
}

var sigPattern = regexp.MustCompile(`\[sig-[a-z0-9-]+\]`)

// summaryCommand reads ginkgo JUnit reports and writes the outcome of the tests whose name
// matches -match, by SIG, with the first line of each failure.
func summaryCommand(args []string) error {
	fs := flag.NewFlagSet("summary", flag.ContinueOnError)
	match := fs.String("match", `\[Conformance\]`, "count only the tests whose name matches this regular expression")
	out := fs.String("o", "", "file to write the summary to (Markdown; default stdout)")
	var logs, lists []string
	fs.Func("log", "ginkgo's output of a pass whose JUnit report is missing or empty (repeatable): its failures are read from it", func(v string) error { logs = append(logs, v); return nil })
	fs.Func("tests", "with -log: the names of the tests the pass ran, one a line (run.sh --dry-run's lists); those that did not fail passed, but for the ones the log shows unfinished", func(v string) error { lists = append(lists, v); return nil })
	if err := fs.Parse(args); err != nil {
		return err
	}
	re, err := regexp.Compile(*match)
	if err != nil {
		return err
	}
	results := map[string]*result{}
	for _, path := range fs.Args() {
		if err := readReport(path, re, results); err != nil {
			return err
		}
	}
	unfinished := 0
	for i, path := range logs {
		list := ""
		if i < len(lists) {
			list = lists[i]
		}
		n, err := readLog(path, list, re, results)
		if err != nil {
			return err
		}
		unfinished += n
	}
	w := io.Writer(os.Stdout)
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	writeSummary(w, results, unfinished)
	return nil
}

var (
	logSpec = regexp.MustCompile(`^• \[(FAILED|TIMEDOUT|PANICKED|INTERRUPTED|ABORTED)\] \[([0-9.]+) seconds\]`)
	// The labels ginkgo appends to a name ("[sig-apps, Conformance]"), and the node type it inserts.
	logLabels = regexp.MustCompile(` \[[A-Za-z0-9:._-]+(, [A-Za-z0-9:._-]+)*\]$`)
	logNode   = regexp.MustCompile(` \[(It|BeforeEach|AfterEach|JustBeforeEach|JustAfterEach)\] `)
)

// readLog reads the failures of a ginkgo (default verbosity) log, for a pass whose report ginkgo
// could not write (a suite timeout with a test process that would not stop): a failed test is
// printed with its name and message, a passed one only as a dot. The tests of list that did not
// fail count as passed; it returns how many tests the log shows neither passed nor failed.
func readLog(path, list string, re *regexp.Regexp, results map[string]*result) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	lines := strings.Split(string(b), "\n")
	dots, failed := strings.Count(string(b), "•"), 0
	for i := 0; i < len(lines)-1; i++ {
		m := logSpec.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		failed++
		name := logNode.ReplaceAllString(lines[i+1], " ")
		// ginkgo appends the labels ("[sig-apps, Conformance]"), which the name's text repeats
		if l := logLabels.FindString(name); strings.Contains(l, ", ") {
			name = strings.TrimSuffix(name, l)
		}
		name = strings.TrimSpace(name)
		var msg []string
		j := i + 2
		for j < len(lines) && !strings.HasPrefix(lines[j], "  << Timeline") && !strings.HasPrefix(lines[j], "• ") {
			j++
		}
		for j++; j < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[j]), "In [") && !strings.HasPrefix(lines[j], "• "); j++ {
			msg = append(msg, lines[j])
		}
		if !re.MatchString(name) {
			continue
		}
		secs, _ := strconv.ParseFloat(m[2], 64) // the pattern matched a number
		r := &result{name: name, sig: sigPattern.FindString(name), status: "failed", seconds: secs, reason: firstLine(strings.Join(msg, "\n"))}
		if r.sig == "" {
			r.sig = "[no sig]"
		}
		results[name] = r
	}
	if list == "" {
		return 0, nil
	}
	lb, err := os.ReadFile(list)
	if err != nil {
		return 0, err
	}
	for _, name := range strings.Split(string(lb), "\n") {
		name = strings.TrimSpace(name)
		if name == "" || !re.MatchString(name) {
			continue
		}
		if old, ok := results[name]; ok && old.status != "skipped" {
			continue
		}
		r := &result{name: name, sig: sigPattern.FindString(name), status: "passed"}
		if r.sig == "" {
			r.sig = "[no sig]"
		}
		results[name] = r
	}
	return max(0, len(strings.Split(strings.TrimSpace(string(lb)), "\n"))-dots), nil
}

func readReport(path string, re *regexp.Regexp, results map[string]*result) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var rep junitSuites
	if err := xml.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("summary: %s: %w", path, err)
	}
	for _, s := range rep.Suites {
		for _, c := range s.Cases {
			if !re.MatchString(c.Name) || strings.HasPrefix(c.Name, "[SynchronizedBeforeSuite]") {
				continue
			}
			name := strings.TrimPrefix(c.Name, "[It] ")
			if l := logLabels.FindString(name); strings.Contains(l, ", ") {
				name = strings.TrimSuffix(name, l) // the labels ginkgo appends
			}
			r := &result{name: name, sig: sigPattern.FindString(name), status: status(c), seconds: c.Time}
			if r.sig == "" {
				r.sig = "[no sig]"
			}
			switch {
			case c.Failure != nil:
				r.reason = firstLine(c.Failure.Message, c.Failure.Text)
			case c.Error != nil:
				r.reason = firstLine(c.Error.Message, c.Error.Text)
			}
			if old, ok := results[name]; ok && old.status != "skipped" && r.status == "skipped" {
				continue
			}
			results[name] = r
		}
	}
	return nil
}

// status folds ginkgo's states into passed, failed and skipped (pending and skipped).
func status(c junitCase) string {
	switch c.Status {
	case "passed":
		return "passed"
	case "skipped", "pending":
		return "skipped"
	case "":
		switch {
		case c.Failure != nil || c.Error != nil:
			return "failed"
		case c.Skipped != nil:
			return "skipped"
		}
		return "passed"
	}
	return "failed" // failed, panicked, interrupted, timedout, aborted
}

// firstLine is the failure's message on one line (gomega's spread over several), without
// ginkgo's "[FAILED]" prefix, cut at 300 characters.
func firstLine(parts ...string) string {
	for _, p := range parts {
		l := strings.Join(strings.Fields(strings.TrimPrefix(strings.TrimSpace(p), "[FAILED]")), " ")
		if l == "" {
			continue
		}
		if r := []rune(l); len(r) > 300 {
			l = string(r[:300]) + "…"
		}
		return l
	}
	return ""
}

func writeSummary(w io.Writer, results map[string]*result, unfinished int) {
	type counts struct{ passed, failed, skipped int }
	bySig := map[string]*counts{}
	var total counts
	var failed []*result
	for _, r := range results {
		c := bySig[r.sig]
		if c == nil {
			c = &counts{}
			bySig[r.sig] = c
		}
		switch r.status {
		case "passed":
			c.passed++
			total.passed++
		case "failed":
			c.failed++
			total.failed++
			failed = append(failed, r)
		default:
			c.skipped++
			total.skipped++
		}
	}
	sigs := make([]string, 0, len(bySig))
	for s := range bySig {
		sigs = append(sigs, s)
	}
	sort.Strings(sigs)
	fmt.Fprintf(w, "# Conformance results\n\n%d passed out of %d run (%d failed); %d skipped.\n\n", total.passed, total.passed+total.failed, total.failed, total.skipped)
	if unfinished > 0 {
		fmt.Fprintf(w, "%d tests did not finish before the pass's timeout and ginkgo wrote no report: their names are not in its log, so they are counted as passed above; subtract them.\n\n", unfinished)
	}
	fmt.Fprintf(w, "| SIG | passed | failed | skipped |\n|---|---|---|---|\n")
	for _, s := range sigs {
		c := bySig[s]
		fmt.Fprintf(w, "| %s | %d | %d | %d |\n", s, c.passed, c.failed, c.skipped)
	}
	fmt.Fprintf(w, "| **total** | **%d** | **%d** | **%d** |\n", total.passed, total.failed, total.skipped)
	if len(failed) == 0 {
		return
	}
	sort.Slice(failed, func(i, j int) bool { return failed[i].name < failed[j].name })
	fmt.Fprintf(w, "\n## Failed\n\n")
	for _, r := range failed {
		fmt.Fprintf(w, "- %s (%.0fs)\n  - %s\n", r.name, r.seconds, r.reason)
	}
}
