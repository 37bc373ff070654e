package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// The pods scenario asks for the same list as one of these clients does.
// Each runs its own block of requests, so that Gantry's CPU (read from
// /proc around the block) belongs to one kind of request.
const (
	// clientHPA is k8s.io/metrics' custom metrics client configured as
	// kube-controller-manager configures the client its HPA controller
	// gets: protobuf (--kube-api-content-type's default; the Accept
	// header is "application/vnd.kubernetes.protobuf, */*"), compression
	// disabled (kube-controller-manager sets DisableCompression), HTTP/2
	// to the kube-apiserver.
	clientHPA = "hpa"
	// clientJSON is a plain GET for JSON through client-go's transport
	// with gzip accepted, as Go's transport asks by default: the path of
	// the figures the README gave before issue 13 (kubectl and most
	// dashboards read JSON).
	clientJSON = "json"
	// clientJSONIdentity is clientJSON without gzip, to show its cost.
	clientJSONIdentity = "json-nogzip"
)

var podsClients = []string{clientHPA, clientJSON, clientJSONIdentity}

// wire is what one kind of client sent and got back, as seen on its own
// connection to the kube-apiserver (the aggregator's hop to Gantry is
// HTTP/2 in every case: its proxy transport is client-go's, and it passes
// Accept and Accept-Encoding on, so Gantry encodes and compresses what the
// client asked for). AcceptEncoding is as set above Go's transport, which
// adds gzip itself unless compression is disabled (the hpa client disables
// it; the json clients set the header themselves).
type wire struct {
	Proto           string  `json:"proto"`
	Accept          string  `json:"accept"`
	AcceptEncoding  string  `json:"accept_encoding,omitempty"`
	ContentType     string  `json:"content_type"`
	ContentEncoding string  `json:"content_encoding,omitempty"`
	BytesPerAnswer  float64 `json:"bytes_per_answer"` // as received, before decompression
}

// observer records the wire of the requests its transports carry.
type observer struct {
	mu    sync.Mutex
	last  wire
	bytes int64
	n     int64
}

// wrap is for rest.Config.Wrap.
func (o *observer) wrap(rt http.RoundTripper) http.RoundTripper { return observed{rt: rt, o: o} }

type observed struct {
	rt http.RoundTripper
	o  *observer
}

func (t observed) RoundTrip(req *http.Request) (*http.Response, error) {
	o := t.o
	resp, err := t.rt.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	o.mu.Lock()
	o.last = wire{
		Proto:           resp.Proto,
		Accept:          req.Header.Get("Accept"),
		AcceptEncoding:  req.Header.Get("Accept-Encoding"),
		ContentType:     resp.Header.Get("Content-Type"),
		ContentEncoding: resp.Header.Get("Content-Encoding"),
	}
	o.n++
	o.mu.Unlock()
	resp.Body = &countingBody{ReadCloser: resp.Body, o: o}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	o *observer
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.o.mu.Lock()
	c.o.bytes += int64(n)
	c.o.mu.Unlock()
	return n, err
}

// reset forgets the counts, so that a block's bytes are its own.
func (o *observer) reset() {
	o.mu.Lock()
	o.bytes, o.n = 0, 0
	o.mu.Unlock()
}

func (o *observer) wire() *wire {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := o.last
	if o.n > 0 {
		w.BytesPerAnswer = round(float64(o.bytes)/float64(o.n), 0)
	}
	return &w
}

// podsClient asks for the pods scenario's list of one namespace and label.
type podsClient struct {
	name string
	obs  *observer
	// list returns how many items the answer had.
	list func(ctx context.Context) (int, error)
}

func (b *bench) podsClient(name, ns, app string) (*podsClient, error) {
	obs := &observer{}
	switch name {
	case clientHPA:
		client, err := b.metricsClient(0, obs.wrap)
		if err != nil {
			return nil, err
		}
		sel := labels.SelectorFromSet(labels.Set{"app": app})
		return &podsClient{name: name, obs: obs, list: func(ctx context.Context) (int, error) {
			// The client takes no context; the scenario's requests are
			// short, and the run's timeout bounds the whole.
			list, err := client.NamespacedMetrics(ns).GetForObjects(schema.GroupKind{Kind: "Pod"}, sel, metric, labels.Everything())
			if err != nil {
				return 0, err
			}
			return len(list.Items), nil
		}}, nil
	case clientJSON, clientJSONIdentity:
		cfg := b.st.Cluster.RESTConfig()
		cfg.Wrap(obs.wrap)
		hc, err := rest.HTTPClientFor(cfg)
		if err != nil {
			return nil, err
		}
		u := b.customURL(ns, app)
		gz := name == clientJSON
		return &podsClient{name: name, obs: obs, list: func(ctx context.Context) (int, error) {
			return getJSONList(ctx, hc, u, gz)
		}}, nil
	}
	return nil, fmt.Errorf("no pods client %q (want one of %s)", name, strings.Join(podsClients, ", "))
}

// getJSONList GETs a list as JSON and counts its items. With gz it asks for
// gzip itself and decompresses, so that the observer sees the compressed
// answer (Go's transport would hide it); without, it asks for the identity
// encoding, which Go's transport then leaves alone.
func getJSONList(ctx context.Context, hc *http.Client, u string, gz bool) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	} else {
		req.Header.Set("Accept-Encoding", "identity")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		if body, err = io.ReadAll(zr); err != nil {
			return 0, err
		}
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, firstLine(string(body)))
	}
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return 0, err
	}
	return len(list.Items), nil
}
