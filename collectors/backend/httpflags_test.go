package backend_test

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	commoncfg "github.com/prometheus/common/config"

	"github.com/gantry-dev/gantry/collectors/backend"
)

// TestHTTPConfig checks how the connection flags become an HTTP client
// config, and that mistakes are reported with the flag and what to do.
func TestHTTPConfig(t *testing.T) {
	// summary is the part of a config the flags decide.
	type summary struct {
		AuthType, Token, TokenFile string
		BasicUser, BasicPassword   string
		CAFile, CA                 string
		CertFile, KeyFile          string
		Insecure                   bool
		ServerName                 string
		Headers                    map[string][]string
		Redirects                  backend.Redirects
	}
	summarize := func(c commoncfg.HTTPClientConfig, r backend.Redirects) summary {
		s := summary{
			CAFile: c.TLSConfig.CAFile, CA: c.TLSConfig.CA, CertFile: c.TLSConfig.CertFile, KeyFile: c.TLSConfig.KeyFile,
			Insecure: c.TLSConfig.InsecureSkipVerify, ServerName: c.TLSConfig.ServerName, Redirects: r,
		}
		if a := c.Authorization; a != nil {
			s.AuthType, s.Token, s.TokenFile = a.Type, string(a.Credentials), a.CredentialsFile
		}
		if b := c.BasicAuth; b != nil {
			s.BasicUser, s.BasicPassword = b.Username, string(b.Password)
		}
		if c.HTTPHeaders != nil {
			s.Headers = map[string][]string{}
			for k, v := range c.HTTPHeaders.Headers {
				s.Headers[k] = v.Values
			}
		}
		return s
	}
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	kubeconfig := file("kubeconfig", `
apiVersion: v1
kind: Config
clusters:
- name: prom
  cluster:
    server: https://prometheus.monitoring.svc:9090
    certificate-authority-data: `+base64.StdEncoding.EncodeToString([]byte("CA PEM"))+`
    tls-server-name: prometheus.internal
contexts:
- name: prom
  context: {cluster: prom, user: gantry}
- name: other
  context: {cluster: prom, user: nobody}
current-context: prom
users:
- name: gantry
  user: {token: kube-token}
- name: nobody
  user: {}
`)
	noCurrent := file("no-current", `
kind: Config
clusters: [{name: p, cluster: {server: "https://p"}}]
contexts: [{name: a, context: {cluster: p, user: u}}, {name: b, context: {cluster: p, user: u}}]
users: [{name: u, user: {token: t}}]
`)
	httpConfig := file("http.yaml", `
authorization:
  type: Bearer
  credentials_file: /var/run/secrets/token
tls_config:
  ca_file: /etc/prometheus/ca.crt
  insecure_skip_verify: false
`)
	unknownField := file("unknown.yaml", `
bearer_tokn: abc
`)
	basicAndToken := file("basic.yaml", `
basic_auth: {username: u, password: p}
`)
	followAll := file("follow.yaml", `
follow_redirects: true
`)
	followNone := file("nofollow.yaml", `
follow_redirects: false
`)

	cases := []struct {
		name    string
		flags   backend.HTTPFlags
		want    summary
		wantErr []string // substrings of the error
	}{{
		name: "no flags",
		want: summary{},
	}, {
		name:  "token file",
		flags: backend.HTTPFlags{TokenFile: "/var/run/token"},
		want:  summary{AuthType: "Bearer", TokenFile: "/var/run/token"},
	}, {
		name:  "CA, client certificate and key",
		flags: backend.HTTPFlags{CAFile: "/ca.crt", ClientCertFile: "/tls.crt", ClientKeyFile: "/tls.key"},
		want:  summary{CAFile: "/ca.crt", CertFile: "/tls.crt", KeyFile: "/tls.key"},
	}, {
		name:    "client certificate without a key",
		flags:   backend.HTTPFlags{ClientCertFile: "/tls.crt"},
		wantErr: []string{"--prometheus-client-tls-cert-file and --prometheus-client-tls-key-file must be set together"},
	}, {
		name:    "key without a client certificate",
		flags:   backend.HTTPFlags{ClientKeyFile: "/tls.key"},
		wantErr: []string{"--prometheus-client-tls-cert-file and --prometheus-client-tls-key-file must be set together"},
	}, {
		name:  "headers, repeated and with = in the value",
		flags: backend.HTTPFlags{Headers: []string{"X-Scope-OrgID=team-a", "x-scope-orgid=team-b", "X-Query=a=b"}},
		want:  summary{Headers: map[string][]string{"X-Scope-Orgid": {"team-a", "team-b"}, "X-Query": {"a=b"}}},
	}, {
		name:    "header without =",
		flags:   backend.HTTPFlags{Headers: []string{"X-Scope-OrgID"}},
		wantErr: []string{`--prometheus-header "X-Scope-OrgID": expected Name=Value`},
	}, {
		name:    "header without a name",
		flags:   backend.HTTPFlags{Headers: []string{"=team-a"}},
		wantErr: []string{`--prometheus-header "=team-a": expected Name=Value`},
	}, {
		name:    "header name that is not a token",
		flags:   backend.HTTPFlags{Headers: []string{"X Scope=team-a"}},
		wantErr: []string{`--prometheus-header "X Scope=team-a": expected Name=Value`},
	}, {
		name:    "Authorization is not a header to set this way",
		flags:   backend.HTTPFlags{Headers: []string{"Authorization=Bearer x"}},
		wantErr: []string{`"Authorization" is not allowed`},
	}, {
		name:  "kubeconfig: current context's CA, server name and token",
		flags: backend.HTTPFlags{AuthConfigFile: kubeconfig},
		want:  summary{AuthType: "Bearer", Token: "kube-token", CA: "CA PEM", ServerName: "prometheus.internal"},
	}, {
		name:  "kubeconfig, then --prometheus-ca-file and --prometheus-token-file take over",
		flags: backend.HTTPFlags{AuthConfigFile: kubeconfig, CAFile: "/ca.crt", TokenFile: "/token"},
		want:  summary{AuthType: "Bearer", TokenFile: "/token", CAFile: "/ca.crt", ServerName: "prometheus.internal"},
	}, {
		name:    "kubeconfig with two contexts and no current one",
		flags:   backend.HTTPFlags{AuthConfigFile: noCurrent},
		wantErr: []string{"--prometheus-auth-config " + noCurrent, "kubeconfig has no current-context"},
	}, {
		name:  "Prometheus HTTP client config",
		flags: backend.HTTPFlags{AuthConfigFile: httpConfig},
		want:  summary{AuthType: "Bearer", TokenFile: "/var/run/secrets/token", CAFile: "/etc/prometheus/ca.crt"},
	}, {
		name:  "HTTP client config with basic auth",
		flags: backend.HTTPFlags{AuthConfigFile: basicAndToken},
		want:  summary{BasicUser: "u", BasicPassword: "p"},
	}, {
		name:  "HTTP client config with basic auth, and a token file too",
		flags: backend.HTTPFlags{AuthConfigFile: basicAndToken, TokenFile: "/token"},
		wantErr: []string{
			"basic_auth",
			"authorization",
		},
	}, {
		name:  "follow_redirects: true follows redirects to other hosts too",
		flags: backend.HTTPFlags{AuthConfigFile: followAll},
		want:  summary{Redirects: backend.AnyOrigin},
	}, {
		name:  "follow_redirects: false follows none",
		flags: backend.HTTPFlags{AuthConfigFile: followNone},
		want:  summary{Redirects: backend.NoRedirects},
	}, {
		name:  "unknown field",
		flags: backend.HTTPFlags{AuthConfigFile: unknownField},
		wantErr: []string{
			"--prometheus-auth-config " + unknownField,
			"expected a Prometheus HTTP client config (authorization, basic_auth, tls_config, http_headers, ...) or a kubeconfig",
			"bearer_tokn",
		},
	}, {
		name:    "missing file",
		flags:   backend.HTTPFlags{AuthConfigFile: filepath.Join(dir, "nope.yaml")},
		wantErr: []string{"--prometheus-auth-config", "no such file"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, redirects, err := tc.flags.HTTPConfig()
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("want an error containing %q, got config %+v", tc.wantErr, summarize(cfg, redirects))
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if diff := cmp.Diff(tc.want, summarize(cfg, redirects)); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}
