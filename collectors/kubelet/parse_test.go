package kubelet

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The line filter in front of expfmt changes nothing about the series it
// keeps, whatever the spacing, and drops the rest.
func TestKeepLinesAgreesWithExpfmt(t *testing.T) {
	in := exposition(100, 2e9, t0.UnixMilli(), []container{{"a", "p", "c", 1, 2, 3}, {"a", "q", "c", 4, 5, 6}}) +
		"  \tcontainer_memory_working_set_bytes{container=\"x\",namespace=\"a\",pod=\"p\"}\t7 8\n" +
		"container_cpu_usage_seconds_total_other{container=\"x\"} 9\n" +
		"#   TYPE   node_memory_working_set_bytes_total counter\n" +
		"node_memory_working_set_bytes_total 10\n" +
		"# a comment\n\n" +
		"container_start_time_seconds{container=\"y\",namespace=\"a\",pod=\"p\"} 11"
	full := expfmt.NewTextParser(model.UTF8Validation)
	want, err := full.TextToMetricFamilies(strings.NewReader(in + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	var kept bytes.Buffer
	keepLines(&kept, []byte(in+"\n"))
	filtered := expfmt.NewTextParser(model.UTF8Validation)
	got, err := filtered.TextToMetricFamilies(&kept)
	if err != nil {
		t.Fatalf("%v in:\n%s", err, kept.String())
	}
	for name := range got {
		switch name {
		case containerCPU, containerMemory, containerStart, nodeCPU, nodeMemory:
		default:
			t.Errorf("kept %s", name)
		}
	}
	for _, name := range []string{containerCPU, containerMemory, containerStart, nodeCPU, nodeMemory} {
		w, g := want[name], got[name]
		w.Help = nil // HELP lines are dropped
		if w.String() != g.String() {
			t.Errorf("%s:\nfiltered %s\nfull     %s", name, g, w)
		}
	}
	if strings.Contains(kept.String(), "# HELP") {
		t.Error("HELP lines kept")
	}
}

func TestParseRejectsAnswersWithoutResourceMetrics(t *testing.T) {
	for _, in := range []string{"", "# HELP x y\n", "scrape_error 1\n", "<html><body>Bad Gateway</body></html>\n"} {
		p := newParser()
		if _, err := p.parse(strings.NewReader(in), 1); err == nil {
			t.Errorf("parse(%q) succeeded", in)
		}
	}
}

// A sample may carry up to maxLabels labels; more is an error, so a hostile
// kubelet cannot make the quadratic duplicate check hold a scrape round.
func TestParseBoundsLabels(t *testing.T) {
	line := func(extra int) string {
		var b strings.Builder
		b.WriteString(`container_cpu_usage_seconds_total{container="c",namespace="n",pod="p"`)
		for i := range extra {
			fmt.Fprintf(&b, `,x%d=""`, i)
		}
		b.WriteString("} 1 2\n")
		return b.String()
	}
	p := newParser()
	res, err := p.parse(strings.NewReader(line(maxLabels-3)), 1)
	if err != nil || len(res.containers) != 1 {
		t.Fatalf("%d labels: %v, %+v", maxLabels, err, res)
	}
	if _, err := p.parse(strings.NewReader(line(100_000)), 1); !errors.Is(err, errTooManyLabels) {
		t.Fatalf("100,003 labels: %v, want %v", err, errTooManyLabels)
	}
}

// One huge answer does not leave its room in the pooled parser.
func TestParserDropsRoomOfHugeAnswer(t *testing.T) {
	var cs []container
	for i := range 3 * keepContainers {
		cs = append(cs, container{"ns", fmt.Sprintf("pod-%d", i), "c", 1, 1, 0})
	}
	p := newParser()
	if res, err := p.parse(strings.NewReader(exposition(1, 1, 0, cs)), 1); err != nil || len(res.containers) != len(cs) {
		t.Fatalf("huge answer: %v, %d containers", err, len(res.containers))
	}
	if len(p.index) > keepContainers {
		t.Errorf("index kept %d entries after the answer", len(p.index))
	}
	if res, err := p.parse(strings.NewReader(exposition(1, 1, 0, cs[:2])), 1); err != nil || len(res.containers) != 2 {
		t.Fatalf("small answer: %v", err)
	}
	if c := cap(p.res.containers); c > keepContainers {
		t.Errorf("result kept room for %d containers", c)
	}
}
