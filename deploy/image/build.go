package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Licenses is the image's org.opencontainers.image.licenses: NOASSERTION
// (SPDX for "not stated") until the repository carries a license file.
const Licenses = "NOASSERTION"

// GitMeta reads the revision and commit time of HEAD in dir.
func GitMeta(ctx context.Context, dir, version string) (Meta, error) {
	out, err := gitOut(ctx, dir, "log", "-1", "--format=%H %ct")
	if err != nil {
		return Meta{}, err
	}
	rev, secs, ok := strings.Cut(strings.TrimSpace(out), " ")
	n, err := strconv.ParseInt(secs, 10, 64)
	if !ok || err != nil {
		return Meta{}, fmt.Errorf("image: git log: unexpected %q", out)
	}
	return Meta{Version: version, Revision: rev, Created: time.Unix(n, 0).UTC(), Licenses: Licenses}, nil
}

func gitOut(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("image: git %s: %w: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out), nil
}

// BuildBinary compiles ./cmd/gantry of the module in root for p into out,
// as the Makefile's build target does (static, -trimpath, version stamped).
func BuildBinary(ctx context.Context, root string, p v1.Platform, version, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X main.version="+version, "-o", out, "./cmd/gantry")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if p.Architecture == "arm64" {
		cmd.Env = append(cmd.Env, "GOARM64=v8.0")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("image: go build for %s: %w\n%s", p, err, b)
	}
	return nil
}

// Result is what Build wrote.
type Result struct {
	Index  v1.ImageIndex
	Digest v1.Hash
	// Layout is the OCI image layout directory.
	Layout string
	// Tarballs are docker-archive tarballs (podman/docker load), one per
	// platform, keyed by "os/arch".
	Tarballs map[string]string
	// SBOMs are CycloneDX JSON files, one per platform, keyed by "os/arch".
	SBOMs map[string]string
	// Sizes are each platform image's compressed size (manifest, config
	// and layers), keyed by "os/arch".
	Sizes map[string]int64
}

// Options of Build.
type Options struct {
	// Root is the repository root (go.mod of github.com/gantry-dev/gantry).
	Root string
	// Out is the output directory; its oci/ and tarballs are replaced.
	Out string
	// Meta annotates the image; Version is stamped into the binary.
	Meta Meta
	// CABundle is the PEM bundle copied to CABundle.
	CABundle []byte
	// Platforms default to Platforms; tests build a subset.
	Platforms []v1.Platform
	Logf      func(format string, args ...any)
}

// Tag is the name the tarballs carry: what `podman load` tags.
func Tag(version string) string { return "localhost/gantry:" + version }

// Build compiles the binaries, assembles the images and the index, and
// writes the OCI layout, the tarballs and the SBOMs under opts.Out.
func Build(ctx context.Context, opts Options) (*Result, error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	plats := opts.Platforms
	if plats == nil {
		plats = Platforms
	}
	if len(opts.CABundle) == 0 {
		return nil, errors.New("image: empty CA bundle")
	}
	tag, err := name.NewTag(Tag(opts.Meta.Version))
	if err != nil {
		return nil, fmt.Errorf("image: version %q is not a valid tag: %w", opts.Meta.Version, err)
	}
	binDir := filepath.Join(opts.Out, "binaries")
	res := &Result{Tarballs: map[string]string{}, SBOMs: map[string]string{}, Sizes: map[string]int64{}}
	var images []v1.Image
	for _, p := range plats {
		key := p.OS + "/" + p.Architecture
		bin := filepath.Join(binDir, p.OS+"-"+p.Architecture, "gantry")
		start := time.Now()
		if err := BuildBinary(ctx, opts.Root, p, opts.Meta.Version, bin); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		opts.Logf("gantry-image: built %s binary (%d bytes) in %s", key, len(data), time.Since(start).Round(100*time.Millisecond))
		img, err := Image(p, data, opts.CABundle, opts.Meta)
		if err != nil {
			return nil, err
		}
		images = append(images, img)
		if res.Sizes[key], err = compressedSize(img); err != nil {
			return nil, err
		}
		tb := filepath.Join(opts.Out, "gantry-"+p.OS+"-"+p.Architecture+".tar")
		if err := tarball.WriteToFile(tb, tag, img); err != nil {
			return nil, fmt.Errorf("image: writing %s: %w", tb, err)
		}
		res.Tarballs[key] = tb
		d, err := img.Digest()
		if err != nil {
			return nil, err
		}
		sbom, err := SBOM(bin, p, opts.Meta, d)
		if err != nil {
			return nil, err
		}
		sb := filepath.Join(opts.Out, "gantry-"+p.OS+"-"+p.Architecture+".cdx.json")
		if err := os.WriteFile(sb, sbom, 0o644); err != nil {
			return nil, err
		}
		res.SBOMs[key] = sb
	}
	if res.Index, err = Index(images, plats, opts.Meta); err != nil {
		return nil, err
	}
	if res.Digest, err = res.Index.Digest(); err != nil {
		return nil, err
	}
	res.Layout = filepath.Join(opts.Out, "oci")
	if err := os.RemoveAll(res.Layout); err != nil {
		return nil, err
	}
	lp, err := layout.Write(res.Layout, empty.Index)
	if err != nil {
		return nil, err
	}
	if err := lp.AppendIndex(res.Index, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": opts.Meta.Version,
	})); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(opts.Out, "digest"), []byte(res.Digest.String()+"\n"), 0o644); err != nil {
		return nil, err
	}
	return res, nil
}

func compressedSize(img v1.Image) (int64, error) {
	raw, err := img.RawManifest()
	if err != nil {
		return 0, err
	}
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	n := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}
