package backend

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	commoncfg "github.com/prometheus/common/config"
	"gopkg.in/yaml.v3"
)

// HTTPFlags are the prometheus-adapter compatible connection flags.
type HTTPFlags struct {
	AuthConfigFile string   // --prometheus-auth-config: HTTPClientConfig YAML or a kubeconfig
	CAFile         string   // --prometheus-ca-file
	TokenFile      string   // --prometheus-token-file
	ClientCertFile string   // --prometheus-client-tls-cert-file
	ClientKeyFile  string   // --prometheus-client-tls-key-file
	Headers        []string // --prometheus-header Name=Value
}

// HTTPConfig builds the HTTP client configuration from the flags, and
// says which redirects to follow: the auth config's follow_redirects: true
// follows them to other hosts too (without credentials), false follows
// none; unset (and with a kubeconfig) those within the backend's scheme,
// host and port only — not prometheus/common's default, which follows any.
func (f HTTPFlags) HTTPConfig() (commoncfg.HTTPClientConfig, Redirects, error) {
	cfg := commoncfg.DefaultHTTPClientConfig
	redirects := SameOrigin
	if f.AuthConfigFile != "" {
		data, err := os.ReadFile(f.AuthConfigFile)
		if err != nil {
			return cfg, redirects, fmt.Errorf("--prometheus-auth-config: %w", err)
		}
		if isKubeconfig(data) {
			kc, err := fromKubeconfig(data)
			if err != nil {
				return cfg, redirects, fmt.Errorf("--prometheus-auth-config %s: %w", f.AuthConfigFile, err)
			}
			cfg = kc
		} else {
			dec := yaml.NewDecoder(strings.NewReader(string(data)))
			dec.KnownFields(true)
			if err := dec.Decode(&cfg); err != nil {
				return cfg, redirects, fmt.Errorf("--prometheus-auth-config %s: expected a Prometheus HTTP client config (authorization, basic_auth, tls_config, http_headers, ...) or a kubeconfig: %v", f.AuthConfigFile, err)
			}
			// The decoded config cannot tell an unset follow_redirects
			// from its default, true.
			var set struct {
				FollowRedirects *bool `yaml:"follow_redirects"`
			}
			if yaml.Unmarshal(data, &set) == nil && set.FollowRedirects != nil {
				redirects = NoRedirects
				if *set.FollowRedirects {
					redirects = AnyOrigin
				}
			}
		}
	}
	// The flags take over what the auth config says about the same thing:
	// the TLS config accepts only one source of each.
	if f.CAFile != "" {
		cfg.TLSConfig.CA, cfg.TLSConfig.CARef = "", ""
		cfg.TLSConfig.CAFile = f.CAFile
	}
	if f.ClientCertFile != "" || f.ClientKeyFile != "" {
		if f.ClientCertFile == "" || f.ClientKeyFile == "" {
			return cfg, redirects, errors.New("--prometheus-client-tls-cert-file and --prometheus-client-tls-key-file must be set together")
		}
		cfg.TLSConfig.Cert, cfg.TLSConfig.CertRef, cfg.TLSConfig.Key, cfg.TLSConfig.KeyRef = "", "", "", ""
		cfg.TLSConfig.CertFile, cfg.TLSConfig.KeyFile = f.ClientCertFile, f.ClientKeyFile
	}
	if f.TokenFile != "" {
		cfg.Authorization = &commoncfg.Authorization{Type: "Bearer", CredentialsFile: f.TokenFile}
	}
	for _, h := range f.Headers {
		name, value, ok := strings.Cut(h, "=")
		if !ok || !isToken(name) {
			return cfg, redirects, fmt.Errorf("--prometheus-header %q: expected Name=Value", h)
		}
		if cfg.HTTPHeaders == nil {
			cfg.HTTPHeaders = &commoncfg.Headers{Headers: map[string]commoncfg.Header{}}
		}
		hd := cfg.HTTPHeaders.Headers[http.CanonicalHeaderKey(name)]
		hd.Values = append(hd.Values, value)
		cfg.HTTPHeaders.Headers[http.CanonicalHeaderKey(name)] = hd
	}
	return cfg, redirects, cfg.Validate()
}

// isToken reports whether s is a valid header name (an RFC 9110 token);
// net/http refuses to send any other, failing every request.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return true
}
