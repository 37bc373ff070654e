// Package dashboards defines Gantry's Grafana dashboards in Go, with the
// Grafana Foundation SDK, and renders them to the JSON files committed beside
// this file:
//
//	gantry-overview.json     Gantry itself: API requests, backend queries, discovery, namespaced rules, process
//	gantry-autoscaling.json  HPAs and VPAs (kube-state-metrics)
//	gantry-workloads.json    CPU and memory per pod and container (cAdvisor / kubelet)
//
// It is a shipped artefact, like deploy/: nothing in the gantry binary imports
// it. The same files are copied into the kustomize component
// deploy/manifests/components/grafana-dashboards, which turns them into
// ConfigMaps for Grafana's dashboard sidecar. Regenerate both with
//
//	go generate ./dashboards
//
// Lint (lint.go) holds them to the rules that keep them usable on any
// cluster: one data source variable, $__rate_interval, scope matchers,
// units, titles, unique panel ids, read-only; All refuses to render a
// dashboard that breaks one. The tests check that the committed files are
// what this package renders, that they pass the SDK's strict schema and
// Lint, and that every query parses and returns data from a real
// Prometheus.
package dashboards

//go:generate go run ./gen -out . -component ../deploy/manifests/components/grafana-dashboards

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// Tag marks every Gantry dashboard; the dashboards link to each other by it.
const Tag = "gantry"

// File is one rendered dashboard.
type File struct {
	// Name is the file name, <uid>.json.
	Name string
	// UID is the dashboard's uid, stable across versions so that links and
	// bookmarks survive an update.
	UID   string
	Title string
	// JSON is the dashboard as Grafana imports it, indented, with a final
	// newline.
	JSON []byte
}

// definitions lists the dashboards in the order the generator writes them.
var definitions = []func() *dashboard.DashboardBuilder{
	overview,
	autoscaling,
	workloads,
}

// All builds and renders every dashboard.
func All() ([]File, error) {
	var out []File
	for _, def := range definitions {
		d, err := def().Build()
		if err != nil {
			return nil, fmt.Errorf("building dashboard: %w", err)
		}
		title := deref(d.Title)
		numberPanels(&d)
		// The SDK puts links in the controls menu (a Grafana 12 option);
		// without a placement every Grafana shows them in the header.
		for i := range d.Links {
			d.Links[i].Placement = nil
		}
		// A dashboard that breaks a rule is not written: the generator
		// says why instead.
		if fs := Lint(d); len(fs) > 0 {
			errs := make([]error, len(fs))
			for i, f := range fs {
				errs[i] = errors.New(f.String())
			}
			return nil, errors.Join(errs...)
		}
		b, err := Render(d)
		if err != nil {
			return nil, fmt.Errorf("dashboard %q: %w", title, err)
		}
		uid := deref(d.Uid)
		out = append(out, File{Name: uid + ".json", UID: uid, Title: title, JSON: b})
	}
	return out, nil
}

// Render encodes a dashboard the way the committed files are written.
func Render(d dashboard.Dashboard) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// PromQL is full of < > &; keep it readable in the files.
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// numberPanels gives every panel and row a stable id in layout order. The
// SDK leaves ids unset and Grafana would assign them on load, but panel
// links (viewPanel=<id>) need them fixed.
func numberPanels(d *dashboard.Dashboard) {
	var id uint32
	next := func() *uint32 { id++; v := id; return &v }
	for _, p := range d.Panels {
		switch {
		case p.Panel != nil:
			p.Panel.Id = next()
		case p.RowPanel != nil:
			p.RowPanel.Id = *next()
			for i := range p.RowPanel.Panels {
				p.RowPanel.Panels[i].Id = next()
			}
		}
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
