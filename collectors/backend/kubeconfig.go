package backend

import (
	"bytes"
	"errors"
	"fmt"

	commoncfg "github.com/prometheus/common/config"
	"k8s.io/client-go/tools/clientcmd"
)

// isKubeconfig tells a kubeconfig (prometheus-adapter's format for
// --prometheus-auth-config) from a Prometheus HTTP client config.
func isKubeconfig(data []byte) bool {
	return bytes.Contains(data, []byte("kind: Config")) || bytes.Contains(data, []byte("\"kind\": \"Config\"")) ||
		(bytes.Contains(data, []byte("clusters:")) && bytes.Contains(data, []byte("users:")))
}

// fromKubeconfig maps the current context of a kubeconfig onto an HTTP client
// config: CA, client certificate, bearer token or basic auth.
func fromKubeconfig(data []byte) (commoncfg.HTTPClientConfig, error) {
	cfg := commoncfg.DefaultHTTPClientConfig
	kc, err := clientcmd.Load(data)
	if err != nil {
		return cfg, fmt.Errorf("not a valid kubeconfig: %v", err)
	}
	ctxName := kc.CurrentContext
	if ctxName == "" && len(kc.Contexts) == 1 {
		for name := range kc.Contexts {
			ctxName = name
		}
	}
	kctx, ok := kc.Contexts[ctxName]
	if !ok {
		return cfg, errors.New("kubeconfig has no current-context")
	}
	if cl, ok := kc.Clusters[kctx.Cluster]; ok {
		cfg.TLSConfig.CAFile = cl.CertificateAuthority
		cfg.TLSConfig.CA = string(cl.CertificateAuthorityData)
		cfg.TLSConfig.InsecureSkipVerify = cl.InsecureSkipTLSVerify
		cfg.TLSConfig.ServerName = cl.TLSServerName
	}
	if u, ok := kc.AuthInfos[kctx.AuthInfo]; ok {
		cfg.TLSConfig.CertFile = u.ClientCertificate
		cfg.TLSConfig.Cert = string(u.ClientCertificateData)
		cfg.TLSConfig.KeyFile = u.ClientKey
		cfg.TLSConfig.Key = commoncfg.Secret(u.ClientKeyData)
		switch {
		case u.Token != "":
			cfg.Authorization = &commoncfg.Authorization{Type: "Bearer", Credentials: commoncfg.Secret(u.Token)}
		case u.TokenFile != "":
			cfg.Authorization = &commoncfg.Authorization{Type: "Bearer", CredentialsFile: u.TokenFile}
		case u.Username != "":
			cfg.BasicAuth = &commoncfg.BasicAuth{Username: u.Username, Password: commoncfg.Secret(u.Password)}
		}
	}
	return cfg, nil
}
