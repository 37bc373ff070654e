package prometheus_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"

	"github.com/gantry-dev/gantry/collectors/backend"
	promcollector "github.com/gantry-dev/gantry/collectors/prometheus"
)

// FuzzResponse answers queries and series listings with arbitrary status
// codes and bodies, as a broken Prometheus or a proxy in front of it might.
// Decoding must not panic; a call either succeeds — and then every sample is
// finite — or fails with a *backend.Error whose reason is one of the
// documented ones, whose message starts with the backend and the reason, is
// one line of bounded length, and carries nothing of the body but the API's
// own error message: never the backend's address or the bearer token (a body
// holding "@ADDR@" or "@TOKEN@" gets them substituted, as a proxy's error
// page echoing the request would).
//
//	go test ./collectors/prometheus -run '^$' -fuzz FuzzResponse -fuzztime 60s
func FuzzResponse(f *testing.F) {
	for _, seed := range []struct {
		status int
		body   string
	}{
		{200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"a"},"value":[1700000000,"1"]}]}}`},
		{200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.5,"NaN"]},{"metric":{"a":"b"},"value":[1,"+Inf"]},{"metric":{"a":"c"},"value":[1,"1e308"]}]}}`},
		{200, `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"42"]}}`},
		{200, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}`},
		{200, `{"status":"success","data":{"resultType":"string","result":[1,"x"]}}`},
		{200, `{"status":"success","data":{"resultType":"vector","result":null}}`},
		{200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":null,"value":null}]}}`},
		{200, `{"status":"success","data":{"resultType":"vector","result":[{"histogram":[1,{"count":"1","sum":"1","buckets":[[0,"0","1","1"]]}]}]}}`},
		{200, `{"status":"success","data":null}`},
		{200, `{"status":"success"}`},
		{200, `{"status":"success","data":[{"__name__":"up","job":"x"}],"warnings":["w"],"infos":["i"]}`},
		{200, `{"status":"error","errorType":"bad_data","error":"1:5: parse error"}`},
		{200, `<html>login page</html>`},
		{200, ``},
		{204, ``},
		{301, `moved`},
		{400, `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"}`},
		{422, `{"status":"error","errorType":"execution","error":"query processing would load too many samples into memory"}`},
		{400, `{"status":"error","errorType":"bad_data","error":"1:1: parse error\nat line two ` + strings.Repeat("x", 600) + `"}`},
		{503, `{"status":"error","errorType":"timeout","error":"` + strings.Repeat("slow ", 200) + `"}`},
		{500, `{"status":"error","errorType":"` + strings.Repeat(`internal\n`, 100) + `","error":"x"}`},
		{422, `{"status":"success","data":{}}`},
		{503, `{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}`},
		{499, `{"status":"error","errorType":"canceled","error":"context canceled"}`},
		{500, `{"status":"error","errorType":"internal","error":"unexpected error\nsecond line"}`},
		{502, `<html>Bad gateway for http://@ADDR@/api/v1/query with Bearer @TOKEN@</html>`},
		{403, `forbidden: Bearer @TOKEN@`},
		{404, `{"status":"error","errorType":"not_found","error":""}`},
	} {
		f.Add(uint16(seed.status), []byte(seed.body), false)
		f.Add(uint16(seed.status), []byte(seed.body), true)
	}

	const token = "fuzz-secret-token-Q7"
	var mu sync.Mutex
	var status int
	var body []byte
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		code, b := status, body
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write(b)
	}))
	f.Cleanup(api.Close)
	addr := strings.TrimPrefix(api.URL, "http://")
	tokenFile := filepath.Join(f.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		f.Fatal(err)
	}
	httpCfg, _, err := backend.HTTPFlags{TokenFile: tokenFile}.HTTPConfig()
	if err != nil {
		f.Fatal(err)
	}
	client, err := promcollector.New(promcollector.Options{URL: api.URL, HTTP: httpCfg, Timeout: 10 * time.Second}, promclient.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	reasons := map[string]bool{"timeout": true, "unreachable": true, "bad_query": true, "backend_error": true, "bad_response": true, "redirected": true, "too_large": true}

	f.Fuzz(func(t *testing.T, code uint16, raw []byte, series bool) {
		if len(raw) > 1<<20 {
			t.Skip()
		}
		// 1xx are not final answers; 2xx-5xx are what a server or proxy says.
		c := int(code)
		if c < 200 || c > 599 {
			c = 200 + c%400
		}
		b := strings.NewReplacer("@ADDR@", addr, "@TOKEN@", token).Replace(string(raw))
		mu.Lock()
		status, body = c, []byte(b)
		mu.Unlock()

		ctx := context.Background()
		var err error
		if series {
			_, err = client.Series(ctx, []string{`{__name__="up"}`}, time.Unix(1700000000, 0), time.Unix(1700000060, 0))
		} else {
			var vec []float64
			v, qerr := client.Query(ctx, `sum(up)`, time.Unix(1700000000, 0))
			for _, s := range v {
				vec = append(vec, float64(s.Value))
			}
			for _, x := range vec {
				if math.IsNaN(x) || math.IsInf(x, 0) {
					t.Errorf("status %d: query returned a non-finite sample %v", c, x)
				}
			}
			err = qerr
		}
		if err == nil {
			return
		}
		var be *backend.Error
		if !errors.As(err, &be) {
			t.Fatalf("status %d: error %v (%T), want a *backend.Error", c, err, err)
		}
		msg := err.Error()
		if !reasons[be.Reason] || !strings.HasPrefix(msg, "prometheus: "+be.Reason+": ") {
			t.Errorf("status %d: reason %q, message %q", c, be.Reason, msg)
		}
		if strings.Contains(msg, "\n") || len(msg) > 512 {
			t.Errorf("status %d: message of %d bytes over more than one line: %.200q", c, len(msg), msg)
		}
		// The API's error message is Prometheus' word on the query and is
		// passed on; nothing else of the body may be.
		var apiBody struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal([]byte(b), &apiBody)
		for _, secret := range []string{addr, token} {
			if strings.Contains(msg, secret) && !strings.Contains(apiBody.Error, secret) {
				t.Errorf("status %d: message %q carries %q", c, msg, secret)
			}
		}
	})
}
