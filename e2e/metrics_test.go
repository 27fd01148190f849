package e2e_test

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricsURL is where p serves its Prometheus metrics (started with --metrics-listen), read from
// the line its log gives it.
func metricsURL(t *testing.T, p *proc) string {
	t.Helper()
	served := regexp.MustCompile(`serving metrics.*(http://127\.0\.0\.1:\d+/metrics)`)
	var url string
	eventually(t, 20*time.Second, func() error {
		b, err := os.ReadFile(p.log)
		if err != nil {
			return err
		}
		m := served.FindSubmatch(b)
		if m == nil {
			return fmt.Errorf("%s does not say where it serves metrics:\n%s", p.name, b)
		}
		url = string(m[1])
		return nil
	})
	return url
}

// scrape reads the metrics p serves, as Prometheus would.
func scrape(t *testing.T, p *proc) map[string]*dto.MetricFamily {
	t.Helper()
	body := httpGet(t, metricsURL(t, p))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s's metrics do not parse: %v\n%s", p.name, err, body)
	}
	return families
}

// sample is the value of the counter or gauge name with the given labels (and any others) in
// families, or how many values the histogram name observed; it fails the test if there is no
// such sample.
func sample(t *testing.T, families map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	f := families[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range labels {
			if !hasLabel(m, k, v) {
				continue next
			}
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no sample of %s with labels %v in %v", name, labels, f)
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue() == value
		}
	}
	return false
}
