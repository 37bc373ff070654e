package prom_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/gantry-dev/gantry/test/internal/proc"
	"github.com/gantry-dev/gantry/test/prom"
)

// TestExternalLabels checks that WithExternalLabels reaches the running
// configuration (what a Thanos sidecar reads), quoting included, and that
// DataDir is where Prometheus keeps its TSDB.
func TestExternalLabels(t *testing.T) {
	want := map[string]string{"replica": "a", "cluster": `eu "1": west`}
	s := prom.Start(t, prom.WithExternalLabels(want))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	body, err := proc.GetOK(ctx, http.DefaultClient, s.URL()+"/api/v1/status/config", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		Data struct {
			YAML string `json:"yaml"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Global struct {
			ExternalLabels map[string]string `yaml:"external_labels"`
		} `yaml:"global"`
	}
	if err := yaml.Unmarshal([]byte(answer.Data.YAML), &cfg); err != nil {
		t.Fatalf("parsing the running config: %v\n%s", err, answer.Data.YAML)
	}
	if diff := cmp.Diff(want, cfg.Global.ExternalLabels); diff != "" {
		t.Errorf("external labels in the running config (-want +got):\n%s", diff)
	}

	if fi, err := os.Stat(filepath.Join(s.DataDir(), "wal")); err != nil || !fi.IsDir() {
		t.Errorf("DataDir %s: stat of its wal: %v, want the TSDB's wal directory", s.DataDir(), err)
	}
}
