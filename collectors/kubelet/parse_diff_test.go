package kubelet

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// The differential rule: parse must answer what expfmtParse (the filter and
// expfmt it replaced) answers — both fail, or both succeed with the same
// result — for the same answer with one kind of line taken out: lines
// starting with '{' (a quoted metric name, which no kubelet writes) whose
// first element is not one of the five names ({"name",… or {name,… or
// {"name"} …). The old filter handed every '{' line to expfmt, which
// failed the answer on a malformed one or read a sample whose name comes
// after its labels; parse skips them, as it skips every other line that is
// not one of the five series. When expfmt panics (it can, on a summary
// typed series written in braces after another series' line) the oracle
// says nothing.
var bracedWanted = regexp.MustCompile(`^[ \t]*\{[ \t]*(?:"(?:` + namesAlt() + `)"|(?:` + namesAlt() + `))[ \t]*[,}]`)

func namesAlt() string {
	return strings.Join(seriesNames[:], "|")
}

// oracleInput is in without the '{' lines parse skips by the rule above.
func oracleInput(in []byte) []byte {
	var out []byte
	for len(in) > 0 {
		line := in
		if i := bytes.IndexByte(in, '\n'); i >= 0 {
			line, in = in[:i+1], in[i+1:]
		} else {
			in = nil
		}
		if t := bytes.TrimLeft(line, " \t"); len(t) > 0 && t[0] == '{' && !bracedWanted.Match(line) {
			continue
		}
		out = append(out, line...)
	}
	return out
}

// oracle is expfmtParse on oracleInput(in); ok is false when expfmt panics.
func oracle(in []byte, defaultMs int64) (res *scrapeResult, err error, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	res, err = expfmtParse(bytes.NewReader(oracleInput(in)), defaultMs)
	return res, err, true
}

var resultOpts = []cmp.Option{cmp.AllowUnexported(scrapeResult{}, containerSample{}, point{}), cmpopts.EquateEmpty()}

// checkAgainstOracle fails t when parse and the oracle disagree on in.
func checkAgainstOracle(t testing.TB, p *parser, in []byte, defaultMs int64) {
	t.Helper()
	want, wantErr, ok := oracle(in, defaultMs)
	if !ok {
		return
	}
	got, err := p.parse(bytes.NewReader(in), defaultMs)
	switch {
	case errors.Is(err, errTooManyLabels):
		// The one rule expfmt does not have (see maxLabels).
	case err != nil && wantErr != nil:
	case err != nil:
		t.Fatalf("parse failed where expfmt did not: %v\ninput: %q", err, in)
	case wantErr != nil:
		t.Fatalf("parse succeeded where expfmt failed (%v)\ninput: %q\ngot: %+v", wantErr, in, got)
	default:
		if d := cmp.Diff(want, got, resultOpts...); d != "" {
			t.Fatalf("parse disagrees with expfmt (-expfmt +parse):\n%s\ninput: %q", d, in)
		}
	}
}

func TestParseMatchesExpfmt(t *testing.T) {
	ms := t0.UnixMilli()
	cs := []container{{"a", "p", "c", 1, 2, 3}, {"a", "q", "c", 4, 5, 6}, {"b", "p", "c", 7, 8, 0}}
	kubelet := exposition(100, 2e9, ms, cs)
	kwok := exposition(100, 2e9, 0, cs)
	const cpu = "container_cpu_usage_seconds_total"
	for _, tc := range []struct{ name, in string }{
		{"kubelet", kubelet},
		{"kwok, no timestamps", kwok},
		{"no final newline", strings.TrimSuffix(kubelet, "\n")},
		{"no final newline after a series skipped", kubelet + "pod_memory_working_set_bytes 1"},
		{"no final newline after a wanted series", kubelet + "node_memory_working_set_bytes 1"},
		{"no final newline after a TYPE line", kwok + "# TYPE node_memory_working_set_bytes gauge"},
		{"blank lines and comments", "\n\n  \n# a comment\n#\n# TYPE\n# HELP x\n" + kwok + "  \t"},
		{"CRLF", strings.ReplaceAll(kwok, "\n", "\r\n")},
		{"label order", cpu + `{pod="p",container="c",namespace="n"} 1` + "\n"},
		{"spaces everywhere", "  " + cpu + " \t{ pod = \"p\" ,\tcontainer= \"c\",namespace =\"n\" , } \t 1 \t 5\n"},
		{"no space after the braces", cpu + `{pod="p",container="c",namespace="n"}1` + "\n"},
		{"trailing comma", cpu + `{pod="p",container="c",namespace="n",} 1` + "\n"},
		{"two trailing commas", cpu + `{pod="p",container="c",namespace="n",,} 1` + "\n"},
		{"empty labels", "node_cpu_usage_seconds_total{} 1\n"},
		{"escapes", cpu + `{pod="p\"\\\n",container="c",namespace="n"} 1` + "\n"},
		{"bad escape", cpu + `{pod="p\t",container="c",namespace="n"} 1` + "\n"},
		{"escape at the end", cpu + `{pod="p\` + "\n"},
		{"unterminated value", cpu + `{pod="p} 1` + "\n"},
		{"quoted label names", cpu + `{"pod"="p","container"="c",namespace="n"} 1` + "\n"},
		{"odd quoted label name", cpu + `{p"o"="p",container="c",namespace="n"} 1` + "\n"},
		{"label name with a space", cpu + `{"po d"="p",pod="p",container="c",namespace="n"} 1` + "\n"},
		{"empty label name", cpu + `{""="p",pod="p",container="c",namespace="n"} 1` + "\n"},
		{"__name__", cpu + `{__name__="x",pod="p",container="c",namespace="n"} 1` + "\n"},
		{"duplicate label", cpu + `{pod="p",pod="q",container="c",namespace="n"} 1` + "\n"},
		{"invalid UTF-8 value", cpu + "{pod=\"\xff\",container=\"c\",namespace=\"n\"} 1\n"},
		{"UTF-8 value", cpu + `{pod="pé",container="c",namespace="n"} 1` + "\n"},
		{"empty label value", cpu + `{pod="",container="c",namespace="n"} 1` + "\n" + "node_cpu_usage_seconds_total 1\n"},
		{"missing label", cpu + `{container="c",namespace="n"} 1` + "\n" + "node_cpu_usage_seconds_total 1\n"},
		{"exotic floats", cpu + `{pod="a",container="c",namespace="n"} NaN` + "\n" + cpu + `{pod="b",container="c",namespace="n"} +Inf` + "\n" + cpu + `{pod="c",container="c",namespace="n"} -Inf` + "\n" + cpu + `{pod="d",container="c",namespace="n"} 1.5e3` + "\n" + cpu + `{pod="e",container="c",namespace="n"} -0` + "\n" + cpu + `{pod="f",container="c",namespace="n"} .5E-3` + "\n" + cpu + `{pod="g",container="c",namespace="n"} infinity` + "\n" + cpu + `{pod="h",container="c",namespace="n"} -1` + "\n"},
		{"hexadecimal float", cpu + `{pod="p",container="c",namespace="n"} 0x1p3` + "\n"},
		{"underscore in a float", cpu + `{pod="p",container="c",namespace="n"} 1_0` + "\n"},
		{"float out of range", cpu + `{pod="p",container="c",namespace="n"} 1e400` + "\n"},
		{"no value", cpu + `{pod="p",container="c",namespace="n"}` + "\n"},
		{"no value after a blank", "node_cpu_usage_seconds_total \n"},
		{"trailing blank after the value", "node_cpu_usage_seconds_total 1 \n"},
		{"trailing blank after the timestamp", "node_cpu_usage_seconds_total 1 2 \n"},
		{"bad timestamp", "node_cpu_usage_seconds_total 1 2.5\n"},
		{"timestamps", "node_cpu_usage_seconds_total 1 +7\n" + cpu + `{pod="p",container="c",namespace="n"} 1 -5` + "\n" + cpu + `{pod="q",container="c",namespace="n"} 1 0` + "\n"},
		{"start time overflow", "node_cpu_usage_seconds_total 1\ncontainer_start_time_seconds{pod=\"p\",container=\"c\",namespace=\"n\"} 1e300\n"},
		{"start time only", "container_start_time_seconds{pod=\"p\",container=\"c\",namespace=\"n\"} 5\n"},
		{"memory only", "container_memory_working_set_bytes{pod=\"p\",container=\"c\",namespace=\"n\"} 5\n"},
		{"node memory only", "node_memory_working_set_bytes 5\n"},
		{"two node CPU series", "node_cpu_usage_seconds_total{a=\"1\"} 1\nnode_cpu_usage_seconds_total{a=\"2\"} 2\n" + kwok},
		{"node CPU NaN and a value", "node_cpu_usage_seconds_total NaN\nnode_cpu_usage_seconds_total 2\n"},
		{"node CPU negative", "node_cpu_usage_seconds_total -2\nnode_memory_working_set_bytes -1\n"},
		{"node CPU with labels", "node_cpu_usage_seconds_total{x=\"y\"} 2 7\n"},
		{"repeated container: the last wins", cpu + `{pod="p",container="c",namespace="n"} 1 5` + "\n" + cpu + `{pod="p",container="c",namespace="n"} 2 6` + "\n" + cpu + `{pod="p",container="c",namespace="n"} NaN 7` + "\n"},
		{"TYPE in any case", "# TYPE node_cpu_usage_seconds_total CoUnTeR\nnode_cpu_usage_seconds_total 1\n"},
		{"TYPE gaugehistogram", "# TYPE node_cpu_usage_seconds_total gaugehistogram\nnode_cpu_usage_seconds_total 1\n" + kwok},
		{"TYPE with a long s", "# TYPE node_cpu_usage_seconds_total ſummary\nnode_cpu_usage_seconds_total 1\n"},
		{"TYPE unknown", "# TYPE node_cpu_usage_seconds_total countr\nnode_cpu_usage_seconds_total 1\n"},
		{"TYPE with a trailing blank", "# TYPE node_cpu_usage_seconds_total counter \nnode_cpu_usage_seconds_total 1\n"},
		{"TYPE twice", "# TYPE node_cpu_usage_seconds_total counter\n# TYPE node_cpu_usage_seconds_total counter\nnode_cpu_usage_seconds_total 1\n"},
		{"TYPE after samples", "node_cpu_usage_seconds_total 1\n# TYPE node_cpu_usage_seconds_total counter\n"},
		{"TYPE of another series twice", "# TYPE x counter\n# TYPE x counter\nnode_cpu_usage_seconds_total 1\n"},
		{"TYPE without type, then TYPE", "# TYPE node_cpu_usage_seconds_total \n# TYPE node_cpu_usage_seconds_total gauge\nnode_cpu_usage_seconds_total 1\n"},
		{"TYPE with a brace", "# TYPE node_cpu_usage_seconds_total{ counter\nnode_cpu_usage_seconds_total 1\n"},
		{"TYPE glued", "#TYPE\tnode_cpu_usage_seconds_total\tcounter\nnode_cpu_usage_seconds_total 1\n"},
		{"TYPEx", "# TYPEnode_cpu_usage_seconds_total histogram\nnode_cpu_usage_seconds_total 1\n"},
		{"HELP twice", "# HELP node_cpu_usage_seconds_total a\n# HELP node_cpu_usage_seconds_total b\nnode_cpu_usage_seconds_total 1\n"},
		{"summary", "# TYPE container_cpu_usage_seconds_total summary\n" + cpu + `{pod="p",container="c",namespace="n",quantile="0.5"} 1` + "\n" + cpu + `{pod="p",container="c",namespace="n",quantile="0.5"} 1` + "\nnode_cpu_usage_seconds_total 1\n"},
		{"summary bad quantile", "# TYPE container_cpu_usage_seconds_total summary\n" + cpu + `{quantile="x"} 1` + "\nnode_cpu_usage_seconds_total 1\n"},
		{"histogram negative bucket", "# TYPE node_cpu_usage_seconds_total histogram\nnode_cpu_usage_seconds_total{le=\"1\"} -1\n" + kwok},
		{"histogram NaN bucket", "# TYPE node_cpu_usage_seconds_total histogram\nnode_cpu_usage_seconds_total{le=\"NaN\"} -1\n" + kwok},
		{"histogram bad le", "# TYPE node_cpu_usage_seconds_total histogram\nnode_cpu_usage_seconds_total{le=\"1_0\"} 1\n" + kwok},
		{"series with a longer name", "node_cpu_usage_seconds_total_x{bad 1\nnode_cpu_usage_seconds_totalx 1\n" + kwok},
		{"malformed other series", "other{bad\nx y z\n" + kwok},
		{"quoted name in braces", `{"node_cpu_usage_seconds_total"} 3` + "\n" + `{ node_memory_working_set_bytes , a="b" } 4 5` + "\n" + `{"` + cpu + `",pod="p",container="c",namespace="n"} 1` + "\n"},
		{"quoted name in braces then a second name", `{"node_cpu_usage_seconds_total",x} 3` + "\n"},
		{"braces: another series", `{"pod_cpu_usage_seconds_total",pod="p"} 3` + "\n" + kwok},
		{"braces: no name", `{} 3` + "\n" + kwok},
		{"quoted name outside braces", `"node_cpu_usage_seconds_total" 3` + "\n" + kwok},
		{"not a kubelet", "<html><body>Bad Gateway</body></html>\n"},
		{"empty", ""},
		{"NUL in a value", cpu + "{pod=\"a\x00\",container=\"c\",namespace=\"n\"} 1\n" + cpu + "{pod=\"a\",container=\"c\",namespace=\"n\"} 1\n"},
		{"long line", "# HELP x " + strings.Repeat("y", 3*lineBuffer) + "\n" + cpu + `{pod="` + strings.Repeat("p", 2*lineBuffer) + `",container="c",namespace="n"} 1` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkAgainstOracle(t, newParser(), []byte(tc.in), ms)
		})
	}
}

// The fuzz corpus and generated answers, through one pooled parser as the
// collector uses it.
func TestParseMatchesExpfmtOnCorpusAndGenerated(t *testing.T) {
	p := newParser()
	files, _ := filepath.Glob("testdata/fuzz/*/*")
	if len(files) == 0 {
		t.Fatal("no corpus")
	}
	for _, f := range files {
		for i, in := range corpusInputs(t, f) {
			t.Run(fmt.Sprintf("%s/%d", filepath.Base(f), i), func(t *testing.T) { checkAgainstOracle(t, p, in, 7) })
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	accepted := 0
	for i := range 3000 {
		in := generated(r)
		if _, err := expfmtParse(bytes.NewReader(oracleInput(in)), 7); err == nil {
			accepted++
		}
		t.Run(fmt.Sprintf("generated/%d", i), func(t *testing.T) { checkAgainstOracle(t, p, in, 7) })
	}
	t.Logf("%d of the generated answers parse", accepted)
	if accepted < 1500 {
		t.Errorf("only %d of the generated answers parse: the generator makes too many bad ones", accepted)
	}
}

// corpusInputs reads the []byte values of a "go test fuzz v1" file.
func corpusInputs(t *testing.T, path string) [][]byte {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ins [][]byte
	for _, line := range strings.Split(string(data), "\n")[1:] {
		if s, ok := strings.CutPrefix(line, "[]byte("); ok {
			v, err := strconv.Unquote(strings.TrimSuffix(s, ")"))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			ins = append(ins, []byte(v))
		}
	}
	return ins
}

// generated is a random kubelet-like answer: the five series among others,
// labels in any order with odd spacing and escapes, HELP and TYPE lines,
// floats in every spelling, timestamps or none; now and then a line
// expfmt rejects.
func generated(r *rand.Rand) []byte {
	var b bytes.Buffer
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	bad := r.IntN(3) == 0 // this answer may have lines expfmt rejects
	rare := func() bool { return bad && r.IntN(30) == 0 }
	blank := func() string {
		if r.IntN(4) == 0 {
			return pick(" ", "\t", "  ", " \t")
		}
		return ""
	}
	value := func() string {
		if rare() {
			return pick("0x1p3", "1_0", "1e400", "", "abc", "1.2.3", "--1")
		}
		if r.IntN(5) == 0 {
			return pick("NaN", "nan", "+Inf", "-Inf", "Inf", "inf", "+inf", "-0", "0", "1e-400", ".5", "5.", "+3", "-1", "1E5", "Infinity", "1e308")
		}
		return strconv.FormatFloat(r.Float64()*math1e(r.IntN(12)), pick("g", "e", "f", "E", "G")[0], -1, 64)
	}
	ts := func() string {
		switch r.IntN(6) {
		case 0, 1:
			return ""
		case 2:
			if rare() {
				return " " + pick("1.5", "x", "", "1 2", "9223372036854775808")
			}
			return " " + pick("0", "-5", "+17", "007")
		}
		return pick(" ", "\t", "  ") + strconv.FormatInt(1795471200000+r.Int64N(1e6), 10)
	}
	labelValue := func() string {
		if rare() {
			return pick(`bad\t`, "\xff", `\`)
		}
		v := pick("a", "b", "kube-system", "web-7d9c5b6f8d-x2x9k", "app", "envoy", "pé", `q\"x`, `bs\\`, `nl\n`, "", "sp ace", "ü{}")
		if r.IntN(8) == 0 {
			v = ""
		}
		return v
	}
	labelName := func(n string) string {
		if r.IntN(10) == 0 {
			return `"` + n + `"`
		}
		return n
	}
	labels := func() string {
		ls := []string{"container", "namespace", "pod"}
		if r.IntN(5) == 0 {
			ls = append(ls, pick("image", "id", "quantile", "le", "x_y"))
		}
		if r.IntN(10) == 0 {
			ls = ls[:r.IntN(len(ls))]
		}
		if rare() {
			ls = append(ls, pick("pod", "__name__", "9x", `""`))
		}
		r.Shuffle(len(ls), func(i, j int) { ls[i], ls[j] = ls[j], ls[i] })
		var parts []string
		for _, l := range ls {
			parts = append(parts, blank()+labelName(l)+blank()+"="+blank()+`"`+labelValue()+`"`+blank())
		}
		s := strings.Join(parts, ",")
		if r.IntN(6) == 0 {
			s += ","
		}
		return s
	}
	series := []string{containerCPU, containerMemory, containerStart, nodeCPU, nodeMemory,
		"container_swap_usage_bytes", "pod_cpu_usage_seconds_total", "scrape_error", "node_cpu_usage_seconds_total_x", "resource_scrape_error"}
	seen := map[string]bool{}
	for range 1 + r.IntN(30) {
		name := series[r.IntN(len(series))]
		if r.IntN(3) == 0 && (!seen[name] || rare()) {
			fmt.Fprintf(&b, "# HELP %s [STABLE] Some help \\n text\n", name)
			typ := pick("counter", "gauge", "untyped", "COUNTER", "Gauge")
			if r.IntN(12) == 0 {
				typ = pick("summary", "histogram", "gaugehistogram")
			}
			if rare() {
				typ = pick("bogus", "counter ")
			}
			fmt.Fprintf(&b, "#%sTYPE%s%s%s%s\n", pick(" ", "", "\t"), pick(" ", "\t"), name, pick(" ", "\t", "  "), typ)
		}
		seen[name] = true
		for range 1 + r.IntN(4) {
			if r.IntN(15) == 0 {
				b.WriteString(pick("\n", "# a comment\n", "  \n", "other{bad\n"))
			}
			node := strings.HasPrefix(name, "node_") || name == "scrape_error" || name == "resource_scrape_error"
			switch {
			case r.IntN(25) == 0:
				fmt.Fprintf(&b, "%s{%s%q%s,%s}%s%s%s\n", blank(), blank(), name, blank(), labels(), blank()+" ", value(), ts())
			case node && r.IntN(4) != 0:
				fmt.Fprintf(&b, "%s%s %s%s%s\n", blank(), name, blank(), value(), ts())
			default:
				fmt.Fprintf(&b, "%s%s%s{%s}%s%s%s\n", blank(), name, blank(), labels(), pick(" ", "\t", "", "  "), value(), ts())
			}
		}
	}
	out := b.Bytes()
	if r.IntN(10) == 0 && len(out) > 0 {
		out = out[:len(out)-1] // no final newline
	}
	return out
}

func math1e(n int) float64 {
	f := 1.0
	for range n {
		f *= 10
	}
	return f
}
