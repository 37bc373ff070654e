package kubelet

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The series of the kubelet's /metrics/resource that metrics.k8s.io needs.
const (
	containerCPU    = "container_cpu_usage_seconds_total"
	containerMemory = "container_memory_working_set_bytes"
	containerStart  = "container_start_time_seconds"
	nodeCPU         = "node_cpu_usage_seconds_total"
	nodeMemory      = "node_memory_working_set_bytes"
)

// point is one CPU counter sample: cumulative core-seconds at a time.
type point struct {
	ms  int64 // milliseconds since the epoch
	cpu float64
}

// containerSample is one container's values in one scrape.
type containerSample struct {
	namespace, pod, container string
	cpu                       point
	memory                    float64
	startMs                   int64 // container start, 0 when unknown
	hasCPU, hasMemory         bool
}

// scrapeResult is what one kubelet said, sorted by namespace, pod, container.
type scrapeResult struct {
	node                      point
	nodeMemory                float64
	hasNodeCPU, hasNodeMemory bool
	containers                []containerSample
}

type containerKey struct{ namespace, pod, container string }

// parser turns one /metrics/resource response into a scrapeResult. It keeps
// its buffers between scrapes; one parser per goroutine (parserPool).
type parser struct {
	text  expfmt.TextParser
	index map[containerKey]int
	res   scrapeResult
}

var parserPool = sync.Pool{New: func() any {
	return &parser{text: expfmt.NewTextParser(model.UTF8Validation), index: map[containerKey]int{}}
}}

// parse reads the Prometheus text exposition from r. Samples without an
// explicit timestamp get defaultMs. The result is valid until the next call.
func (p *parser) parse(r io.Reader, defaultMs int64) (*scrapeResult, error) {
	clear(p.index)
	p.res = scrapeResult{containers: p.res.containers[:0]}
	fams, err := p.text.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	if f := fams[nodeCPU]; f != nil {
		if v, ms, ok := single(f, defaultMs); ok && v >= 0 {
			p.res.node, p.res.hasNodeCPU = point{ms: ms, cpu: v}, true
		}
	}
	if f := fams[nodeMemory]; f != nil {
		if v, _, ok := single(f, defaultMs); ok && v >= 0 {
			p.res.nodeMemory, p.res.hasNodeMemory = v, true
		}
	}
	for _, name := range [...]string{containerCPU, containerMemory, containerStart} {
		f := fams[name]
		if f == nil {
			continue
		}
		for _, m := range f.GetMetric() {
			v, ok := value(m)
			if !ok || v < 0 {
				continue
			}
			c := p.container(m)
			if c == nil {
				continue
			}
			switch name {
			case containerCPU:
				c.cpu, c.hasCPU = point{ms: timestamp(m, defaultMs), cpu: v}, true
			case containerMemory:
				c.memory, c.hasMemory = v, true
			case containerStart:
				c.startMs = int64(v * 1000)
			}
		}
	}
	slices.SortFunc(p.res.containers, func(a, b containerSample) int {
		return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.pod, b.pod), cmp.Compare(a.container, b.container))
	})
	return &p.res, nil
}

// container finds or adds the sample of m's container; nil when m lacks
// the namespace, pod or container label.
func (p *parser) container(m *dto.Metric) *containerSample {
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

// single is the value of a family holding one unlabelled series.
func single(f *dto.MetricFamily, defaultMs int64) (float64, int64, bool) {
	if len(f.GetMetric()) != 1 {
		return 0, 0, false
	}
	m := f.GetMetric()[0]
	v, ok := value(m)
	return v, timestamp(m, defaultMs), ok
}

// value is a counter's, gauge's or untyped series' finite value.
func value(m *dto.Metric) (float64, bool) {
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

func timestamp(m *dto.Metric, defaultMs int64) int64 {
	if m.TimestampMs != nil {
		return m.GetTimestampMs()
	}
	return defaultMs
}
