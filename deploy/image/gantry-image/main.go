// Command gantry-image builds Gantry's container image without a Docker
// engine (`make image`) and pushes it (`make push IMAGE=...`). See package
// github.com/gantry-dev/gantry/deploy/image.
//
//	gantry-image build -version V [-out bin/image] [-ca /etc/ssl/certs/ca-certificates.crt]
//	gantry-image push [-layout bin/image/oci] registry/name:tag
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/gantry-dev/gantry/deploy/image"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gantry-image build|push [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = build(os.Args[2:])
	case "push":
		err = push(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: build or push", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gantry-image:", err)
		os.Exit(1)
	}
}

func build(args []string) error {
	fs := flag.NewFlagSet("build", flag.ExitOnError)
	version := fs.String("version", "", "version stamped into the binary and the annotations (the Makefile's VERSION)")
	out := fs.String("out", "bin/image", "output directory")
	ca := fs.String("ca", "/etc/ssl/certs/ca-certificates.crt", "PEM CA bundle copied into the image")
	_ = fs.Parse(args)
	if *version == "" {
		return fmt.Errorf("build: -version is required")
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	bundle, err := os.ReadFile(*ca)
	if err != nil {
		return err
	}
	ctx := context.Background()
	meta, err := image.GitMeta(ctx, root, *version)
	if err != nil {
		return err
	}
	outDir, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := image.Build(ctx, image.Options{
		Root: root, Out: outDir, Meta: meta, CABundle: bundle,
		Logf: func(f string, a ...any) { fmt.Printf(f+"\n", a...) },
	})
	if err != nil {
		return err
	}
	fmt.Printf("gantry-image: %s (revision %s, created %s) in %s\n", image.Tag(meta.Version), meta.Revision, meta.Created.Format(time.RFC3339), time.Since(start).Round(100*time.Millisecond))
	fmt.Printf("  index     %s\n  layout    %s\n", res.Digest, res.Layout)
	keys := make([]string, 0, len(res.Tarballs))
	for k := range res.Tarballs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Printf("  %-13s %.1f MB compressed  tarball %s  sbom %s\n", k, float64(res.Sizes[k])/1e6, res.Tarballs[k], res.SBOMs[k])
	}
	return nil
}

func push(args []string) error {
	fs := flag.NewFlagSet("push", flag.ExitOnError)
	dir := fs.String("layout", "bin/image/oci", "OCI layout written by build")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return fmt.Errorf("push: want one image reference (registry/name:tag)")
	}
	ref, err := name.ParseReference(fs.Arg(0))
	if err != nil {
		return err
	}
	p, err := layout.FromPath(*dir)
	if err != nil {
		return fmt.Errorf("push: %w (run `make image` first)", err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		return err
	}
	m, err := top.IndexManifest()
	if err != nil {
		return err
	}
	if len(m.Manifests) != 1 {
		return fmt.Errorf("push: %s holds %d entries, want the one index build writes", *dir, len(m.Manifests))
	}
	idx, err := top.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		return err
	}
	if err := remote.WriteIndex(ref, idx, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return err
	}
	fmt.Printf("gantry-image: pushed %s@%s\n", ref.Context(), m.Manifests[0].Digest)
	return nil
}
