package config

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	commoncfg "github.com/prometheus/common/config"
	"gopkg.in/yaml.v3"

	"github.com/gantry-dev/gantry/collectors/backend"
)

// HTTPConfig is a backend's HTTP client configuration in Prometheus'
// format, read strictly: an unknown field is an error, and so is a secret
// written inline (it would sit in the ConfigMap, and in every copy of it).
type HTTPConfig struct {
	commoncfg.HTTPClientConfig
	// FollowRedirectsSet says whether follow_redirects was written: unset,
	// redirects are followed within the backend's origin only.
	FollowRedirectsSet bool
}

// UnmarshalYAML decodes the mapping strictly.
func (h *HTTPConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("expected a mapping (authorization, basic_auth, tls_config, ...), got %s", kindName(n))
	}
	var buf bytes.Buffer
	if err := yaml.NewEncoder(&buf).Encode(n); err != nil {
		return err
	}
	dec := yaml.NewDecoder(&buf)
	dec.KnownFields(true)
	cfg := commoncfg.DefaultHTTPClientConfig
	if err := dec.Decode(&cfg); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
		msg = yamlInnerLine.ReplaceAllString(msg, "")
		msg = yamlGoType.ReplaceAllString(msg, "")
		return errors.New(msg)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "follow_redirects" {
			h.FollowRedirectsSet = true
		}
	}
	if inline := inlineSecrets(cfg); len(inline) > 0 {
		return fmt.Errorf("inline secrets are not accepted: %s", strings.Join(inline, "; "))
	}
	h.HTTPClientConfig = cfg
	return nil
}

var (
	yamlInnerLine = regexp.MustCompile(`line \d+: `)
	yamlGoType    = regexp.MustCompile(` (in|into) (type )?[a-z]+\.[A-Za-z]+`)
)

// inlineSecrets names the secrets cfg holds inline, each with the field
// that reads it from a file instead.
func inlineSecrets(cfg commoncfg.HTTPClientConfig) []string {
	var out []string
	if cfg.BasicAuth != nil && cfg.BasicAuth.Password != "" {
		out = append(out, "basic_auth.password (use password_file)")
	}
	if cfg.Authorization != nil && cfg.Authorization.Credentials != "" {
		out = append(out, "authorization.credentials (use credentials_file)")
	}
	if cfg.BearerToken != "" {
		out = append(out, "bearer_token (use authorization.credentials_file)")
	}
	if cfg.OAuth2 != nil && cfg.OAuth2.ClientSecret != "" {
		out = append(out, "oauth2.client_secret (use client_secret_file)")
	}
	if cfg.TLSConfig.Key != "" {
		out = append(out, "tls_config.key (use key_file)")
	}
	if cfg.HTTPHeaders != nil {
		for name, h := range cfg.HTTPHeaders.Headers {
			if len(h.Secrets) > 0 {
				out = append(out, "http_headers."+name+".secrets (use files)")
			}
		}
	}
	slices.Sort(out)
	return out
}

// Redirects is the redirect policy the config asks for.
func (h *HTTPConfig) Redirects() backend.Redirects {
	switch {
	case h == nil || !h.FollowRedirectsSet:
		return backend.SameOrigin
	case h.FollowRedirects:
		return backend.AnyOrigin
	}
	return backend.NoRedirects
}

// Client is the HTTP client configuration, the default one when unset.
func (h *HTTPConfig) Client() commoncfg.HTTPClientConfig {
	if h == nil {
		return commoncfg.DefaultHTTPClientConfig
	}
	return h.HTTPClientConfig
}

// reservedBackends are the names of the backends the flags define.
var reservedBackends = []string{SourcePrometheus, SourceLoki, SourceLocal}

var backendName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Lookup is the named backend called name, or nil.
func (c *Config) Lookup(name string) *Backend {
	for i := range c.Backends {
		if c.Backends[i].Name == name {
			return &c.Backends[i]
		}
	}
	return nil
}

// Members are the backend's URLs: URL, or the HA set URLs.
func (b *Backend) Members() []string {
	if len(b.URLs) > 0 {
		return b.URLs
	}
	if b.URL != "" {
		return []string{b.URL}
	}
	return nil
}

// Tenancy is the backend's tenant configuration as the clients take it,
// nil when it sends no tenant.
func (b *Backend) Tenancy() *backend.Tenancy {
	t := b.Tenant
	if t == nil {
		return nil
	}
	header := t.Header
	if header == "" {
		header = DefaultTenantHeader
	}
	return &backend.Tenancy{Header: header, Fixed: t.Fixed, ByNamespace: t.ByNamespace, Template: t.Template, Cluster: t.Cluster}
}

// validateBackends checks the backends section; each problem is reported
// as "file: backends[i] (name): field: what".
func (c *Config) validateBackends(file string) []error {
	var errs []error
	seen := map[string]int{}
	for i, b := range c.Backends {
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: backends[%d] (%s): %s", file, i, b.Name, fmt.Sprintf(format, args...)))
		}
		switch {
		case b.Name == "":
			fail("name: required: a name rules refer to, such as thanos")
		case slices.Contains(reservedBackends, b.Name):
			fail("name: %q is the backend the flags define; choose another name", b.Name)
		case !backendName.MatchString(b.Name):
			fail("name: %q: expected lower-case letters, digits and '-'", b.Name)
		default:
			if j, ok := seen[b.Name]; ok {
				fail("name: %q is also backends[%d]", b.Name, j)
			}
			seen[b.Name] = i
		}
		if b.Type != BackendPrometheus && b.Type != BackendLoki {
			fail("type: expected %q (any Prometheus-compatible API: Prometheus, Thanos, Cortex, Mimir) or %q, got %q", BackendPrometheus, BackendLoki, b.Type)
		}
		switch {
		case b.URL != "" && len(b.URLs) > 0:
			fail("url, urls: set url, or urls for an HA set, not both")
		case b.URL == "" && len(b.URLs) == 0:
			fail("url: required: the backend's base URL, such as http://thanos-query.monitoring:9090")
		default:
			field := "url"
			if len(b.URLs) > 0 {
				field = "urls"
			}
			if _, err := backend.ParseMembers(field, b.Members()); err != nil {
				fail("%v", err)
			}
		}
		if tn := b.Tenancy(); tn != nil {
			if err := tn.Validate(); err != nil {
				fail("tenant: %v", strings.ReplaceAll(err.Error(), "\n", "; "))
			}
			if t := b.Tenant; t.Fixed != "" && (len(t.ByNamespace) > 0 || t.Template != "" || t.Cluster != "") {
				fail("tenant: fixed is every request's tenant: set it alone, or map namespaces with byNamespace/template")
			}
			if t := b.Tenant; t.Template != "" && !strings.Contains(t.Template, "$namespace") {
				fail("tenant.template: %q does not contain $namespace: every namespace would share one tenant (use fixed)", t.Template)
			}
			if h := b.HTTP; h != nil && h.HTTPHeaders != nil {
				for name := range h.HTTPHeaders.Headers {
					if strings.EqualFold(name, tn.Header) {
						fail("http.http_headers: %s is the tenant header; set the tenant under tenant:", name)
					}
				}
			}
		}
		if b.HTTP != nil {
			if err := b.HTTP.Validate(); err != nil {
				fail("http: %v", err)
			}
		}
		if b.Timeout < 0 {
			fail("timeout: must be positive")
		}
	}
	check := func(section string, i int, r DiscoveryRule) {
		if r.Backend == "" {
			return
		}
		id := fmt.Sprintf("%s: %s[%d] (%s): backend", file, section, i, r.DisplayName())
		b := c.Lookup(r.Backend)
		switch {
		case b == nil:
			names := make([]string, 0, len(c.Backends))
			for _, b := range c.Backends {
				names = append(names, b.Name)
			}
			errs = append(errs, fmt.Errorf("%s: unknown backend %q (backends: %s)", id, r.Backend, strings.Join(names, ", ")))
		case r.Source != "":
			errs = append(errs, fmt.Errorf("%s: set backend or source, not both", id))
		case r.LogQLQuery != "" && b.Type != BackendLoki:
			errs = append(errs, fmt.Errorf("%s: %q is a %s backend; a logqlQuery rule needs a loki backend", id, r.Backend, b.Type))
		case r.LogQLQuery == "" && b.Type != BackendPrometheus:
			errs = append(errs, fmt.Errorf("%s: %q is a %s backend; a metricsQuery (PromQL) rule needs a prometheus backend", id, r.Backend, b.Type))
		}
	}
	for i, r := range c.Rules {
		check("rules", i, r)
	}
	for i, r := range c.ExternalRules {
		check("externalRules", i, r)
	}
	return errs
}
