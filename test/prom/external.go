package prom

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// WithExternalLabels sets global.external_labels: the labels that identify
// this Prometheus to whatever reads it from outside, such as the replica
// label a Thanos sidecar announces and a querier deduplicates on. Series
// stored in the server do not carry them; the sidecar adds them.
func WithExternalLabels(labels map[string]string) Option {
	return func(o *options) {
		o.externalLabels = make(map[string]string, len(labels))
		for k, v := range labels {
			o.externalLabels[k] = v
		}
	}
}

// renderExternalLabels writes the external_labels block of the global
// section, names sorted, values quoted; nothing when there are none.
func renderExternalLabels(b *strings.Builder, labels map[string]string) {
	if len(labels) == 0 {
		return
	}
	names := make([]string, 0, len(labels))
	for n := range labels {
		names = append(names, n)
	}
	sort.Strings(names)
	b.WriteString("  external_labels:\n")
	for _, n := range names {
		fmt.Fprintf(b, "    %s: %s\n", n, strconv.Quote(labels[n]))
	}
}

// DataDir is the TSDB directory (--storage.tsdb.path), which a Thanos
// sidecar reads beside the server.
func (s *Server) DataDir() string { return filepath.Join(s.srv.WorkDir, "data") }
