package prometheus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/gantry-dev/gantry/collectors/backend"
)

// queryCall POSTs an instant query's form to /api/v1/query, falling back to
// GET where a proxy refuses POST (403, 405, 501), as Prometheus' own client
// does, and decodes the answer. Errors are what the client library reports
// (*v1.Error, *url.Error, the context's), so classify reads them as before,
// or a *backend.LimitError for an answer over the limits.
func (c *Client) queryCall(ctx context.Context, form url.Values) (model.Value, []string, error) {
	u := *c.base
	u.Path = path.Join(u.Path, "/api/v1/query")
	resp, err := c.post(ctx, &u, form)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		// Error answers read the same for every API call: the series
		// call's reading of them is the client library's.
		return nil, nil, decodeSeriesResponse(resp, nil, 0)
	}
	limits := c.calls.Limits()
	buf := bodyBuffers.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= maxPooledBody {
			bodyBuffers.Put(buf)
		}
	}()
	if *buf, err = limits.ReadAnswer(*buf, resp); err != nil {
		return nil, nil, err
	}
	return decodeQueryResponse(string(*buf), limits)
}

// bodyBuffers hold query answers while they are read; the decoded vector
// keeps one string copy of the answer, whose substrings its labels are.
var bodyBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody is the largest buffer kept for the next answer.
const maxPooledBody = 4 << 20

// decodeQueryResponse reads a 2xx answer of the query API. Answers in the
// shape Prometheus writes them are decoded by queryDecoder, in one pass and
// without reflection; any other (keys in another case or order, escapes in
// strings, histograms, error envelopes, bodies that are not JSON) go
// through decodeQueryGeneric, which reads them as the client library does.
// Both return the same for every body the fast pass accepts
// (FuzzQueryDecoding), and both refuse a result of more than
// limits.MaxSamples samples (or series, for a matrix) with a *backend.LimitError
// before they build it.
func decodeQueryResponse(body string, limits backend.Limits) (model.Value, []string, error) {
	d := queryDecoder{s: body, maxSamples: limits.MaxSamples}
	if v, warnings, ok := d.envelope(); ok {
		return v, warnings, nil
	}
	if d.tooMany {
		return nil, nil, limits.TooManySamples()
	}
	return decodeQueryGeneric([]byte(body), limits)
}

// decodeQueryGeneric decodes an answer with encoding/json and the model's
// types, as the Prometheus client library does: a body that is not its
// JSON is a bad_response, a status of "error" the API error it names, and
// a success without data a nil value.
func decodeQueryGeneric(body []byte, limits backend.Limits) (model.Value, []string, error) {
	res := genericResult{maxSamples: limits.MaxSamples}
	env := struct {
		Status    string       `json:"status"`
		Data      any          `json:"data"`
		ErrorType v1.ErrorType `json:"errorType"`
		Error     string       `json:"error"`
		Warnings  []string     `json:"warnings"`
		Infos     []string     `json:"infos"`
	}{Data: &res}
	if err := json.Unmarshal(body, &env); err != nil {
		if res.tooMany {
			return nil, nil, limits.TooManySamples()
		}
		return nil, nil, &v1.Error{Type: v1.ErrBadResponse, Msg: err.Error()}
	}
	if env.Status == "error" {
		return nil, env.Warnings, &v1.Error{Type: env.ErrorType, Msg: env.Error}
	}
	if vec, ok := res.v.(model.Vector); ok {
		for _, s := range vec {
			if s == nil {
				// The client library returned a nil sample, which the
				// first reader of the vector would dereference.
				return nil, env.Warnings, &v1.Error{Type: v1.ErrBadResponse, Msg: "null sample in the result"}
			}
		}
	}
	return res.v, env.Warnings, nil
}

// genericResult is the data of a query answer, decoded by type.
type genericResult struct {
	v model.Value
	// maxSamples bounds the elements of a vector or matrix (<= 0: none);
	// tooMany says that a result had more, and was not decoded.
	maxSamples int
	tooMany    bool
}

func (r *genericResult) UnmarshalJSON(b []byte) error {
	var data struct {
		Type   model.ValueType `json:"resultType"`
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(b, &data); err != nil {
		return err
	}
	if (data.Type == model.ValVector || data.Type == model.ValMatrix) && r.maxSamples > 0 && arrayLen(data.Result) > r.maxSamples {
		// A sample decodes to several times its bytes: count first.
		r.tooMany = true
		return errTooMany
	}
	var err error
	switch data.Type {
	case model.ValScalar:
		var s model.Scalar
		err = json.Unmarshal(data.Result, &s)
		r.v = &s
	case model.ValVector:
		var v model.Vector
		err = json.Unmarshal(data.Result, &v)
		r.v = v
	case model.ValMatrix:
		var m model.Matrix
		err = json.Unmarshal(data.Result, &m)
		r.v = m
	default:
		err = fmt.Errorf("unexpected value type %q", data.Type)
	}
	return err
}

// queryDecoder reads a query answer in the shape Prometheus writes it:
//
//	{"status":"success","data":{"resultType":"vector","result":[
//	  {"metric":{"pod":"web-0"},"value":[1700000000.123,"12.5"]},...]},
//	 "warnings":[...],"infos":[...]}
//
// Label names and values are substrings of the answer, which the vector
// thus keeps: one allocation for all of them. Whatever it does not expect
// (another key, a repeated key, an escape or invalid UTF-8 in a string,
// null where an object is expected, a syntax error) makes it give up, and
// the generic decoding decides.
type queryDecoder struct {
	s      string
	i      int
	labels []string // a sample's names and values, alternating
	// maxSamples bounds a vector's samples (<= 0: no bound); tooMany
	// says the decoder gave up on a vector with more.
	maxSamples int
	tooMany    bool
}

func (d *queryDecoder) ws() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// eat skips white space and then c, reporting whether c was there.
func (d *queryDecoder) eat(c byte) bool {
	d.ws()
	if d.i < len(d.s) && d.s[d.i] == c {
		d.i++
		return true
	}
	return false
}

// str reads a string without escapes.
func (d *queryDecoder) str() (string, bool) {
	if !d.eat('"') {
		return "", false
	}
	start := d.i
	ascii := true
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			s := d.s[start:d.i]
			d.i++
			if !ascii && !utf8.ValidString(s) {
				return "", false
			}
			return s, true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		d.i++
	}
	return "", false
}

// number reads a number in JSON's grammar.
func (d *queryDecoder) number() (string, bool) {
	d.ws()
	start := d.i
	if d.i < len(d.s) && d.s[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(d.s) && d.s[d.i] == '0':
		d.i++
	case d.i < len(d.s) && '1' <= d.s[d.i] && d.s[d.i] <= '9':
		d.digits()
	default:
		return "", false
	}
	if d.i < len(d.s) && d.s[d.i] == '.' {
		d.i++
		if d.digits() == 0 {
			return "", false
		}
	}
	if d.i < len(d.s) && (d.s[d.i] == 'e' || d.s[d.i] == 'E') {
		d.i++
		if d.i < len(d.s) && (d.s[d.i] == '+' || d.s[d.i] == '-') {
			d.i++
		}
		if d.digits() == 0 {
			return "", false
		}
	}
	return d.s[start:d.i], true
}

func (d *queryDecoder) digits() int {
	start := d.i
	for d.i < len(d.s) && '0' <= d.s[d.i] && d.s[d.i] <= '9' {
		d.i++
	}
	return d.i - start
}

// key reads an object's next key and its colon; first is true for the
// first key. end is true at the object's closing brace.
func (d *queryDecoder) key(first bool) (key string, end, ok bool) {
	if d.eat('}') {
		return "", true, true
	}
	if !first && !d.eat(',') {
		return "", false, false
	}
	k, ok := d.str()
	if !ok || !d.eat(':') {
		return "", false, false
	}
	return k, false, true
}

func (d *queryDecoder) envelope() (v model.Value, warnings []string, ok bool) {
	if !d.eat('{') {
		return nil, nil, false
	}
	var seen [4]bool // status, data, warnings, infos
	for first := true; ; first = false {
		k, end, ok := d.key(first)
		if !ok {
			return nil, nil, false
		}
		if end {
			break
		}
		var which int
		switch k {
		case "status":
			status, ok := d.str()
			if !ok || status == "error" {
				return nil, nil, false
			}
		case "data":
			which = 1
			if v, ok = d.data(); !ok {
				return nil, nil, false
			}
		case "warnings":
			which = 2
			if warnings, ok = d.strings(warnings); !ok {
				return nil, nil, false
			}
		case "infos":
			which = 3
			if _, ok = d.strings(nil); !ok {
				return nil, nil, false
			}
		default:
			return nil, nil, false
		}
		if seen[which] {
			return nil, nil, false
		}
		seen[which] = true
	}
	d.ws()
	return v, warnings, d.i == len(d.s)
}

// strings reads an array of strings, appending them to dst.
func (d *queryDecoder) strings(dst []string) ([]string, bool) {
	if !d.eat('[') {
		return nil, false
	}
	if d.eat(']') {
		return dst, true
	}
	for {
		s, ok := d.str()
		if !ok {
			return nil, false
		}
		dst = append(dst, s)
		if d.eat(']') {
			return dst, true
		}
		if !d.eat(',') {
			return nil, false
		}
	}
}

// data reads {"resultType":"vector"|"scalar","result":...}, in this order,
// optionally followed by an empty "analysis".
func (d *queryDecoder) data() (model.Value, bool) {
	if !d.eat('{') {
		return nil, false
	}
	k, _, ok := d.key(true)
	if !ok || k != "resultType" {
		return nil, false
	}
	typ, ok := d.str()
	if !ok {
		return nil, false
	}
	if k, _, ok = d.key(false); !ok || k != "result" {
		return nil, false
	}
	var v model.Value
	switch typ {
	case "vector":
		vec, ok := d.vector()
		if !ok {
			return nil, false
		}
		v = vec
	case "scalar":
		ts, val, ok := d.pair()
		if !ok {
			return nil, false
		}
		v = &model.Scalar{Timestamp: ts, Value: val}
	default:
		return nil, false
	}
	// Thanos Query adds "analysis":{} (its query analysis, empty unless
	// asked for) after the result; anything else is for the generic path.
	if d.eat(',') {
		k, _, ok := d.key(true)
		if !ok || k != "analysis" || !d.emptyObjectOrNull() {
			return nil, false
		}
	}
	return v, d.eat('}')
}

// emptyObjectOrNull reads {} or null.
func (d *queryDecoder) emptyObjectOrNull() bool {
	if d.eat('{') {
		return d.eat('}')
	}
	d.ws()
	if strings.HasPrefix(d.s[d.i:], "null") {
		d.i += len("null")
		return true
	}
	return false
}

// pair reads [timestamp,"value"].
func (d *queryDecoder) pair() (model.Time, model.SampleValue, bool) {
	if !d.eat('[') {
		return 0, 0, false
	}
	num, ok := d.number()
	if !ok || !d.eat(',') {
		return 0, 0, false
	}
	var ts model.Time
	if ts.UnmarshalJSON([]byte(num)) != nil {
		return 0, 0, false
	}
	s, ok := d.str()
	if !ok || !d.eat(']') {
		return 0, 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, 0, false
	}
	return ts, model.SampleValue(f), true
}

func (d *queryDecoder) vector() (model.Vector, bool) {
	if !d.eat('[') {
		return nil, false
	}
	// Every sample in Prometheus' shape names its metric once: the count
	// sizes both allocations the vector needs.
	n := strings.Count(d.s[d.i:], `"metric"`)
	if d.maxSamples > 0 {
		n = min(n, d.maxSamples)
	}
	samples := make([]model.Sample, 0, n)
	if !d.eat(']') {
		for {
			var s model.Sample
			if !d.sample(&s) {
				return nil, false
			}
			if d.maxSamples > 0 && len(samples) == d.maxSamples {
				d.tooMany = true
				return nil, false
			}
			samples = append(samples, s)
			if d.eat(']') {
				break
			}
			if !d.eat(',') {
				return nil, false
			}
		}
	}
	vec := make(model.Vector, len(samples))
	for i := range samples {
		vec[i] = &samples[i]
	}
	return vec, true
}

// sample reads {"metric":{...},"value":[...]}, keys in either order.
func (d *queryDecoder) sample(s *model.Sample) bool {
	if !d.eat('{') {
		return false
	}
	var metric, value bool
	for first := true; ; first = false {
		k, end, ok := d.key(first)
		if !ok {
			return false
		}
		if end {
			break
		}
		switch {
		case k == "metric" && !metric:
			metric = true
			if s.Metric, ok = d.metric(); !ok {
				return false
			}
		case k == "value" && !value:
			value = true
			if s.Timestamp, s.Value, ok = d.pair(); !ok {
				return false
			}
		default:
			return false
		}
	}
	return metric && value
}

func (d *queryDecoder) metric() (model.Metric, bool) {
	if !d.eat('{') {
		return nil, false
	}
	d.labels = d.labels[:0]
	for first := true; ; first = false {
		name, end, ok := d.key(first)
		if !ok {
			return nil, false
		}
		if end {
			break
		}
		value, ok := d.str()
		if !ok {
			return nil, false
		}
		d.labels = append(d.labels, name, value)
	}
	m := make(model.Metric, len(d.labels)/2)
	for i := 0; i < len(d.labels); i += 2 {
		m[model.LabelName(d.labels[i])] = model.LabelValue(d.labels[i+1])
	}
	return m, true
}

// errNoResult is a success without data.
var errNoResult = errors.New("query returned no result")

// errTooMany stops a decoding that would hold more samples than the limit.
var errTooMany = errors.New("too many samples")

// arrayLen is the number of elements of raw if it is an array, and 0 if it
// is another value; raw is valid JSON (what encoding/json hands an
// Unmarshaler), so the elements are what the commas outside nested values
// and strings separate.
func arrayLen(raw []byte) int {
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[0] != '[' {
		return 0
	}
	inner := bytes.TrimSpace(raw[1 : len(raw)-1])
	if len(inner) == 0 {
		return 0
	}
	n, depth := 1, 0
	inString, escaped := false, false
	for _, c := range inner {
		switch {
		case escaped:
			escaped = false
		case inString:
			escaped = c == '\\'
			inString = c != '"'
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
		case c == ']' || c == '}':
			depth--
		case c == ',' && depth == 0:
			n++
		}
	}
	return n
}
