package promapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestInstant(t *testing.T) {
	var got url.Values
	var gotTenant string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, gotTenant = r.URL.Query(), r.Header.Get("X-Scope-OrgID")
		switch r.URL.Path {
		case "/prometheus/api/v1/query":
			w.Write([]byte(`{"status":"success","warnings":["partial"],"data":{"resultType":"vector","result":[
				{"metric":{"pod":"web-1"},"value":[1700000000,"2"]},
				{"metric":{"pod":"web-0"},"value":[1700000000,"1.5"]}]}}`))
		case "/prometheus/api/v1/series":
			w.Write([]byte(`{"status":"success","data":[{"__name__":"up","pod":"web-1"},{"__name__":"up","pod":"web-0"}]}`))
		case "/scalar/api/v1/query":
			w.Write([]byte(`{"status":"success","data":{"resultType":"scalar","result":[1700000000,"1"]}}`))
		default:
			http.Error(w, "no org id\nmore", http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	at := time.UnixMilli(1700000000250)

	res, err := Instant(ctx, srv.Client(), Request{
		Base: srv.URL + "/prometheus/", Query: "up", Time: at,
		Params: url.Values{"dedup": {"false"}}, Header: http.Header{"X-Scope-OrgID": {"team-a"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Result{
		Samples:  []Sample{{Labels: map[string]string{"pod": "web-0"}, Value: 1.5}, {Labels: map[string]string{"pod": "web-1"}, Value: 2}},
		Warnings: []string{"partial"},
	}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	wantForm := url.Values{"query": {"up"}, "time": {"1700000000.250"}, "dedup": {"false"}}
	if diff := cmp.Diff(wantForm, got); diff != "" || gotTenant != "team-a" {
		t.Errorf("request form (-want +got):\n%s\ntenant header %q, want team-a", diff, gotTenant)
	}

	series, err := Series(ctx, srv.Client(), SeriesRequest{
		Base: srv.URL + "/prometheus", Match: []string{"up", `{pod="web-0"}`}, Start: at, End: at.Add(time.Minute),
		Header: http.Header{"X-Scope-OrgID": {"team-b"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]map[string]string{{"__name__": "up", "pod": "web-0"}, {"__name__": "up", "pod": "web-1"}}, series); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
	wantForm = url.Values{"match[]": {"up", `{pod="web-0"}`}, "start": {"1700000000.250"}, "end": {"1700000060.250"}}
	if diff := cmp.Diff(wantForm, got); diff != "" || gotTenant != "team-b" {
		t.Errorf("series request form (-want +got):\n%s\ntenant header %q, want team-b", diff, gotTenant)
	}

	_, err = Instant(ctx, srv.Client(), Request{Base: srv.URL, Query: "up"})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusUnauthorized || se.Body != "no org id" {
		t.Errorf("401 answer: got %v, want a StatusError with code 401 and the body's first line", err)
	}
	if _, err := Instant(ctx, srv.Client(), Request{Base: srv.URL + "/scalar", Query: "1"}); err == nil {
		t.Error("scalar answer: got no error, want one (only vectors are read)")
	}
}

func TestLabelString(t *testing.T) {
	if got, want := LabelString(map[string]string{"b": "2", "a": `x"y`}), `{a="x\"y", b="2"}`; got != want {
		t.Errorf("LabelString = %s, want %s", got, want)
	}
}
