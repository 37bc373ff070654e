package backend_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/collectors/backend"
)

// TestReadAnswer: an answer is read whole up to MaxResponseBytes; one that
// announces or turns out to be longer is a *backend.LimitError naming the
// flag, and is read no further than just past the limit.
func TestReadAnswer(t *testing.T) {
	const limit = 100
	cases := []struct {
		name    string
		size    int
		length  int64 // announced Content-Length; -1 for none
		wantErr bool
		maxRead int // most bytes read from the body
	}{
		{name: "empty", size: 0, length: -1},
		{name: "under the limit, unannounced", size: limit - 1, length: -1},
		{name: "at the limit, unannounced", size: limit, length: -1},
		{name: "at the limit, announced", size: limit, length: limit},
		{name: "over the limit, unannounced", size: 10 * limit, length: -1, wantErr: true, maxRead: limit + 1},
		{name: "over the limit, announced", size: 10 * limit, length: 10 * limit, wantErr: true, maxRead: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := &countingReader{r: strings.NewReader(strings.Repeat("x", tc.size))}
			resp := &http.Response{ContentLength: tc.length, Body: io.NopCloser(body)}
			got, err := backend.Limits{MaxResponseBytes: limit}.WithDefaults().ReadAnswer(nil, resp)
			if !tc.wantErr {
				if err != nil || len(got) != tc.size {
					t.Fatalf("ReadAnswer = %d bytes, %v; want %d bytes", len(got), err, tc.size)
				}
				return
			}
			var le *backend.LimitError
			if !errors.As(err, &le) {
				t.Fatalf("ReadAnswer error = %v, want a *backend.LimitError", err)
			}
			if diff := cmp.Diff(&backend.LimitError{Limit: "max_response_bytes", What: "bytes", Max: limit}, le); diff != "" {
				t.Errorf("limit error (-want +got):\n%s", diff)
			}
			if want := "the answer has more than 100 bytes (--backend-max-response-bytes)"; err.Error() != want {
				t.Errorf("message %q, want %q", err, want)
			}
			if body.n > tc.maxRead {
				t.Errorf("read %d bytes of the body, want at most %d", body.n, tc.maxRead)
			}
		})
	}
}

// TestLimitErrors: each limit's error names its flag; defaults fill in
// what is left at zero.
func TestLimitErrors(t *testing.T) {
	l := backend.Limits{MaxSamples: 3}.WithDefaults()
	if diff := cmp.Diff(backend.Limits{MaxResponseBytes: backend.DefaultMaxResponseBytes, MaxSamples: 3, MaxSeries: backend.DefaultMaxSeries}, l); diff != "" {
		t.Errorf("WithDefaults (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{name: "samples", err: l.TooManySamples(), want: "the answer has more than 3 samples (--backend-max-samples)"},
		{name: "series", err: l.TooManySeries("series"), want: "the answer has more than 100000 series (--backend-max-series)"},
		{name: "bytes", err: l.TooManyBytes(), want: "the answer has more than 67108864 bytes (--backend-max-response-bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err.Error() != tc.want {
				t.Errorf("message %q, want %q", tc.err, tc.want)
			}
		})
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
