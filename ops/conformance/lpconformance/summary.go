package main

import (
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
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
	w := io.Writer(os.Stdout)
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	writeSummary(w, results)
	return nil
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

func writeSummary(w io.Writer, results map[string]*result) {
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
