package image

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"fmt"
	"runtime/debug"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// SBOM is a CycloneDX JSON bill of materials of the Go binary at bin (its
// embedded build info: main module, every linked module and the
// toolchain), describing the image digest for platform p. It is
// deterministic: the serial number is derived from the content and the
// timestamp is the commit time.
func SBOM(bin string, p v1.Platform, m Meta, digest v1.Hash) ([]byte, error) {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("image: build info of %s: %w", bin, err)
	}
	bom := cdx.NewBOM()
	root := &cdx.Component{
		BOMRef:     "pkg:oci/gantry@" + digest.String(),
		Type:       cdx.ComponentTypeContainer,
		Name:       "gantry",
		Version:    m.Version,
		PackageURL: "pkg:oci/gantry@" + digest.String() + "?arch=" + p.Architecture + "&repository_url=ghcr.io/gantry-dev/gantry",
		Properties: &[]cdx.Property{
			{Name: "org.opencontainers.image.revision", Value: m.Revision},
			{Name: "platform", Value: p.String()},
		},
	}
	main := goComponent(&bi.Main, cdx.ComponentTypeApplication)
	main.Version = m.Version
	props := []cdx.Property{{Name: "go.version", Value: bi.GoVersion}}
	for _, s := range bi.Settings {
		props = append(props, cdx.Property{Name: "go.build." + s.Key, Value: s.Value})
	}
	main.Properties = &props
	comps := []cdx.Component{main, {
		BOMRef:     "pkg:golang/stdlib@" + bi.GoVersion,
		Type:       cdx.ComponentTypeLibrary,
		Name:       "stdlib",
		Version:    bi.GoVersion,
		PackageURL: "pkg:golang/stdlib@" + bi.GoVersion,
	}}
	deps := []string{comps[1].BOMRef}
	for _, d := range bi.Deps {
		c := goComponent(d, cdx.ComponentTypeLibrary)
		comps = append(comps, c)
		deps = append(deps, c.BOMRef)
	}
	bom.Metadata = &cdx.Metadata{
		Timestamp: m.Created.UTC().Format(time.RFC3339),
		Component: root,
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{
			Type: cdx.ComponentTypeApplication, Name: "gantry-image", Version: m.Version,
			Description: "deploy/image in " + Source,
		}}},
	}
	bom.Components = &comps
	bom.Dependencies = &[]cdx.Dependency{
		{Ref: root.BOMRef, Dependencies: &[]string{main.BOMRef}},
		{Ref: main.BOMRef, Dependencies: &deps},
	}
	var buf bytes.Buffer
	enc := cdx.NewBOMEncoder(&buf, cdx.BOMFileFormatJSON).SetPretty(true)
	if err := enc.Encode(bom); err != nil {
		return nil, err
	}
	// A serial number derived from the content (an RFC 4122 version 5
	// style UUID), so that rebuilding the same commit gives the same file.
	sum := sha256.Sum256(buf.Bytes())
	sum[6] = sum[6]&0x0f | 0x50
	sum[8] = sum[8]&0x3f | 0x80
	bom.SerialNumber = fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
	buf.Reset()
	if err := enc.Encode(bom); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func goComponent(m *debug.Module, typ cdx.ComponentType) cdx.Component {
	if m.Replace != nil {
		m = m.Replace
	}
	purl := "pkg:golang/" + m.Path
	if m.Version != "" {
		purl += "@" + m.Version
	}
	c := cdx.Component{BOMRef: purl, Type: typ, Name: m.Path, Version: m.Version, PackageURL: purl}
	if m.Sum != "" {
		c.Properties = &[]cdx.Property{{Name: "go.sum", Value: m.Sum}}
	}
	return c
}
