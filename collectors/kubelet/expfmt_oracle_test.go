package kubelet

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// This file is the parser as it was before the line scanner (parse.go at
// 00f67f8, names prefixed with old): the lines of the five series (and
// their TYPE lines) filtered out of the whole body, then prometheus/common's
// TextParser. The differential tests hold parse to it; BenchmarkParse
// compares the two.

// expfmtParse is what the old parser answers for r, with a parser of its own.
func expfmtParse(r io.Reader, defaultMs int64) (*scrapeResult, error) {
	return newOldParser().parse(r, defaultMs)
}

type containerKey struct{ namespace, pod, container string }

// oldParser turns one /metrics/resource response into a scrapeResult. It keeps
// its buffers between scrapes; one parser per goroutine (the old parserPool).
type oldParser struct {
	text  expfmt.TextParser
	index map[containerKey]int
	res   scrapeResult
	raw   bytes.Buffer // the response
	kept  bytes.Buffer // its lines that matter
}

func newOldParser() *oldParser {
	return &oldParser{text: expfmt.NewTextParser(model.UTF8Validation), index: map[containerKey]int{}}
}

// parse reads the Prometheus text exposition from r. Samples without an
// explicit timestamp get defaultMs. The result is valid until the next call.
//
// Only the lines of the five series used (and their TYPE lines) reach
// expfmt's parser: it allocates some 25 objects per sample, and the
// kubelet's HELP lines, swap and pod series are more than half of the
// answer. An answer without node or container CPU is an error, so an HTML
// error page or a truncated body is not taken for a node without pods.
func (p *oldParser) parse(r io.Reader, defaultMs int64) (*scrapeResult, error) {
	clear(p.index)
	p.res = scrapeResult{containers: p.res.containers[:0]}
	p.raw.Reset()
	if _, err := p.raw.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("reading metrics: %w", err)
	}
	p.kept.Reset()
	keepLines(&p.kept, p.raw.Bytes())
	fams, err := p.text.TextToMetricFamilies(&p.kept)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	if f := fams[nodeCPU]; f != nil {
		if v, ms, ok := oldSingle(f, defaultMs); ok && v >= 0 {
			p.res.node, p.res.hasNodeCPU = point{ms: ms, cpu: v}, true
		}
	}
	if f := fams[nodeMemory]; f != nil {
		if v, _, ok := oldSingle(f, defaultMs); ok && v >= 0 {
			p.res.nodeMemory, p.res.hasNodeMemory = v, true
		}
	}
	for _, name := range [...]string{containerCPU, containerMemory, containerStart} {
		f := fams[name]
		if f == nil {
			continue
		}
		for _, m := range f.GetMetric() {
			v, ok := oldValue(m)
			if !ok || v < 0 {
				continue
			}
			c := p.container(m)
			if c == nil {
				continue
			}
			switch name {
			case containerCPU:
				c.cpu, c.hasCPU = point{ms: oldTimestamp(m, defaultMs), cpu: v}, true
			case containerMemory:
				c.memory, c.hasMemory = v, true
			case containerStart:
				if ms := v * 1000; ms < math.MaxInt64 {
					c.startMs = int64(ms)
				}
			}
		}
	}
	if !p.res.hasNodeCPU && len(p.res.containers) == 0 {
		return nil, fmt.Errorf("parsing metrics: no %s nor %s in the answer", nodeCPU, containerCPU)
	}
	slices.SortFunc(p.res.containers, func(a, b containerSample) int {
		return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.pod, b.pod), cmp.Compare(a.container, b.container))
	})
	return &p.res, nil
}

// wanted are the series parse reads.
var wanted = [...][]byte{[]byte(containerCPU), []byte(containerMemory), []byte(containerStart), []byte(nodeCPU), []byte(nodeMemory)}

// keepLines appends to dst the sample and TYPE lines of the wanted series
// (and lines it cannot judge, such as quoted names, for expfmt to judge).
func keepLines(dst *bytes.Buffer, in []byte) {
	for len(in) > 0 {
		line := in
		if i := bytes.IndexByte(in, '\n'); i >= 0 {
			line, in = in[:i+1], in[i+1:]
		} else {
			in = nil
		}
		t := bytes.TrimLeft(line, " \t")
		if typ, ok := bytes.CutPrefix(t, []byte("#")); ok {
			typ = bytes.TrimLeft(typ, " \t")
			if typ, ok = bytes.CutPrefix(typ, []byte("TYPE")); !ok || !isWanted(bytes.TrimLeft(typ, " \t")) {
				continue // HELP, other comments and other types
			}
		} else if len(t) > 0 && t[0] != '{' && t[0] != '\n' && !isWanted(t) {
			continue
		}
		dst.Write(line)
	}
}

// isWanted reports whether s starts with a wanted name followed by a
// separator.
func isWanted(s []byte) bool {
	for _, w := range wanted {
		if len(s) > len(w) && bytes.HasPrefix(s, w) {
			switch s[len(w)] {
			case '{', ' ', '\t':
				return true
			}
		}
	}
	return false
}

// container finds or adds the sample of m's container; nil when m lacks
// the namespace, pod or container label.
func (p *oldParser) container(m *dto.Metric) *containerSample {
	var k containerKey
	for _, l := range m.GetLabel() {
		switch l.GetName() {
		case "namespace":
			k.namespace = l.GetValue()
		case "pod":
			k.pod = l.GetValue()
		case "container":
			k.container = l.GetValue()
		}
	}
	if k.namespace == "" || k.pod == "" || k.container == "" {
		return nil
	}
	if i, ok := p.index[k]; ok {
		return &p.res.containers[i]
	}
	p.index[k] = len(p.res.containers)
	p.res.containers = append(p.res.containers, containerSample{namespace: k.namespace, pod: k.pod, container: k.container})
	return &p.res.containers[len(p.res.containers)-1]
}

// oldSingle is the value of a family holding one unlabelled series.
func oldSingle(f *dto.MetricFamily, defaultMs int64) (float64, int64, bool) {
	if len(f.GetMetric()) != 1 {
		return 0, 0, false
	}
	m := f.GetMetric()[0]
	v, ok := oldValue(m)
	return v, oldTimestamp(m, defaultMs), ok
}

// oldValue is a counter's, gauge's or untyped series' finite value.
func oldValue(m *dto.Metric) (float64, bool) {
	var v float64
	switch {
	case m.Counter != nil:
		v = m.Counter.GetValue()
	case m.Gauge != nil:
		v = m.Gauge.GetValue()
	case m.Untyped != nil:
		v = m.Untyped.GetValue()
	default:
		return 0, false
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

// oldTimestamp is the sample's explicit timestamp, else defaultMs (also for a
// timestamp at or before the epoch, which no kubelet sends).
func oldTimestamp(m *dto.Metric, defaultMs int64) int64 {
	if ms := m.GetTimestampMs(); m.TimestampMs != nil && ms > 0 {
		return ms
	}
	return defaultMs
}
