package prometheus

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/gantry-dev/gantry/collectors/backend"
)

// Series lists the label sets of the series matching any of matchers in
// [start, end]: at most Limits.MaxSeries of them, of at most
// Limits.MaxResponseBytes of labels in all.
func (c *Client) Series(ctx context.Context, matchers []string, start, end time.Time) ([]model.LabelSet, error) {
	limits := c.calls.Limits().For(ctx)
	var sets []model.LabelSet
	var size int64
	err := c.series(ctx, matchers, start, end, func(pairs []labelPair) error {
		if len(sets) == limits.MaxSeries {
			return limits.TooManySeries("series")
		}
		for _, p := range pairs {
			size += int64(len(p.name) + len(p.value))
		}
		if size > limits.MaxResponseBytes {
			return limits.TooManyBytes()
		}
		ls := make(model.LabelSet, len(pairs))
		for _, p := range pairs {
			ls[model.LabelName(p.name)] = model.LabelValue(p.value)
		}
		sets = append(sets, ls)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sets, nil
}

// SeriesShapes calls fn once for every distinct shape among the series
// matching any of matchers in [start, end]: a metric name and the sorted
// names of the series' other labels. Label values are read and dropped as
// the answer streams in, so memory grows with the number of shapes, not of
// series; discovery needs no more. At most Limits.MaxSeries shapes are
// kept, of at most Limits.MaxResponseBytes of names in all. fn may keep
// labels.
func (c *Client) SeriesShapes(ctx context.Context, matchers []string, start, end time.Time, fn func(name string, labels []model.LabelName)) error {
	type shape struct {
		name   string
		labels []model.LabelName
	}
	limits := c.calls.Limits()
	seen := map[string]struct{}{}
	names := map[string]model.LabelName{} // interned: every shape shares them
	var shapes []shape
	var size int64 // bytes of the names kept
	var key []byte
	var others [][]byte
	err := c.series(ctx, matchers, start, end, func(pairs []labelPair) error {
		var name []byte
		others = others[:0]
		for _, p := range pairs {
			if string(p.name) == model.MetricNameLabel {
				name = p.value
			} else {
				others = append(others, p.name)
			}
		}
		slices.SortFunc(others, bytes.Compare)
		key = append(key[:0], name...)
		for _, l := range others {
			key = append(append(key, 0), l...)
		}
		if _, ok := seen[string(key)]; ok {
			return nil
		}
		if len(shapes) == limits.MaxSeries {
			return limits.TooManySeries("distinct sets of a metric name and label names")
		}
		// The key and the name are kept; so are label names not seen yet.
		size += int64(len(key) + len(name))
		for _, l := range others {
			if _, ok := names[string(l)]; !ok {
				size += int64(len(l))
			}
		}
		if size > limits.MaxResponseBytes {
			return limits.TooManyBytes()
		}
		seen[string(key)] = struct{}{}
		s := shape{name: string(name), labels: make([]model.LabelName, len(others))}
		for i, l := range others {
			ln, ok := names[string(l)]
			if !ok {
				ln = model.LabelName(l)
				names[string(ln)] = ln
			}
			s.labels[i] = ln
		}
		shapes = append(shapes, s)
		return nil
	})
	if err != nil {
		return err
	}
	for _, s := range shapes {
		fn(s.name, s.labels)
	}
	return nil
}

// series calls /api/v1/series and hands each series' labels to visit as
// the answer is decoded; pairs and their bytes are valid only during the
// call. An error from visit ends the call with it. On an error the series
// already visited are to be dropped.
func (c *Client) series(ctx context.Context, matchers []string, start, end time.Time, visit func([]labelPair) error) error {
	return c.tenancy.ForEach(ctx, func(ctx context.Context) error {
		return c.seriesOf(ctx, matchers, start, end, visit)
	})
}

// seriesOf is series for one tenant, or without tenants.
func (c *Client) seriesOf(ctx context.Context, matchers []string, start, end time.Time, visit func([]labelPair) error) error {
	// Listing a large Prometheus takes longer than a query: the caller's
	// deadline (discovery's relist timeout) bounds it, the client's
	// timeout only when there is none.
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.calls.Timeout())
		defer cancel()
	}
	t0 := time.Now()
	form := url.Values{}
	for _, m := range matchers {
		form.Add("match[]", m)
	}
	if !start.IsZero() {
		form.Set("start", formatTime(start))
	}
	if !end.IsZero() {
		form.Set("end", formatTime(end))
	}
	u := *c.base
	u.Path = path.Join(u.Path, "/api/v1/series")
	err := c.seriesCall(ctx, &u, form, visit)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return c.fail("series", t0, err)
	}
	c.calls.Succeed("series", t0)
	return nil
}

// seriesCall POSTs the form and decodes the answer as it streams in.
func (c *Client) seriesCall(ctx context.Context, u *url.URL, form url.Values, visit func([]labelPair) error) error {
	resp, err := c.post(ctx, u, form)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeSeriesResponse(resp, visit, c.calls.Limits().MaxResponseBytes)
}

// post POSTs the form to u, falling back to GET where a proxy refuses POST
// (403, 405, 501), as Prometheus' own client does. The caller closes the
// answer's body.
func (c *Client) post(ctx context.Context, u *url.URL, form url.Values) (*http.Response, error) {
	body := form.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// Idempotent: the transport may retry it on a broken connection.
	req.Header["Idempotency-Key"] = nil
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusForbidden, http.StatusMethodNotAllowed, http.StatusNotImplemented:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		get := *u
		get.RawQuery = body
		if req, err = http.NewRequestWithContext(ctx, http.MethodGet, get.String(), nil); err != nil {
			return nil, err
		}
		return c.hc.Do(req)
	}
	return resp, nil
}

func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.Unix())+float64(t.Nanosecond())/1e9, 'f', -1, 64)
}

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 1 << 20

// decodeSeriesResponse reads an answer of the series API. Success bodies
// are decoded as they stream in, holding at most maxBytes of one series'
// labels (or of any other string or number in the answer) before giving up
// with a *backend.LimitError; errors are reported as the Prometheus client library
// reports them (*v1.Error), so that classify reads them the same way for
// every call.
func decodeSeriesResponse(resp *http.Response, visit func([]labelPair) error, maxBytes int64) error {
	code := resp.StatusCode
	if code/100 != 2 {
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if err != nil {
			return err
		}
		generic := func() error {
			t, msg := v1.ErrBadResponse, fmt.Sprintf("bad response code %d", code)
			switch code / 100 {
			case 4:
				t, msg = v1.ErrClient, fmt.Sprintf("client error: %d", code)
			case 5:
				t, msg = v1.ErrServer, fmt.Sprintf("server error: %d", code)
			}
			return &v1.Error{Type: t, Msg: msg, Detail: string(body)}
		}
		// 400 and 422 are the codes of the API's own errors.
		if code != http.StatusBadRequest && code != http.StatusUnprocessableEntity {
			return generic()
		}
		var env struct {
			Status    string          `json:"status"`
			ErrorType v1.ErrorType    `json:"errorType"`
			Error     string          `json:"error"`
			Data      json.RawMessage `json:"data"`
		}
		if json.Unmarshal(body, &env) != nil {
			return generic()
		}
		if env.Status == "success" {
			return &v1.Error{Type: v1.ErrBadResponse, Msg: "inconsistent body for response code"}
		}
		if env.ErrorType == "" {
			env.ErrorType = v1.ErrClient
		}
		if env.Error == "" {
			env.Error = fmt.Sprintf("client error: %d", code)
		}
		return &v1.Error{Type: env.ErrorType, Msg: env.Error}
	}
	d := &seriesDecoder{r: bufio.NewReaderSize(resp.Body, 64<<10), visit: visit, maxBytes: maxBytes}
	env, err := d.envelope()
	if err != nil {
		var se *syntaxError
		if errors.As(err, &se) {
			return &v1.Error{Type: v1.ErrBadResponse, Msg: se.Error()}
		}
		return err // reading the body failed
	}
	if env.status == "error" {
		return &v1.Error{Type: v1.ErrorType(env.errorType), Msg: env.errorMsg}
	}
	if !env.data {
		return &v1.Error{Type: v1.ErrBadResponse, Msg: "series response without data"}
	}
	return nil
}

// labelPair is one label of a series, in the decoder's buffer.
type labelPair struct{ name, value []byte }

// syntaxError is a body that is not the JSON the series API sends.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return "decoding series response: " + e.msg }

// seriesDecoder decodes {"status":...,"data":[{"name":"value",...},...],...}
// from a stream, one series at a time, reusing one buffer for every
// series' labels: the whole answer (hundreds of MiB at a million series)
// is never held, nor is a map built per series.
type seriesDecoder struct {
	r     *bufio.Reader
	visit func([]labelPair) error
	// maxBytes bounds buf: a series' labels, or any one string or
	// number, longer than this is a *backend.LimitError (<= 0: no bound).
	maxBytes int64
	buf      []byte // the current series' names and values
	offs     []int  // start, end of each name and value in buf
	pairs    []labelPair
	depth    int
}

type envelope struct {
	status, errorType, errorMsg string
	data                        bool // a data array (or null) was read
}

func (d *seriesDecoder) envelope() (envelope, error) {
	var env envelope
	if err := d.expect('{'); err != nil {
		return env, err
	}
	first := true
	for {
		c, err := d.next()
		if err != nil {
			return env, err
		}
		if c == '}' && first {
			break
		}
		if !first {
			if c == '}' {
				break
			}
			if c != ',' {
				return env, d.unexpected(c, "',' or '}'")
			}
			if c, err = d.next(); err != nil {
				return env, err
			}
		}
		first = false
		if c != '"' {
			return env, d.unexpected(c, "a key")
		}
		key, err := d.str(nil)
		if err != nil {
			return env, err
		}
		if err := d.expect(':'); err != nil {
			return env, err
		}
		switch string(key) {
		case "status", "errorType", "error":
			c, err := d.next()
			if err != nil {
				return env, err
			}
			if c != '"' {
				if err := d.skip(c); err != nil {
					return env, err
				}
				continue
			}
			v, err := d.str(nil)
			if err != nil {
				return env, err
			}
			switch string(key) {
			case "status":
				env.status = string(v)
			case "errorType":
				env.errorType = string(v)
			default:
				env.errorMsg = string(v)
			}
		case "data":
			if err := d.data(); err != nil {
				return env, err
			}
			env.data = true
		default: // warnings, infos, anything new
			c, err := d.next()
			if err != nil {
				return env, err
			}
			if err := d.skip(c); err != nil {
				return env, err
			}
		}
	}
	// Nothing but white space may follow.
	for {
		c, err := d.r.ReadByte()
		if err == io.EOF {
			return env, nil
		}
		if err != nil {
			return env, err
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return env, d.unexpected(c, "the end")
	}
}

// data reads the array of series (or null).
func (d *seriesDecoder) data() error {
	c, err := d.next()
	if err != nil {
		return err
	}
	if c == 'n' {
		return d.literal("ull")
	}
	if c != '[' {
		return d.unexpected(c, "an array of series")
	}
	for i := 0; ; i++ {
		c, err := d.next()
		if err != nil {
			return err
		}
		if c == ']' && i == 0 {
			return nil
		}
		if i > 0 {
			if c == ']' {
				return nil
			}
			if c != ',' {
				return d.unexpected(c, "',' or ']'")
			}
			if c, err = d.next(); err != nil {
				return err
			}
		}
		if c != '{' {
			return d.unexpected(c, "a series")
		}
		if err := d.oneSeries(); err != nil {
			return err
		}
	}
}

// oneSeries reads one {"name":"value",...} after its '{' and visits it.
func (d *seriesDecoder) oneSeries() error {
	d.buf, d.offs = d.buf[:0], d.offs[:0]
	for i := 0; ; i++ {
		c, err := d.next()
		if err != nil {
			return err
		}
		if c == '}' && i == 0 {
			break
		}
		if i > 0 {
			if c == '}' {
				break
			}
			if c != ',' {
				return d.unexpected(c, "',' or '}'")
			}
			if c, err = d.next(); err != nil {
				return err
			}
		}
		if c != '"' {
			return d.unexpected(c, "a label name")
		}
		start := len(d.buf)
		if d.buf, err = d.str(d.buf); err != nil {
			return err
		}
		d.offs = append(d.offs, start, len(d.buf))
		if err := d.expect(':'); err != nil {
			return err
		}
		if err := d.expect('"'); err != nil {
			return err
		}
		start = len(d.buf)
		if d.buf, err = d.str(d.buf); err != nil {
			return err
		}
		d.offs = append(d.offs, start, len(d.buf))
	}
	d.pairs = d.pairs[:0]
	for i := 0; i < len(d.offs); i += 4 {
		d.pairs = append(d.pairs, labelPair{name: d.buf[d.offs[i]:d.offs[i+1]], value: d.buf[d.offs[i+2]:d.offs[i+3]]})
	}
	return d.visit(d.pairs)
}

// bound fails once buf holds more than maxBytes.
func (d *seriesDecoder) bound(buf []byte) error {
	if d.maxBytes > 0 && int64(len(buf)) > d.maxBytes {
		return &backend.LimitError{Limit: "max_response_bytes", What: "bytes", Max: d.maxBytes}
	}
	return nil
}

// next returns the next byte that is not white space.
func (d *seriesDecoder) next() (byte, error) {
	for {
		c, err := d.r.ReadByte()
		if err != nil {
			return 0, d.eof(err)
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c, nil
	}
}

func (d *seriesDecoder) expect(want byte) error {
	c, err := d.next()
	if err != nil {
		return err
	}
	if c != want {
		return d.unexpected(c, strconv.QuoteRune(rune(want)))
	}
	return nil
}

func (d *seriesDecoder) eof(err error) error {
	if err == io.EOF {
		return &syntaxError{"unexpected end of the answer"}
	}
	return err
}

func (d *seriesDecoder) unexpected(c byte, want string) error {
	return &syntaxError{fmt.Sprintf("found %q where %s was expected", c, want)}
}

func (d *seriesDecoder) literal(rest string) error {
	for i := range len(rest) {
		c, err := d.r.ReadByte()
		if err != nil {
			return d.eof(err)
		}
		if c != rest[i] {
			return d.unexpected(c, "a literal")
		}
	}
	return nil
}

// str appends the string whose opening quote was read to dst, unescaped.
func (d *seriesDecoder) str(dst []byte) ([]byte, error) {
	for {
		// Copy the plain run of what is buffered at once; a label value
		// seldom needs more than this one step.
		if buf, _ := d.r.Peek(d.r.Buffered()); len(buf) > 0 {
			i := 0
			for i < len(buf) && buf[i] != '"' && buf[i] != '\\' && buf[i] >= 0x20 {
				i++
			}
			dst = append(dst, buf[:i]...)
			_, _ = d.r.Discard(i)
			if err := d.bound(dst); err != nil {
				return dst, err
			}
			if i == len(buf) {
				continue
			}
		}
		c, err := d.r.ReadByte()
		if err != nil {
			return dst, d.eof(err)
		}
		switch {
		case c == '"':
			return dst, nil
		case c == '\\':
			if dst, err = d.escape(dst); err != nil {
				return dst, err
			}
		case c < 0x20:
			return dst, d.unexpected(c, "a string character")
		default:
			dst = append(dst, c)
		}
	}
}

func (d *seriesDecoder) escape(dst []byte) ([]byte, error) {
	c, err := d.r.ReadByte()
	if err != nil {
		return dst, d.eof(err)
	}
	switch c {
	case '"', '\\', '/':
		return append(dst, c), nil
	case 'b':
		return append(dst, '\b'), nil
	case 'f':
		return append(dst, '\f'), nil
	case 'n':
		return append(dst, '\n'), nil
	case 'r':
		return append(dst, '\r'), nil
	case 't':
		return append(dst, '\t'), nil
	case 'u':
		r, err := d.hex4()
		if err != nil {
			return dst, err
		}
		if utf16.IsSurrogate(r) {
			// A low surrogate must follow; otherwise, as encoding/json
			// does, the lone one becomes U+FFFD.
			if next, err := d.r.Peek(2); err == nil && next[0] == '\\' && next[1] == 'u' {
				_, _ = d.r.Discard(2)
				r2, err := d.hex4()
				if err != nil {
					return dst, err
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					return utf8.AppendRune(dst, dec), nil
				}
				dst = utf8.AppendRune(dst, utf8.RuneError)
				r = r2
				if utf16.IsSurrogate(r) {
					r = utf8.RuneError
				}
				return utf8.AppendRune(dst, r), nil
			}
			r = utf8.RuneError
		}
		return utf8.AppendRune(dst, r), nil
	}
	return dst, d.unexpected(c, "an escape")
}

func (d *seriesDecoder) hex4() (rune, error) {
	var r rune
	for range 4 {
		c, err := d.r.ReadByte()
		if err != nil {
			return 0, d.eof(err)
		}
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, d.unexpected(c, "a hex digit")
		}
	}
	return r, nil
}

// maxDepth bounds the nesting of values that are skipped, as
// encoding/json's does.
const maxDepth = 10000

// skip reads past the value that starts with c.
func (d *seriesDecoder) skip(c byte) error {
	switch c {
	case '"':
		_, err := d.str(d.buf[:0])
		return err
	case 't':
		return d.literal("rue")
	case 'f':
		return d.literal("alse")
	case 'n':
		return d.literal("ull")
	case '{', '[':
		d.depth++
		defer func() { d.depth-- }()
		if d.depth > maxDepth {
			return &syntaxError{"values nested too deep"}
		}
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		for i := 0; ; i++ {
			c, err := d.next()
			if err != nil {
				return err
			}
			if c == closing && i == 0 {
				return nil
			}
			if i > 0 {
				if c == closing {
					return nil
				}
				if c != ',' {
					return d.unexpected(c, "',' or the end of a value")
				}
				if c, err = d.next(); err != nil {
					return err
				}
			}
			if closing == '}' {
				if c != '"' {
					return d.unexpected(c, "a key")
				}
				if _, err := d.str(d.buf[:0]); err != nil {
					return err
				}
				if err := d.expect(':'); err != nil {
					return err
				}
				if c, err = d.next(); err != nil {
					return err
				}
			}
			if err := d.skip(c); err != nil {
				return err
			}
		}
	}
	if c == '-' || '0' <= c && c <= '9' {
		num := append(d.buf[:0], c)
		for {
			b, err := d.r.Peek(1)
			if err != nil || !strings.ContainsRune("+-.0123456789eE", rune(b[0])) {
				break
			}
			_, _ = d.r.ReadByte()
			num = append(num, b[0])
			if err := d.bound(num); err != nil {
				return err
			}
		}
		if !json.Valid(num) {
			return &syntaxError{fmt.Sprintf("%q is not a number", num)}
		}
		return nil
	}
	return d.unexpected(c, "a value")
}
