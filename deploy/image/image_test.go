package image

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

var testMeta = Meta{
	Version:  "v0.0.0-test",
	Revision: "0123456789abcdef0123456789abcdef01234567",
	Created:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	Licenses: Licenses,
}

// entry is one tar entry as the test compares it.
type entry struct {
	Name       string
	Type       byte
	Mode       int64
	UID, GID   int
	ModTime    time.Time
	Size       int64
	Uname      string
	Gname      string
	Executable bool
}

// entries lists every layer's tar entries, in layer order.
func entries(t *testing.T, img v1.Image) ([]entry, map[string][]byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []entry
	data := map[string][]byte{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			data[h.Name] = b
			out = append(out, entry{Name: h.Name, Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid, ModTime: h.ModTime, Size: h.Size, Uname: h.Uname, Gname: h.Gname})
		}
		rc.Close()
	}
	return out, data
}

// CheckContents fails t unless img holds exactly Gantry's files: no shell,
// nothing but the base files and the binary, readable by 65532, with the
// config deploy/ relies on. TestImageContents runs it on a fake binary,
// TestBuiltImage on the real build.
func CheckContents(t *testing.T, img v1.Image, m Meta) {
	t.Helper()
	got, data := entries(t, img)
	mt := m.Created.UTC().Truncate(time.Second)
	want := []entry{
		{Name: "etc/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "etc/group", Type: tar.TypeReg, Mode: 0o644},
		{Name: "etc/passwd", Type: tar.TypeReg, Mode: 0o644},
		{Name: "etc/ssl/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "etc/ssl/certs/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "etc/ssl/certs/ca-certificates.crt", Type: tar.TypeReg, Mode: 0o644},
		{Name: "home/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "home/nonroot/", Type: tar.TypeDir, Mode: 0o700, UID: 65532, GID: 65532},
		{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
		{Name: "gantry", Type: tar.TypeReg, Mode: 0o755},
	}
	for i := range want {
		want[i].ModTime = mt
		if i < len(got) {
			want[i].Size = got[i].Size // sizes checked below
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layer entries (-want +got):\n%s", diff)
	}
	for name := range data {
		if base := filepath.Base(name); base == "sh" || base == "bash" || base == "busybox" {
			t.Errorf("image holds a shell: %s", name)
		}
	}
	if !strings.Contains(string(data["etc/passwd"]), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd has no nonroot 65532: %q", data["etc/passwd"])
	}
	if !strings.Contains(string(data["etc/group"]), "nonroot:x:65532:") {
		t.Errorf("/etc/group has no nonroot 65532: %q", data["etc/group"])
	}
	if ca := data["etc/ssl/certs/ca-certificates.crt"]; !strings.Contains(string(ca), "-----BEGIN CERTIFICATE-----") {
		t.Errorf("CA bundle holds no certificate (%d bytes)", len(ca))
	}
	if len(data["gantry"]) == 0 {
		t.Error("/gantry is empty")
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", cf.Config.User)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/gantry"}) || len(cf.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q, want [/gantry] and none", cf.Config.Entrypoint, cf.Config.Cmd)
	}
	if _, ok := cf.Config.ExposedPorts["6443/tcp"]; !ok || len(cf.Config.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v, want 6443/tcp", cf.Config.ExposedPorts)
	}
	if !cf.Created.Time.Equal(mt) {
		t.Errorf("created %s, want the commit time %s", cf.Created.Time, mt)
	}
	man, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"source", "version", "revision", "licenses", "created"} {
		k = "org.opencontainers.image." + k
		if man.Annotations[k] == "" || man.Annotations[k] != cf.Config.Labels[k] {
			t.Errorf("annotation %s = %q, label %q", k, man.Annotations[k], cf.Config.Labels[k])
		}
	}
}

func fakeImage(t *testing.T, p v1.Platform, bin string) v1.Image {
	t.Helper()
	img, err := Image(p, []byte(bin), []byte("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n"), testMeta)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestImageContents(t *testing.T) {
	for _, p := range Platforms {
		img := fakeImage(t, p, "#!fake gantry "+p.Architecture)
		CheckContents(t, img, testMeta)
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != p.OS || cf.Architecture != p.Architecture || cf.Variant != p.Variant {
			t.Errorf("config platform %s/%s/%s, want %s", cf.OS, cf.Architecture, cf.Variant, p)
		}
	}
}

// TestDeterministic: the same inputs give the same index digest, built
// twice from scratch; a different binary gives another one.
func TestDeterministic(t *testing.T) {
	digest := func(bin string) v1.Hash {
		var imgs []v1.Image
		for _, p := range Platforms {
			imgs = append(imgs, fakeImage(t, p, bin+p.Architecture))
		}
		idx, err := Index(imgs, Platforms, testMeta)
		if err != nil {
			t.Fatal(err)
		}
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	a, b, c := digest("one"), digest("one"), digest("two")
	if a != b {
		t.Errorf("two builds of the same input: %s and %s", a, b)
	}
	if a == c {
		t.Errorf("different binaries, same digest %s", a)
	}
}

func TestLayerRefusesDuplicates(t *testing.T) {
	if _, err := Layer([]File{{Path: "/a", Data: []byte("x")}, {Path: "/a", Data: []byte("y")}}, testMeta.Created); err == nil {
		t.Error("a layer with /a twice was built")
	}
}

// TestDockerfile: the Dockerfile, for people who build with Docker, and
// this package agree on the user, the entrypoint (and where the binary is)
// and the exposed port.
func TestDockerfile(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var user, expose, copyDst string
	var entrypoint []string
	final := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			// Only the last stage is the image.
			final = !strings.Contains(strings.ToLower(rest), " as ")
			user, expose, copyDst, entrypoint = "", "", "", nil
		case "USER":
			user = rest
		case "EXPOSE":
			expose = rest
		case "COPY":
			fields := strings.Fields(rest)
			copyDst = fields[len(fields)-1]
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT %s: not the exec (JSON) form: %v", rest, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !final {
		t.Fatal("Dockerfile: no final stage")
	}
	cfg := Config(testMeta)
	if user != cfg.User {
		t.Errorf("Dockerfile USER %q, image %q", user, cfg.User)
	}
	if !slices.Equal(entrypoint, cfg.Entrypoint) {
		t.Errorf("Dockerfile ENTRYPOINT %q, image %q", entrypoint, cfg.Entrypoint)
	}
	if copyDst != Binary {
		t.Errorf("Dockerfile copies the binary to %q, image has it at %q", copyDst, Binary)
	}
	port := expose
	if !strings.Contains(port, "/") {
		port += "/tcp"
	}
	if _, ok := cfg.ExposedPorts[port]; !ok || len(cfg.ExposedPorts) != 1 {
		t.Errorf("Dockerfile EXPOSE %q, image %v", expose, cfg.ExposedPorts)
	}
}

// TestBuiltImage builds the real image as `make image` does (only the
// compiles are cached the second time), twice into two directories: the
// index digests and SBOMs must be equal. It builds the host's platform
// only: a cold cross-compile of the other costs `make test` minutes for
// what TestImageContents and TestDeterministic already check of every
// platform; `make image` builds them all. Each platform's image must hold
// exactly what CheckContents says, the host's binary must run --version
// and print the stamped version, and the SBOM must list the modules
// linked into the binary.
func TestBuiltImage(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles gantry for two platforms (skipped by -short; `make test` runs it)")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Skipf("no CA bundle on this machine: %v", err)
	}
	ctx := t.Context()
	meta, err := GitMeta(ctx, root, "v0.0.0-imagetest")
	if err != nil {
		t.Fatal(err)
	}
	build := func() *Result {
		res, err := Build(ctx, Options{Root: root, Out: t.TempDir(), Meta: meta, CABundle: ca, Logf: t.Logf, Platforms: hostPlatforms()})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	a, b := build(), build()
	if a.Digest != b.Digest {
		t.Errorf("two builds of one tree: index %s and %s", a.Digest, b.Digest)
	}
	t.Logf("index %s (both builds)", a.Digest)
	for k, p := range a.SBOMs {
		x, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(b.SBOMs[k])
		if err != nil {
			t.Fatal(err)
		}
		if string(x) != string(y) {
			t.Errorf("%s SBOMs of two builds differ", k)
		}
		var bom struct {
			BOMFormat  string
			Components []struct{ Name, Version, Purl string }
		}
		if err := json.Unmarshal(x, &bom); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range bom.Components {
			names = append(names, c.Name+"@"+c.Version)
		}
		for _, want := range []string{"github.com/gantry-dev/gantry@v0.0.0-imagetest", "sigs.k8s.io/custom-metrics-apiserver@", "k8s.io/apiserver@"} {
			if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, want) }) {
				t.Errorf("%s SBOM (%s, %d components) lists no %s", k, bom.BOMFormat, len(names), want)
			}
		}
	}

	m, err := a.Index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	plats := hostPlatforms()
	if len(m.Manifests) != len(plats) {
		t.Fatalf("index has %d manifests, want %d", len(m.Manifests), len(plats))
	}
	for i, d := range m.Manifests {
		if d.Platform == nil || d.Platform.String() != plats[i].String() {
			t.Errorf("manifest %d platform %v, want %s", i, d.Platform, plats[i])
		}
		img, err := a.Index.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		CheckContents(t, img, meta)
		t.Logf("%s: %.1f MB compressed", plats[i], float64(a.Sizes[plats[i].OS+"/"+plats[i].Architecture])/1e6)
		_, data := entries(t, img)
		bin := filepath.Join(t.TempDir(), "gantry")
		if err := os.WriteFile(bin, data["gantry"], 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "--version").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "gantry v0.0.0-imagetest" {
			t.Errorf("/gantry --version from the image: %q, %v; want \"gantry v0.0.0-imagetest\"", out, err)
		}
	}
}

// hostPlatforms is the platform of Platforms this machine runs.
func hostPlatforms() []v1.Platform {
	for _, p := range Platforms {
		if p.OS == runtime.GOOS && p.Architecture == runtime.GOARCH {
			return []v1.Platform{p}
		}
	}
	return Platforms[:1]
}
