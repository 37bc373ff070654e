package filters

import (
	"bytes"
	"flag"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/klog/v2"
)

const reviewToken = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"

func TestLogFilterRedacts(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{
			name: "TokenReview request body",
			in:   `{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","metadata":{},"spec":{"token":"` + reviewToken + `"},"status":{"user":{}}}`,
			want: `{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","metadata":{},"spec":{"token":"<masked>"},"status":{"user":{}}}`,
		},
		{
			name: "body truncated inside the token",
			in:   `{"kind":"TokenReview","spec":{"token":"` + reviewToken[:40] + ` [truncated 976 chars]`,
			want: `{"kind":"TokenReview","spec":{"token":"<masked>`,
		},
		{
			name: "spaces around the colon, two tokens",
			in:   `{"token" : "a", "other": 1, "token":"b"}`,
			want: `{"token" : "<masked>", "other": 1, "token":"<masked>"}`,
		},
		{
			name: "empty token",
			in:   `{"token":""}`,
			want: `{"token":"<masked>"}`,
		},
		{
			name: "nothing to redact",
			in:   `{"kind":"SubjectAccessReview","spec":{"user":"token"}}`,
			want: `{"kind":"SubjectAccessReview","spec":{"user":"token"}}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, redact(tc.in)); diff != "" {
				t.Errorf("redact (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLogFilterKeepsCallersSlice(t *testing.T) {
	body := `{"spec":{"token":"` + reviewToken + `"}}`
	kv := []any{"body", body, "bytes", []byte(body), "n", 3}
	msg, got := LogFilter{}.FilterS("Request Body", kv)
	if msg != "Request Body" {
		t.Errorf("message %q changed", msg)
	}
	want := []any{"body", `{"spec":{"token":"<masked>"}}`, "bytes", `{"spec":{"token":"<masked>"}}`, "n", 3}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FilterS (-want +got):\n%s", diff)
	}
	if kv[1] != body {
		t.Errorf("the caller's slice was changed: %v", kv[1])
	}
	same := []any{"a", "b"}
	if _, out := (LogFilter{}).FilterS("m", same); &out[0] != &same[0] {
		t.Error("a slice with nothing to redact was copied")
	}
	if out := (LogFilter{}).Filter(nil); out != nil {
		t.Errorf("Filter(nil) = %v", out)
	}
}

// TestLogFilterWithKlog logs a body the way client-go does at -v=8, through
// klog's contextual logger, with the filter installed.
func TestLogFilterWithKlog(t *testing.T) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	if err := fs.Parse([]string{"-v=10", "-logtostderr=false", "-alsologtostderr=false", "-stderrthreshold=FATAL"}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	klog.SetOutput(&buf)
	klog.SetLogFilter(LogFilter{})
	t.Cleanup(func() {
		klog.SetLogFilter(nil)
		_ = fs.Parse([]string{"-v=0", "-logtostderr=true"})
	})
	body := `{"kind":"TokenReview","spec":{"token":"` + reviewToken + `"}}`
	klog.Background().V(8).Info("Request Body", "body", body)
	klog.V(8).Infof("body %s", body)
	klog.Flush()
	out := buf.String()
	if strings.Contains(out, reviewToken) || strings.Count(out, masked) != 2 {
		t.Errorf("log:\n%s", out)
	}
}
