package loki_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	promclient "github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/gantry-dev/gantry/adapter/rules"
	"github.com/gantry-dev/gantry/collectors/backend"
	lokicollector "github.com/gantry-dev/gantry/collectors/loki"
)

// FuzzResponse answers queries and series listings with arbitrary status
// codes, content types and bodies, as a broken Loki or a proxy in front of
// it might. Decoding must not panic; a call either succeeds — and then every
// sample is finite and a series listing holds valid label names — or fails
// with a *backend.Error whose reason is one of the documented ones, whose
// message starts with "loki: <reason>: ", is one line of bounded length of
// valid UTF-8, and carries the backend's address or the bearer token only
// where Loki's own word on a query is passed on (a 400's message, or an
// error envelope's): a body holding "@ADDR@" or "@TOKEN@" gets them
// substituted, as a proxy's error page echoing the request would.
//
//	go test ./collectors/loki -run '^$' -fuzz FuzzResponse -fuzztime 60s
func FuzzResponse(f *testing.F) {
	for _, seed := range []struct {
		status int
		ctype  string
		body   string
	}{
		{200, "application/json", `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"a"},"value":[1700000000,"1"]}],"stats":{}}}`},
		{200, "application/json", `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.5,"NaN"]},{"metric":{"a":"b"},"value":[1,"+Inf"]},{"metric":{"a":"c"},"value":[1,"1e308"]}]}}`},
		{200, "application/json", `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"42"]}}`},
		{200, "application/json", `{"status":"success","data":{"resultType":"streams","result":[{"stream":{"app":"web"},"values":[["1700000000000000000","line"]]}]}}`},
		{200, "application/json", `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}`},
		{200, "application/json", `{"status":"success","data":{"resultType":"vector","result":null}}`},
		{200, "application/json", `{"status":"success","data":{"resultType":"vector","result":[null]}}`},
		{200, "application/json", `{"status":"success","data":{"resultType":"vector","result":[{"metric":null,"value":null}]}}`},
		{200, "application/json", `{"status":"success","data":{"resultType":"vector","result":[{"histogram":[1,{"count":"1","sum":"1","buckets":[[0,"0","1","1"]]}]}]}}`},
		{200, "application/json", `{"status":"success","data":[{"app":"web","service_name":"web"},{"0bad":"x"}]}`},
		{200, "application/json", `{"status":"success","data":[{"app":"w\u00e9b","detected_level":"error"}],"warnings":["w"]}`},
		{200, "application/json", `{"status":"success","data":null}`},
		{200, "application/json", `{"status":"success"}`},
		{200, "application/json", `{"status":"error","errorType":"bad_data","error":"parse error"}`},
		{200, "text/html", `<html>login page</html>`},
		{200, "", ``},
		{204, "", ``},
		{301, "text/plain", `moved`},
		{400, "text/plain; charset=utf-8", "parse error at line 1, col 1: syntax error: unexpected $end\n"},
		{400, "text/plain", "queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will\nsecond line " + strings.Repeat("x", 600)},
		{400, "application/json", `{"status":"error","errorType":"bad_data","error":"invalid \"query\"` + strings.Repeat("y", 600) + `"}`},
		{400, "text/html", `<html>bad request at http://@ADDR@ with Bearer @TOKEN@</html>`},
		{401, "text/plain", `no org id`},
		{429, "text/plain", `too many outstanding requests`},
		{499, "text/plain", `the request was cancelled by the client`},
		{500, "text/plain", "rpc error: code = Unknown desc = \xff\xfe"},
		{502, "text/plain", `Bad gateway for http://@ADDR@/loki/api/v1/query with Bearer @TOKEN@`},
		{504, "text/plain", `request timed out, decrease the duration of the request`},
	} {
		f.Add(uint16(seed.status), seed.ctype, []byte(seed.body), false)
		f.Add(uint16(seed.status), seed.ctype, []byte(seed.body), true)
	}

	const token = "fuzz-secret-token-L9"
	var mu sync.Mutex
	var status int
	var ctype string
	var body []byte
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		code, ct, b := status, ctype, body
		mu.Unlock()
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(code)
		_, _ = w.Write(b)
	}))
	f.Cleanup(api.Close)
	addr := strings.TrimPrefix(api.URL, "http://")
	tokenFile := filepath.Join(f.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		f.Fatal(err)
	}
	httpCfg := commoncfg.DefaultHTTPClientConfig
	httpCfg.Authorization = &commoncfg.Authorization{Type: "Bearer", CredentialsFile: tokenFile}
	client, err := lokicollector.New(lokicollector.Options{URL: api.URL, HTTP: httpCfg, Tenant: "fuzz", Timeout: 10 * time.Second}, promclient.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	reasons := map[string]bool{"timeout": true, "unreachable": true, "bad_query": true, "backend_error": true, "bad_response": true, "redirected": true, "too_large": true}

	f.Fuzz(func(t *testing.T, code uint16, contentType string, raw []byte, series bool) {
		if len(raw) > 1<<20 {
			t.Skip()
		}
		c := int(code)
		if c < 200 || c > 599 {
			c = 200 + c%400
		}
		// net/http refuses to send some header values; a proxy could not
		// send them either.
		contentType = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f || r >= utf8.RuneSelf {
				return -1
			}
			return r
		}, contentType)
		b := strings.NewReplacer("@ADDR@", addr, "@TOKEN@", token).Replace(string(raw))
		mu.Lock()
		status, ctype, body = c, contentType, []byte(b)
		mu.Unlock()

		ctx := context.Background()
		var err error
		if series {
			var sets []model.LabelSet
			sets, err = client.Series(ctx, []string{`{app="web"}`}, time.Unix(1700000000, 0), time.Unix(1700000060, 0))
			for _, s := range sets {
				for name := range s {
					if !name.IsValid() {
						t.Errorf("status %d: series with an invalid label name %q", c, name)
					}
				}
			}
		} else {
			var v model.Vector
			v, err = client.Query(ctx, `sum(rate({app="web"}[1m]))`, time.Unix(1700000000, 0))
			for _, s := range v {
				if x := float64(s.Value); math.IsNaN(x) || math.IsInf(x, 0) {
					t.Errorf("status %d: query returned a non-finite sample %v", c, x)
				}
				if s.Metric == nil {
					t.Errorf("status %d: sample without a label set", c)
				}
			}
		}
		if err == nil {
			if c/100 != 2 {
				t.Errorf("status %d: call succeeded", c)
			}
			return
		}
		var be *backend.Error
		if !errors.As(err, &be) {
			t.Fatalf("status %d: error %v (%T), want a *backend.Error", c, err, err)
		}
		msg := err.Error()
		if !reasons[be.Reason] || be.Backend != "loki" || !strings.HasPrefix(msg, "loki: "+be.Reason+": ") {
			t.Errorf("status %d: backend %q, reason %q, message %q", c, be.Backend, be.Reason, msg)
		}
		if strings.ContainsAny(msg, "\n\r") || len(msg) > 512 || !utf8.ValidString(msg) {
			t.Errorf("status %d: message of %d bytes, not one line of valid UTF-8: %.200q", c, len(msg), msg)
		}
		// Loki's word on a query (a 400's text, an error envelope's
		// message) is passed on; nothing else of a body may be.
		var envelope struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal([]byte(b), &envelope)
		passed := envelope.Error
		if c == http.StatusBadRequest {
			passed += b
		}
		for _, secret := range []string{addr, token} {
			if strings.Contains(msg, secret) && !strings.Contains(passed, secret) {
				t.Errorf("status %d: message %q carries %q", c, msg, secret)
			}
		}
	})
}

// FuzzStreamSelector builds a LogQL stream selector from arbitrary request
// values the way a logqlQuery rule does — `{` + rules.Matcher.String()
// joined by commas + `}` — embeds it in a metric query, and reads it back
// with a stream-selector parser that follows Loki's lexer (pkg/logql/syntax:
// identifiers, the four matcher operators, double-quoted strings with Go
// escapes and raw backtick strings, both read with strconv.Unquote, '#'
// comments). Whatever the values, the parsed matchers must be exactly the
// intended ones, and the query must go on after the selector exactly as the
// template wrote it: no value changes the query's shape. For regexp
// matchers, the regexp as Loki anchors it must match each intended value
// and no string built from them that is not one.
//
//	go test ./collectors/loki -run '^$' -fuzz FuzzStreamSelector -fuzztime 60s
func FuzzStreamSelector(f *testing.F) {
	for _, seed := range []struct {
		types  uint8
		v1, v2 string
		v3     string
	}{
		{0, "shop", "web-1", "web-2"},
		{1, `x"} or vector(1) #`, "`", "\n"},
		{2, "web-1", `x"} |= "" #`, "a|b"},
		{3, `\`, `\"`, `\\"`},
		{4, "ünïcödé-名前", "\u2028", "\x00"},
		{5, "\xff\xfe", "a\x80b", ""},
		{6, "web-1", "web-10", "web-1x"},
		{7, ".*", "(?i)WEB", "a{2}"},
		{8, "#", "} |= `", `" [1m])) + vector(1) #`},
		{9, "`x`", "'single'", "\t\r\v\f\b\a"},
	} {
		f.Add(seed.types, seed.v1, seed.v2, seed.v3)
	}
	names := []model.LabelName{"namespace", "pod", "app", "_x9", "service_name"}
	types := []labels.MatchType{labels.MatchEqual, labels.MatchNotEqual, labels.MatchRegexp, labels.MatchNotRegexp}

	f.Fuzz(func(t *testing.T, typeBits uint8, v1, v2, v3 string) {
		values := []string{v1, v2, v3}
		// Three matchers: one value each for the first two, all three
		// values as alternatives for the third (a list of pods).
		ms := []rules.Matcher{
			{Label: names[typeBits%5], Type: types[typeBits&3], Values: []string{v1}},
			{Label: names[(typeBits>>2)%5], Type: types[(typeBits>>2)&3], Values: []string{v2}},
			{Label: names[(typeBits>>4)%5], Type: types[2+(typeBits>>4)&1], Values: values},
		}
		parts := make([]string, len(ms))
		for i, m := range ms {
			parts[i] = m.String()
		}
		const tail = ` |= "error" [1m]))`
		query := `sum by (pod) (rate({` + strings.Join(parts, ",") + `}` + tail

		rest, ok := strings.CutPrefix(query, "sum by (pod) (rate(")
		if !ok {
			t.Fatal("query prefix lost")
		}
		got, after, err := parseStreamSelector(rest)
		if err != nil {
			t.Fatalf("query %q: stream selector does not parse: %v", query, err)
		}
		if after != tail {
			t.Fatalf("query %q: after the selector comes %q, want %q", query, after, tail)
		}
		if len(got) != len(ms) {
			t.Fatalf("query %q: %d matchers, want %d: %q", query, len(got), len(ms), got)
		}
		for i, m := range ms {
			g := got[i]
			if g.name != string(m.Label) || g.op != m.Type.String() {
				t.Errorf("matcher %d: %s%s, want %s%s", i, g.name, g.op, m.Label, m.Type)
				continue
			}
			switch m.Type {
			case labels.MatchEqual, labels.MatchNotEqual:
				if g.value != m.Values[0] {
					t.Errorf("matcher %d: value %q, want %q", i, g.value, m.Values[0])
				}
			default:
				checkAlternation(t, i, g.value, m.Values)
			}
		}
	})
}

// checkAlternation checks that re, anchored as Loki (through Prometheus'
// labels.Matcher) anchors it, matches exactly values among probes built
// from them.
func checkAlternation(t *testing.T, i int, re string, values []string) {
	t.Helper()
	for _, v := range values {
		if !utf8.ValidString(v) {
			// Go's regexp syntax cannot hold an invalid UTF-8 byte: Loki
			// refuses such a matcher (bad_query), which changes nothing
			// of the query's shape. Kubernetes names are ASCII.
			return
		}
	}
	anchored, err := regexp.Compile("^(?s:" + re + ")$")
	if err != nil {
		t.Errorf("matcher %d: regexp %q does not compile: %v", i, re, err)
		return
	}
	probes := slices.Clone(values)
	for _, v := range values {
		probes = append(probes, v+"x", "x"+v, v+"\n", "")
		if v != "" {
			_, n := utf8.DecodeLastRuneInString(v)
			probes = append(probes, v[:len(v)-n], strings.ToUpper(v), strings.ToLower(v))
		}
		for _, w := range values {
			probes = append(probes, v+w, v+"|"+w)
		}
	}
	for _, p := range probes {
		want := slices.Contains(values, p)
		if got := anchored.MatchString(p); got != want {
			t.Errorf("matcher %d: regexp %q matches %q: %v, want %v (values %q)", i, re, p, got, want, values)
		}
	}
}

type parsedMatcher struct{ name, op, value string }

func (m parsedMatcher) String() string { return fmt.Sprintf("%s%s%q", m.name, m.op, m.value) }

// parseStreamSelector reads `{name op "value", ...}` at the start of s (after
// white space and comments) as Loki's lexer does, and returns the matchers
// and what follows the closing brace.
func parseStreamSelector(s string) ([]parsedMatcher, string, error) {
	lx := &selectorLexer{src: s}
	if tok, err := lx.next(); err != nil || tok.kind != '{' {
		return nil, "", fmt.Errorf("want '{', got %v (%v)", tok, err)
	}
	var out []parsedMatcher
	for {
		name, err := lx.next()
		if err != nil {
			return nil, "", err
		}
		if name.kind != tokIdent {
			return nil, "", fmt.Errorf("at %d: want a label name, got %v", name.pos, name)
		}
		op, err := lx.next()
		if err != nil {
			return nil, "", err
		}
		if op.kind != tokOp {
			return nil, "", fmt.Errorf("at %d: want a matcher operator, got %v", op.pos, op)
		}
		val, err := lx.next()
		if err != nil {
			return nil, "", err
		}
		if val.kind != tokString {
			return nil, "", fmt.Errorf("at %d: want a string, got %v", val.pos, val)
		}
		out = append(out, parsedMatcher{name: name.text, op: op.text, value: val.text})
		sep, err := lx.next()
		if err != nil {
			return nil, "", err
		}
		switch sep.kind {
		case ',':
		case '}':
			return out, s[lx.pos:], nil
		default:
			return nil, "", fmt.Errorf("at %d: want ',' or '}', got %v", sep.pos, sep)
		}
	}
}

const (
	tokIdent  = -1
	tokOp     = -2
	tokString = -3
)

type token struct {
	kind int // a rune for punctuation, or tok*
	text string
	pos  int
}

func (t token) String() string { return fmt.Sprintf("%d %q", t.kind, t.text) }

type selectorLexer struct {
	src string
	pos int
}

func (l *selectorLexer) next() (token, error) {
	// White space as Loki's scanner skips it (Go's: tab, newline, carriage
	// return, space), and '#' comments to the end of the line.
	for l.pos < len(l.src) {
		switch c := l.src[l.pos]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			l.pos++
		case c == '#':
			for l.pos < len(l.src) && l.src[l.pos] != '\n' {
				l.pos++
			}
		default:
			goto tok
		}
	}
	return token{}, fmt.Errorf("unexpected end of input")
tok:
	start := l.pos
	r, n := utf8.DecodeRuneInString(l.src[l.pos:])
	switch {
	case r == '_' || unicode.IsLetter(r):
		l.pos += n
		for l.pos < len(l.src) {
			r, n := utf8.DecodeRuneInString(l.src[l.pos:])
			if r != '_' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				break
			}
			l.pos += n
		}
		return token{kind: tokIdent, text: l.src[start:l.pos], pos: start}, nil
	case r == '{' || r == '}' || r == ',':
		l.pos++
		return token{kind: int(r), text: string(r), pos: start}, nil
	case r == '=' || r == '!':
		for _, op := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(l.src[l.pos:], op) {
				l.pos += len(op)
				return token{kind: tokOp, text: op, pos: start}, nil
			}
		}
		return token{}, fmt.Errorf("at %d: bad operator", start)
	case r == '"':
		if err := l.scanQuoted(); err != nil {
			return token{}, err
		}
	case r == '`':
		end := strings.IndexByte(l.src[l.pos+1:], '`')
		if end < 0 {
			return token{}, fmt.Errorf("at %d: raw string not terminated", start)
		}
		l.pos += end + 2
	default:
		return token{}, fmt.Errorf("at %d: unexpected %q", start, r)
	}
	text := l.src[start:l.pos]
	// Loki refuses a string token that is not valid UTF-8, then unquotes.
	if !utf8.ValidString(text) {
		return token{}, fmt.Errorf("at %d: invalid UTF-8 in a string", start)
	}
	v, err := strconv.Unquote(text)
	if err != nil {
		return token{}, fmt.Errorf("at %d: %s: %v", start, text, err)
	}
	return token{kind: tokString, text: v, pos: start}, nil
}

// scanQuoted advances over a double-quoted string as Loki's scanner does:
// a newline or the end ends it in error, a backslash starts an escape of
// one of abfnrtv\" or 3 octal, \x 2, \u 4 or \U 8 hex digits.
func (l *selectorLexer) scanQuoted() error {
	start := l.pos
	l.pos++ // the opening quote
	for {
		if l.pos >= len(l.src) || l.src[l.pos] == '\n' {
			return fmt.Errorf("at %d: string not terminated", start)
		}
		c := l.src[l.pos]
		l.pos++
		switch c {
		case '"':
			return nil
		case '\\':
			if l.pos >= len(l.src) {
				return fmt.Errorf("at %d: string not terminated", start)
			}
			e := l.src[l.pos]
			l.pos++
			digits, base := 0, 0
			switch {
			case strings.IndexByte(`abfnrtv\"`, e) >= 0:
			case '0' <= e && e <= '7':
				digits, base = 2, 8
			case e == 'x':
				digits, base = 2, 16
			case e == 'u':
				digits, base = 4, 16
			case e == 'U':
				digits, base = 8, 16
			default:
				return fmt.Errorf("at %d: invalid escape \\%c", l.pos-2, e)
			}
			for range digits {
				if l.pos >= len(l.src) {
					return fmt.Errorf("at %d: string not terminated", start)
				}
				if _, err := strconv.ParseUint(l.src[l.pos:l.pos+1], base, 8); err != nil {
					return fmt.Errorf("at %d: invalid escape digit %q", l.pos, l.src[l.pos])
				}
				l.pos++
			}
		}
	}
}
