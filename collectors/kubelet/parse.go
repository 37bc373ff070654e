package kubelet

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
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

// series is one of the five series parse reads, an index of seriesNames.
type series int

const (
	sContainerCPU series = iota
	sContainerMemory
	sContainerStart
	sNodeCPU
	sNodeMemory
)

var seriesNames = [...]string{containerCPU, containerMemory, containerStart, nodeCPU, nodeMemory}

// metricType is what a series' TYPE line says; unset until a TYPE line
// or the first sample.
type metricType int8

const (
	typeUnset metricType = iota
	typeValue            // counter, gauge or untyped: a sample is a value
	typeSummary
	typeHistogram // also a gauge histogram
)

// lineBuffer is the size of the reader's buffer: a kubelet's lines are
// some 150 bytes; longer lines are gathered in parser.long.
const lineBuffer = 4 << 10

// parser turns one /metrics/resource response into a scrapeResult. It keeps
// its buffers between scrapes; one parser per goroutine (parserPool).
type parser struct {
	rd   *bufio.Reader
	long []byte // a line longer than rd's buffer

	types [len(seriesNames)]metricType
	// The node series: how many samples each had, and the last one.
	nodeSamples [2]int
	nodeValue   [2]float64
	nodeMs      [2]int64
	nodeOK      [2]bool // a value (not a summary or histogram), finite

	// The line being read: its label names so far (for the duplicate
	// check), a label value, and the three labels a container needs.
	names        []byte
	nameEnds     []int
	value        []byte
	ns, pod, ctr []byte

	// The containers seen: keys (namespace 0xff pod 0xff container; 0xff
	// is never in UTF-8) in arena, found by their hash.
	arena   []byte
	pending []pendingContainer
	index   map[uint64]int32 // hash → 1 + index in pending of the last added
	seed    maphash.Seed

	res scrapeResult
}

// pendingContainer is a container's values before the strings are made.
type pendingContainer struct {
	start, nsEnd, podEnd, end int // its key in arena
	next                      int32
	s                         containerSample
}

var parserPool = sync.Pool{New: func() any { return newParser() }}

func newParser() *parser {
	return &parser{rd: bufio.NewReaderSize(nil, lineBuffer), index: map[uint64]int32{}, seed: maphash.MakeSeed()}
}

// Buffers grown beyond these by an odd answer are dropped after it, so
// that pooled parsers stay small.
const (
	keepLong  = 64 << 10
	keepArena = 256 << 10
	// keepContainers bounds the containers (and index entries) a pooled
	// parser keeps room for: a kubelet runs at most a few hundred.
	keepContainers = 4096
)

// maxLabels bounds the labels of one sample of the series read: the
// kubelet writes three. The duplicate check is quadratic in them, so a
// hostile kubelet could otherwise hold a scrape round for minutes with one
// long line. (expfmt accepts any number; this is where the two differ.)
const maxLabels = 64

var errTooManyLabels = fmt.Errorf("more than %d labels in one sample", maxLabels)

var errEOF = errors.New("unexpected end of input stream")

// parse reads the Prometheus text exposition from r. Samples without an
// explicit timestamp get defaultMs. The result is valid until the next call.
//
// It reads the answer line by line, never whole, and parses the lines of
// the five series (and their TYPE lines) as prometheus/common's
// expfmt.TextParser would, failing where it fails; every other line is
// skipped once its name is seen, so a malformed line of another series is
// no error. A line starting with '{' (a quoted metric name) is read when
// its first element is one of the five names, as the format writes them.
// Nothing is allocated but the strings of the containers. An answer
// without node or container CPU is an error, so an HTML error page or a
// truncated body is not taken for a node without pods.
func (p *parser) parse(r io.Reader, defaultMs int64) (*scrapeResult, error) {
	p.reset(r)
	defer p.release()
	for n := 1; ; n++ {
		line, err := p.readLine()
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("reading metrics: %w", err)
		}
		if len(line) > 0 {
			if perr := p.line(line, defaultMs); perr != nil {
				return nil, fmt.Errorf("parsing metrics: line %d: %w", n, perr)
			}
		}
		if err == io.EOF {
			break
		}
	}
	for i, ok := range p.nodeOK {
		if p.nodeSamples[i] != 1 || !ok || p.nodeValue[i] < 0 {
			continue
		}
		if i == 0 {
			p.res.node, p.res.hasNodeCPU = point{ms: p.nodeMs[0], cpu: p.nodeValue[0]}, true
		} else {
			p.res.nodeMemory, p.res.hasNodeMemory = p.nodeValue[1], true
		}
	}
	if !p.res.hasNodeCPU && len(p.pending) == 0 {
		return nil, fmt.Errorf("parsing metrics: no %s nor %s in the answer", nodeCPU, containerCPU)
	}
	p.containers()
	return &p.res, nil
}

func (p *parser) reset(r io.Reader) {
	p.rd.Reset(r)
	p.types = [len(seriesNames)]metricType{}
	p.nodeSamples, p.nodeOK = [2]int{}, [2]bool{}
	p.arena, p.pending = p.arena[:0], p.pending[:0]
	clear(p.index)
	clear(p.res.containers) // the last answer's strings
	if cap(p.res.containers) > keepContainers {
		p.res.containers = nil
	}
	p.res = scrapeResult{containers: p.res.containers[:0]}
}

// release lets go of the response and of buffers an odd answer grew.
func (p *parser) release() {
	p.rd.Reset(nil)
	if cap(p.long) > keepLong {
		p.long = nil
	}
	if cap(p.arena) > keepArena {
		p.arena, p.pending = nil, nil
	}
	if len(p.index) > keepContainers {
		p.index = map[uint64]int32{}
	}
}

// readLine is the next line with its '\n' (none at the end of the answer),
// valid until the next call.
func (p *parser) readLine() ([]byte, error) {
	line, err := p.rd.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return line, err
	}
	p.long = append(p.long[:0], line...)
	for err == bufio.ErrBufferFull {
		line, err = p.rd.ReadSlice('\n')
		p.long = append(p.long, line...)
	}
	return p.long, err
}

// line parses one line of the answer (with its '\n', if any).
func (p *parser) line(line []byte, defaultMs int64) error {
	nl := line[len(line)-1] == '\n'
	if nl {
		line = line[:len(line)-1]
	}
	i := skipBlank(line, 0)
	if i == len(line) {
		return nil
	}
	switch line[i] {
	case '#':
		return p.typeLine(line, i+1, nl)
	case '{':
		s, j, ok := seriesInBraces(line, skipBlank(line, i+1))
		if !ok {
			return nil
		}
		if !nl {
			return errEOF
		}
		if line[j] == '}' {
			return p.sample(s, line, skipBlank(line, j+1), false, defaultMs)
		}
		return p.sample(s, line, j+1, true, defaultMs)
	}
	s, j, ok := seriesAt(line, i)
	if !ok {
		return nil
	}
	if !nl {
		return errEOF
	}
	j = skipBlank(line, j)
	if j < len(line) && line[j] == '{' {
		return p.sample(s, line, j+1, true, defaultMs)
	}
	return p.sample(s, line, j, false, defaultMs)
}

// typeLine reads a comment (line[i] follows the '#'): the TYPE of one of
// the five series, or nothing parse needs.
func (p *parser) typeLine(line []byte, i int, nl bool) error {
	i = skipBlank(line, i)
	if !bytes.HasPrefix(line[i:], []byte("TYPE")) || i+4 == len(line) || !isBlank(line[i+4]) {
		return nil // HELP or another comment
	}
	s, j, ok := seriesAt(line, skipBlank(line, i+4))
	if !ok {
		return nil
	}
	if !nl {
		return errEOF
	}
	if line[j] == '{' {
		return fmt.Errorf("invalid metric name %s{ in TYPE line", seriesNames[s])
	}
	j = skipBlank(line, j)
	if j == len(line) {
		return nil // no type: still unset
	}
	if p.types[s] != typeUnset {
		return fmt.Errorf("second TYPE line for metric name %q, or TYPE reported after samples", seriesNames[s])
	}
	t, ok := parseType(line[j:])
	if !ok {
		return fmt.Errorf("unknown metric type %q", line[j:])
	}
	p.types[s] = t
	return nil
}

// parseType reads a TYPE line's type in any case, as expfmt does.
func parseType(b []byte) (metricType, bool) {
	var up string
	var buf [len("GAUGE_HISTOGRAM")]byte
	switch {
	case len(b) > len(buf) && !hasNonASCII(b):
		return 0, false
	case !hasNonASCII(b):
		for i, c := range b {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			buf[i] = c
		}
		up = string(buf[:len(b)])
	default:
		up = strings.ToUpper(string(b)) // 'ſ' and 'ı' are S and I
	}
	switch up {
	case "COUNTER", "GAUGE", "UNTYPED":
		return typeValue, true
	case "SUMMARY":
		return typeSummary, true
	case "HISTOGRAM", "GAUGE_HISTOGRAM", "GAUGEHISTOGRAM":
		return typeHistogram, true
	}
	return 0, false
}

func hasNonASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// sample parses the rest of a sample line of s: its labels when labels
// (line[i] follows the '{' or the name's ','), else its value at line[i].
func (p *parser) sample(s series, line []byte, i int, labels bool, defaultMs int64) error {
	if p.types[s] == typeUnset {
		p.types[s] = typeValue
	}
	typ := p.types[s]
	p.ns, p.pod, p.ctr = p.ns[:0], p.pod[:0], p.ctr[:0]
	p.names, p.nameEnds = p.names[:0], p.nameEnds[:0]
	bucket := false // a histogram's le label (not NaN)
	for labels {
		i = skipBlank(line, i)
		if i == len(line) {
			return fmt.Errorf("unexpected end of labels of %s", seriesNames[s])
		}
		if line[i] == '}' {
			i++
			break
		}
		start := len(p.names)
		var ok bool
		if p.names, i, ok = readLabelName(p.names, line, i); !ok || len(p.names) == start {
			return fmt.Errorf("invalid label name for metric %q", seriesNames[s])
		}
		name := p.names[start:]
		if i = skipBlank(line, i); i == len(line) || line[i] != '=' {
			return fmt.Errorf("expected '=' after label name %q of %s", name, seriesNames[s])
		}
		if string(name) == "__name__" {
			return errors.New(`label name "__name__" is reserved`)
		}
		special := typ == typeSummary && string(name) == "quantile" || typ == typeHistogram && string(name) == "le"
		if special {
			p.names = p.names[:start]
		} else {
			if len(p.nameEnds) == maxLabels {
				return errTooManyLabels
			}
			prev := 0
			for _, end := range p.nameEnds {
				if bytes.Equal(p.names[prev:end], name) {
					return fmt.Errorf("duplicate label names for metric %q", seriesNames[s])
				}
				prev = end
			}
			p.nameEnds = append(p.nameEnds, len(p.names))
		}
		if i = skipBlank(line, i+1); i == len(line) || line[i] != '"' {
			return fmt.Errorf("expected '\"' at start of label value of %s", seriesNames[s])
		}
		if p.value, i, ok = readLabelValue(p.value[:0], line, i+1); !ok {
			return fmt.Errorf("invalid label value of %s", seriesNames[s])
		}
		if !utf8.Valid(p.value) {
			return fmt.Errorf("invalid label value %q", p.value)
		}
		switch {
		case special:
			v, err := parseFloat(p.value)
			if err != nil {
				return fmt.Errorf("expected float as value for %q label, got %q", name, p.value)
			}
			bucket = typ == typeHistogram && !math.IsNaN(v)
		case string(name) == "namespace":
			p.ns = append(p.ns, p.value...)
		case string(name) == "pod":
			p.pod = append(p.pod, p.value...)
		case string(name) == "container":
			p.ctr = append(p.ctr, p.value...)
		}
		if i = skipBlank(line, i); i == len(line) || line[i] != ',' && line[i] != '}' {
			return fmt.Errorf("unexpected end of label value %q", p.value)
		}
		if line[i] == '}' {
			i++
			break
		}
		i++
	}
	if labels {
		i = skipBlank(line, i)
	}
	end := i
	for end < len(line) && !isBlank(line[end]) {
		end++
	}
	v, err := parseFloat(line[i:end])
	if err != nil {
		return fmt.Errorf("expected float as value, got %q", line[i:end])
	}
	if bucket && v < 0 {
		return fmt.Errorf("negative bucket population for histogram %q", seriesNames[s])
	}
	ms := defaultMs
	if end < len(line) {
		i = skipBlank(line, end)
		end = i
		for end < len(line) && !isBlank(line[end]) {
			end++
		}
		ts, err := strconv.ParseInt(string(line[i:end]), 10, 64)
		if err != nil {
			return fmt.Errorf("expected integer as timestamp, got %q", line[i:end])
		}
		if end < len(line) {
			return fmt.Errorf("spurious string after timestamp: %q", line[end:])
		}
		if ts > 0 { // else no kubelet's: a timestamp at or before the epoch
			ms = ts
		}
	}

	ok := typ == typeValue && !math.IsNaN(v) && !math.IsInf(v, 0)
	switch s {
	case sNodeCPU, sNodeMemory:
		n := s - sNodeCPU
		p.nodeSamples[n]++
		p.nodeValue[n], p.nodeMs[n], p.nodeOK[n] = v, ms, ok
		return nil
	}
	if !ok || v < 0 || len(p.ns) == 0 || len(p.pod) == 0 || len(p.ctr) == 0 {
		return nil
	}
	c := p.container()
	switch s {
	case sContainerCPU:
		c.cpu, c.hasCPU = point{ms: ms, cpu: v}, true
	case sContainerMemory:
		c.memory, c.hasMemory = v, true
	case sContainerStart:
		if ms := v * 1000; ms < math.MaxInt64 {
			c.startMs = int64(ms)
		}
	}
	return nil
}

// container finds or adds the container of p.ns, p.pod and p.ctr.
func (p *parser) container() *containerSample {
	start := len(p.arena)
	p.arena = append(p.arena, p.ns...)
	nsEnd := len(p.arena)
	p.arena = append(append(p.arena, 0xff), p.pod...)
	podEnd := len(p.arena)
	p.arena = append(append(p.arena, 0xff), p.ctr...)
	key := p.arena[start:]
	h := maphash.Bytes(p.seed, key)
	for j := p.index[h]; j != 0; j = p.pending[j-1].next {
		if c := &p.pending[j-1]; bytes.Equal(p.arena[c.start:c.end], key) {
			p.arena = p.arena[:start]
			return &c.s
		}
	}
	p.pending = append(p.pending, pendingContainer{start: start, nsEnd: nsEnd, podEnd: podEnd, end: len(p.arena), next: p.index[h]})
	p.index[h] = int32(len(p.pending))
	return &p.pending[len(p.pending)-1].s
}

// containers sorts the pending containers into p.res with their strings:
// one for all namespaces and container names (the store interns them), one
// per pod (the store keeps it).
func (p *parser) containers() {
	if len(p.pending) == 0 {
		return
	}
	a := p.arena
	slices.SortFunc(p.pending, func(x, y pendingContainer) int {
		if c := bytes.Compare(a[x.start:x.nsEnd], a[y.start:y.nsEnd]); c != 0 {
			return c
		}
		if c := bytes.Compare(a[x.nsEnd+1:x.podEnd], a[y.nsEnd+1:y.podEnd]); c != 0 {
			return c
		}
		return bytes.Compare(a[x.podEnd+1:x.end], a[y.podEnd+1:y.end])
	})
	all := string(a)
	var last *pendingContainer
	for i := range p.pending {
		c := &p.pending[i]
		s := c.s
		s.namespace, s.container = all[c.start:c.nsEnd], all[c.podEnd+1:c.end]
		if last != nil && bytes.Equal(a[last.start:last.podEnd], a[c.start:c.podEnd]) {
			s.pod = p.res.containers[len(p.res.containers)-1].pod
		} else {
			s.pod = string(a[c.nsEnd+1 : c.podEnd])
		}
		last = c
		p.res.containers = append(p.res.containers, s)
	}
}

// seriesAt reports which of the five series' names line[i:] starts with,
// followed by a blank or '{', and the index after the name.
func seriesAt(line []byte, i int) (series, int, bool) {
	rest := line[i:]
	if len(rest) == 0 || rest[0] != 'c' && rest[0] != 'n' {
		return 0, 0, false
	}
	for s, name := range seriesNames {
		if len(rest) > len(name) && string(rest[:len(name)]) == name {
			switch rest[len(name)] {
			case ' ', '\t', '{':
				return series(s), i + len(name), true
			}
		}
	}
	return 0, 0, false
}

// seriesInBraces reports which of the five series' names line[i:] starts
// with, quoted or not, followed by a ',' or '}' (blanks before), as a
// quoted metric name is written in braces: {"name",labels…} value. It
// returns the index of the ',' or '}'.
func seriesInBraces(line []byte, i int) (series, int, bool) {
	quoted := i < len(line) && line[i] == '"'
	if quoted {
		i++
	}
	for s, name := range seriesNames {
		if !bytes.HasPrefix(line[i:], []byte(name)) {
			continue
		}
		j := i + len(name)
		if quoted {
			if j == len(line) || line[j] != '"' {
				return 0, 0, false
			}
			j++
		}
		if j = skipBlank(line, j); j < len(line) && (line[j] == ',' || line[j] == '}') {
			return series(s), j, true
		}
		return 0, 0, false
	}
	return 0, 0, false
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

func skipBlank(line []byte, i int) int {
	for i < len(line) && isBlank(line[i]) {
		i++
	}
	return i
}

func isNameStart(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '"'
}

// readLabelName appends to dst the label name at line[i], read as expfmt
// reads it: letters, digits and '_', or
// between double quotes any ASCII with \\, \" and \n escaped. It returns
// the index after it and false on a malformed name.
func readLabelName(dst, line []byte, i int) ([]byte, int, bool) {
	if i == len(line) || !isNameStart(line[i]) {
		return dst, i, true // empty
	}
	quoted, escaped := false, false
	for {
		c := line[i]
		switch {
		case escaped:
			switch c {
			case '\\', '"':
				dst = append(dst, c)
			case 'n':
				dst = append(dst, '\n')
			default:
				return dst, i, false
			}
			escaped = false
		case c == '"':
			if quoted = !quoted; !quoted {
				return dst, i + 1, true
			}
		case c == '\\':
			escaped = true
		default:
			dst = append(dst, c)
		}
		if i++; i == len(line) {
			return dst, i, !quoted // a new line in quotes is an error
		}
		c = line[i]
		if !isNameStart(c) && (c < '0' || c > '9') && (!quoted || c >= utf8.RuneSelf) {
			return dst, i, true
		}
	}
}

// readLabelValue appends to dst the label value whose opening quote is at
// line[i-1], unescaping \\, \" and \n, and returns the index after its
// closing quote; false on another escape or no closing quote.
func readLabelValue(dst, line []byte, i int) ([]byte, int, bool) {
	for ; i < len(line); i++ {
		switch c := line[i]; c {
		case '"':
			return dst, i + 1, true
		case '\\':
			if i++; i == len(line) {
				return dst, i, false
			}
			switch c := line[i]; c {
			case '\\', '"':
				dst = append(dst, c)
			case 'n':
				dst = append(dst, '\n')
			default:
				return dst, i, false
			}
		default:
			dst = append(dst, c)
		}
	}
	return dst, i, false
}

// parseFloat is strconv.ParseFloat without the hexadecimal and '_' forms,
// as the text format's values are read.
func parseFloat(b []byte) (float64, error) {
	for _, c := range b {
		if c == 'p' || c == 'P' || c == '_' {
			return 0, errors.New("unsupported character in float")
		}
	}
	return strconv.ParseFloat(string(b), 64)
}
