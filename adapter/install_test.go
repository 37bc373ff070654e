package adapter

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestInstallPinnedToCustomMetricsAPIServer pins installMetricAPIs to the
// custom-metrics-apiserver code it repeats: the installers of both metric
// APIs (InstallCustomMetricsAPI, InstallExternalMetricsAPI, and the
// APIGroupInfo and APIGroupVersion they build). The installer, handlers and
// storage are called, not repeated: a change to their API fails the build.
// An upgrade of the library that changes
// any of them fails here, naming the file, so that install.go is compared
// with the new code before the upgrade lands; after that review, record the
// new hashes.
func TestInstallPinnedToCustomMetricsAPIServer(t *testing.T) {
	const module = "sigs.k8s.io/custom-metrics-apiserver"
	pinned := map[string]string{
		"pkg/apiserver/cmapis.go":    "abee5796bd1dfe8d6cc3c4379d163dd3134fa32476d6a70b91c52c67863cdbe6",
		"pkg/apiserver/emapis.go":    "9a04ca71feee8a015819cd42dd28e3c67c43372b18f5bc4f65e7f85307cbed8c",
		"pkg/apiserver/apiserver.go": "6ec5e5decf86cd9410072f702df72d9a6c80cf9658d670d5a38963340ef76b99",
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		if gobin, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go command to locate %s: %v", module, err)
		}
	}
	out, err := exec.Command(gobin, "list", "-m", "-f", "{{.Version}} {{.Dir}}", module).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", module, err)
	}
	version, dir, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if dir == "" {
		t.Fatalf("%s %s is not in the module cache (go mod download)", module, version)
	}
	for file, want := range pinned {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Errorf("%s %s: %v: install.go repeats code that is gone; review it against the new version", module, version, err)
			continue
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s %s: %s changed (sha256 %s): install.go repeats its installer wiring; compare them, then record the new hash here", module, version, file, got)
		}
	}
}
