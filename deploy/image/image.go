// Package image builds Gantry's container image without a Docker engine and
// without a base image from a registry: an OCI index of one image per
// platform, each an empty base plus two layers, the base files (CA bundle,
// /etc/passwd and /etc/group for the nonroot user 65532) and the static
// binary, with the user, entrypoint, exposed port and OCI annotations in the
// config. Every input that could vary between two builds of one commit is
// fixed (file times are the commit time, owners are root, entries sorted,
// gzip without a timestamp), so two builds give the same digest.
//
// The Dockerfile beside the repository root builds the same layout from
// distroless/static:nonroot; a test keeps the two in step.
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image runs and how; the Dockerfile says the same (TestDockerfile).
const (
	// Binary is where the gantry binary is, and the entrypoint.
	Binary = "/gantry"
	// User is the nonroot uid:gid, distroless' "nonroot".
	User = "65532:65532"
	// Port is the serving port deploy/ uses.
	Port = "6443/tcp"
	// CABundle is where Go's crypto/x509 looks first on Linux.
	CABundle = "/etc/ssl/certs/ca-certificates.crt"
	// Source is the org.opencontainers.image.source annotation.
	Source = "https://github.com/gantry-dev/gantry"
)

// Platforms are the platforms `make image` builds.
var Platforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64", Variant: "v8"},
}

// Meta is what the annotations say about a build.
type Meta struct {
	// Version is what `gantry --version` prints (the Makefile's VERSION).
	Version string
	// Revision is the commit.
	Revision string
	// Created is the commit time: also every file's mtime.
	Created time.Time
	// Licenses is an SPDX expression.
	Licenses string
}

// Annotations are the OCI annotations of the index, of each manifest, and
// (as labels) of each config.
func (m Meta) Annotations() map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":    "gantry",
		"org.opencontainers.image.source":   Source,
		"org.opencontainers.image.version":  m.Version,
		"org.opencontainers.image.revision": m.Revision,
		"org.opencontainers.image.licenses": m.Licenses,
		"org.opencontainers.image.created":  m.Created.UTC().Format(time.RFC3339),
	}
}

// File is one entry of a layer. Paths are absolute; a Mode with
// fs.ModeDir-less permission bits and nil Data on a path ending in "/" is a
// directory.
type File struct {
	Path string
	Mode int64
	Data []byte
}

// BaseFiles are the files of the base layer: what distroless/static's
// nonroot variant provides that Gantry uses.
func BaseFiles(caBundle []byte) []File {
	return []File{
		{Path: "/etc/", Mode: 0o755},
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{Path: "/etc/ssl/", Mode: 0o755},
		{Path: "/etc/ssl/certs/", Mode: 0o755},
		{Path: CABundle, Mode: 0o644, Data: caBundle},
		{Path: "/home/", Mode: 0o755},
		// Owned by 65532 (Layer gives it that owner), as in distroless.
		{Path: "/home/nonroot/", Mode: 0o700},
		{Path: "/tmp/", Mode: 0o1777},
	}
}

// Layer is a deterministic uncompressed tar of files (sorted by path, owned
// by root except /home/nonroot, mtime), gzipped as an OCI layer.
func Layer(files []File, mtime time.Time) (v1.Layer, error) {
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, f := range files {
		if !path.IsAbs(f.Path) {
			return nil, fmt.Errorf("image: %q is not absolute", f.Path)
		}
		if i > 0 && files[i-1].Path == f.Path {
			return nil, fmt.Errorf("image: %s twice", f.Path)
		}
		h := &tar.Header{
			Name:    strings.TrimPrefix(f.Path, "/"),
			Mode:    f.Mode,
			ModTime: mtime.UTC().Truncate(time.Second),
			Format:  tar.FormatUSTAR,
		}
		if strings.HasSuffix(f.Path, "/") {
			if f.Data != nil {
				return nil, fmt.Errorf("image: directory %s has data", f.Path)
			}
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.Data))
		}
		if f.Path == "/home/nonroot/" {
			h.Uid, h.Gid = 65532, 65532
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("image: %s: %w", f.Path, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// Config is the runtime part of the image config.
func Config(m Meta) v1.Config {
	return v1.Config{
		User:         User,
		Entrypoint:   []string{Binary},
		ExposedPorts: map[string]struct{}{Port: {}},
		WorkingDir:   "/",
		Labels:       m.Annotations(),
	}
}

// Image is one platform's image: the base files and the binary for it.
func Image(p v1.Platform, binary, caBundle []byte, m Meta) (v1.Image, error) {
	created := v1.Time{Time: m.Created.UTC().Truncate(time.Second)}
	base, err := Layer(BaseFiles(caBundle), m.Created)
	if err != nil {
		return nil, err
	}
	bin, err := Layer([]File{{Path: Binary, Mode: 0o755, Data: binary}}, m.Created)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: created, CreatedBy: "gantry-image: CA bundle, passwd and group (nonroot 65532)", Comment: "base"}},
		mutate.Addendum{Layer: bin, History: v1.History{Created: created, CreatedBy: "gantry-image: " + Binary + " (CGO_ENABLED=0 go build -trimpath)", Comment: "gantry " + m.Version}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = created
	cf.Config = Config(m)
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	return mutate.Annotations(img, m.Annotations()).(v1.Image), nil
}

// Index is the multi-platform index of images, images[i] being for plats[i].
func Index(images []v1.Image, plats []v1.Platform, m Meta) (v1.ImageIndex, error) {
	if len(images) != len(plats) {
		return nil, fmt.Errorf("image: %d images for %d platforms", len(images), len(plats))
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for i, img := range images {
		p := plats[i]
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	return mutate.Annotations(idx, m.Annotations()).(v1.ImageIndex), nil
}
