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

// expfmtParse is the parser as it was before the line scanner: the lines of
// the five series (and their TYPE lines) filtered out of the whole body,
// then prometheus/common's TextParser. The differential tests hold parse
// to it.
func expfmtParse(r io.Reader, defaultMs int64) (*scrapeResult, error) {
	var raw, kept bytes.Buffer
	if _, err := raw.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("reading metrics: %w", err)
	}
	keepLines(&kept, raw.Bytes())
	text := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := text.TextToMetricFamilies(&kept)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	return fromFamilies(fams, defaultMs)
}

// fromFamilies is what the old parser made of expfmt's families.
func fromFamilies(fams map[string]*dto.MetricFamily, defaultMs int64) (*scrapeResult, error) {
	res := &scrapeResult{}
	index := map[containerKey]int{}
	if f := fams[nodeCPU]; f != nil {
		if v, ms, ok := oldSingle(f, defaultMs); ok && v >= 0 {
			res.node, res.hasNodeCPU = point{ms: ms, cpu: v}, true
		}
	}
	if f := fams[nodeMemory]; f != nil {
		if v, _, ok := oldSingle(f, defaultMs); ok && v >= 0 {
			res.nodeMemory, res.hasNodeMemory = v, true
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
				continue
			}
			i, ok := index[k]
			if !ok {
				i = len(res.containers)
				index[k] = i
				res.containers = append(res.containers, containerSample{namespace: k.namespace, pod: k.pod, container: k.container})
			}
			c := &res.containers[i]
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
	if !res.hasNodeCPU && len(res.containers) == 0 {
		return nil, fmt.Errorf("parsing metrics: no %s nor %s in the answer", nodeCPU, containerCPU)
	}
	slices.SortFunc(res.containers, func(a, b containerSample) int {
		return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.pod, b.pod), cmp.Compare(a.container, b.container))
	})
	return res, nil
}

type containerKey struct{ namespace, pod, container string }

// wanted are the series the old parser kept.
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

// oldTimestamp is the sample's explicit timestamp, else defaultMs.
func oldTimestamp(m *dto.Metric, defaultMs int64) int64 {
	if ms := m.GetTimestampMs(); m.TimestampMs != nil && ms > 0 {
		return ms
	}
	return defaultMs
}
