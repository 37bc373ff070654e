package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/gantry-dev/gantry/deploy/image"
	"github.com/gantry-dev/gantry/test/stack"
	"github.com/gantry-dev/gantry/test/toolbin"
)

// TestImage runs Gantry from its container image, not from bin/gantry:
// the image is built as `make image` builds it (for this machine's
// platform), loaded into podman, and run in the local stack on the host
// network with the securityContext deploy/manifests/deployment.yaml ships
// translated to podman flags (uid/gid 65532, read-only root, every
// capability dropped, no privilege escalation, the serving-cert directory
// the only writable mount, the files Gantry reads mounted read-only). The
// kube-apiserver reaches it through the APIServices, and an HPA scales on
// a metric the container serves.
func TestImage(t *testing.T) {
	bin := toolbin.Require(t, "podman", "prometheus", "etcd", "kube-apiserver", "kube-controller-manager", "kwok")
	podman := filepath.Join(bin, "podman")
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	version := "v0.0.0-e2e-" + strconv.Itoa(os.Getpid())
	meta, err := image.GitMeta(ctx, root, version)
	if err != nil {
		t.Fatal(err)
	}
	var plat v1.Platform
	for _, p := range image.Platforms {
		if p.OS == runtime.GOOS && p.Architecture == runtime.GOARCH {
			plat = p
		}
	}
	if plat.OS == "" {
		t.Fatalf("no image platform for %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	begin := time.Now()
	res, err := image.Build(ctx, image.Options{Root: root, Out: t.TempDir(), Meta: meta, CABundle: ca, Platforms: []v1.Platform{plat}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	tag := image.Tag(version)
	t.Logf("image %s (index %s) built in %s", tag, res.Digest, time.Since(begin).Round(100*time.Millisecond))
	out := run(t, podman, "load", "-i", res.Tarballs[plat.OS+"/"+plat.Architecture])
	t.Logf("podman load: %s", strings.TrimSpace(out))
	t.Cleanup(func() {
		if out, err := exec.Command(podman, "rmi", "-f", tag).CombinedOutput(); err != nil {
			t.Errorf("podman rmi %s: %v\n%s", tag, err, out)
		}
	})
	if got := strings.TrimSpace(run(t, podman, "run", "--rm", "--network=none", tag, "--version")); got != "gantry "+version {
		t.Fatalf("podman run %s --version: %q, want %q", tag, got, "gantry "+version)
	}

	// Registered before the stack starts, so it runs after the stack
	// stopped the container: whatever happened, no container is left.
	name := "gantry-e2e-" + strconv.Itoa(os.Getpid())
	t.Cleanup(func() {
		if out, err := exec.Command(podman, "rm", "-f", "--ignore", name).CombinedOutput(); err != nil {
			t.Errorf("podman rm -f %s: %v\n%s", name, err, out)
		}
	})
	// What the pod's volumes are: the ConfigMap and credentials read-only
	// (copies readable by 65532, as the kubelet projects them), and the
	// serving-cert emptyDir writable.
	mounts := t.TempDir()
	ro, certDir := filepath.Join(mounts, "etc-gantry"), filepath.Join(mounts, "serving-cert")
	for _, d := range []string{ro, certDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(certDir, 0o777); err != nil { // as an emptyDir
		t.Fatal(err)
	}
	launch := func(replica int, args []string) ([]string, error) {
		if replica != 0 {
			return nil, fmt.Errorf("one replica only")
		}
		var gantryArgs []string
		for _, a := range args {
			flag, val, ok := strings.Cut(a, "=")
			switch flag {
			case "--tls-cert-file", "--tls-private-key-file", "--config",
				"--lister-kubeconfig", "--authentication-kubeconfig", "--authorization-kubeconfig":
			default:
				gantryArgs = append(gantryArgs, a)
				continue
			}
			if !ok {
				return nil, fmt.Errorf("%s without =", flag)
			}
			data, err := os.ReadFile(val)
			if err != nil {
				return nil, err
			}
			base := strings.TrimPrefix(flag, "--")
			if err := os.WriteFile(filepath.Join(ro, base), data, 0o444); err != nil {
				return nil, err
			}
			gantryArgs = append(gantryArgs, flag+"=/etc/gantry/"+base)
		}
		argv := []string{podman, "run", "--rm", "--name", name,
			"--network=host",
			"--user", "65532:65532",
			"--read-only",
			"--cap-drop=ALL",
			"--security-opt", "no-new-privileges",
			"--mount", "type=bind,source=" + ro + ",destination=/etc/gantry,ro=true",
			"--mount", "type=bind,source=" + certDir + ",destination=/var/run/serving-cert",
			tag,
		}
		// deployment.yaml's --cert-dir: unused while the stack's serving
		// certificate is given, as with the cert-manager component.
		return append(append(argv, gantryArgs...), "--cert-dir=/var/run/serving-cert"), nil
	}
	e := startEnv(t, stack.Options{BinDir: bin, GantryCommand: launch}, true)

	// The process serving the APIs is the container's, confined as
	// deployed: the kernel's view of it (/proc/<pid>/status on the host).
	state := strings.Fields(run(t, podman, "inspect", name, "--format",
		"{{.State.Running}} {{.State.Pid}} {{.HostConfig.ReadonlyRootfs}} {{.ImageName}}"))
	t.Logf("container %s: running, pid, read-only root, image: %v", name, state)
	if len(state) != 4 || state[0] != "true" || state[2] != "true" || state[3] != tag {
		t.Fatalf("podman inspect %s: %v, want running, a read-only root and %s", name, state, tag)
	}
	status, err := os.ReadFile("/proc/" + state[1] + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range [][]string{
		{"Name:", "gantry"},
		{"Uid:", "65532", "65532", "65532", "65532"},
		{"Gid:", "65532", "65532", "65532", "65532"},
		{"CapPrm:", "0000000000000000"},
		{"CapEff:", "0000000000000000"},
		{"CapBnd:", "0000000000000000"},
		{"NoNewPrivs:", "1"},
	} {
		if !containsLine(string(status), want...) {
			t.Errorf("/proc/%s/status has no line %q:\n%s", state[1], want, status)
		}
	}

	perPod := newValue(30)
	stop := e.rpsApp(t, "image-rps", 1, 1, 3, perPod.get)
	defer stop()
	e.waitReplicas(ctx, t, "image-rps", 3, "30 req/s per pod against a target of 10, served by the container")
	perPod.set(2)
	e.waitReplicas(ctx, t, "image-rps", 1, "2 req/s per pod against a target of 10, served by the container")
}
