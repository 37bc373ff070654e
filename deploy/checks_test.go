package deploy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The checks here hold for every rendering of the manifests, the kustomize
// base with any components (TestKustomize) and the chart with any values
// (TestHelmTemplate).

// checkRendered checks what every rendering must satisfy: Gantry's args
// parse, the config loads and the files its backends name are in mounted
// Secrets, nodes/proxy is granted exactly when the kubelet collector goes
// through the kube-apiserver's proxy, a system-critical priority comes with
// the ResourceQuota that admits it, and a ServiceMonitor or NetworkPolicy, if
// rendered, does what it is for.
func checkRendered(t *testing.T, m manifests) {
	t.Helper()
	deps := m.ofKind("Deployment")
	if len(deps) != 1 {
		t.Fatalf("%d Deployments, want 1", len(deps))
	}
	d, c := deploymentOf(t, m, deps[0].GetName())
	fs := parseArgs(t, c.Args)
	checkKubeletProxy(t, m, d, fs)
	checkPriority(t, m, d)
	checkBackendFiles(t, d, c, renderedConfig(t, m, d))
	if len(m.ofKind("ServiceMonitor")) > 0 {
		checkServiceMonitorTLS(t, m)
	}
	if len(m.ofKind("NetworkPolicy")) > 0 {
		checkNetworkPolicy(t, m)
	}
}

// grantedTo returns the rules of the ClusterRoles the rendering binds to a
// service account.
func grantedTo(t *testing.T, m manifests, namespace, serviceAccount string) []rbacv1.PolicyRule {
	t.Helper()
	var rules []rbacv1.PolicyRule
	for _, o := range m.ofKind("ClusterRoleBinding") {
		b := typed[rbacv1.ClusterRoleBinding](t, o)
		bound := slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool {
			return s.Kind == "ServiceAccount" && s.Namespace == namespace && s.Name == serviceAccount
		})
		if !bound {
			continue
		}
		if r := m.find("ClusterRole", "", b.RoleRef.Name); r != nil {
			rules = append(rules, typed[rbacv1.ClusterRole](t, r).Rules...)
		}
	}
	return rules
}

// checkKubeletProxy: get on nodes/proxy reaches all of a kubelet's API, exec
// included, so Gantry holds it only with --kubelet-via-apiserver-proxy, the
// one mode that needs it; nodes/metrics (direct scrapes) it always holds.
func checkKubeletProxy(t *testing.T, m manifests, d *appsv1.Deployment, fs *pflag.FlagSet) {
	t.Helper()
	rules := grantedTo(t, m, d.Namespace, d.Spec.Template.Spec.ServiceAccountName)
	proxied := flagValue(fs, "kubelet-via-apiserver-proxy") == "true"
	if granted := allows(rules, "", "nodes/proxy", "get"); granted != proxied {
		t.Errorf("get on nodes/proxy granted: %v, --kubelet-via-apiserver-proxy: %v; want both or neither", granted, proxied)
	}
	if !allows(rules, "", "nodes/metrics", "get") {
		t.Error("get on nodes/metrics is not granted: the kubelet collector cannot scrape")
	}
}

// checkPriority: a pod of a system-* priority class outside kube-system is
// admitted, where the cluster limits those classes (GKE), only into a
// namespace with a ResourceQuota for the class; that quota must leave room
// for the replicas and a rollout's surge.
func checkPriority(t *testing.T, m manifests, d *appsv1.Deployment) {
	t.Helper()
	pc := d.Spec.Template.Spec.PriorityClassName
	if !strings.HasPrefix(pc, "system-") {
		return
	}
	replicas := int(*d.Spec.Replicas)
	surge := 0
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxSurge != nil {
		var err error
		if surge, err = intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, replicas, true); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range m.ofKind("ResourceQuota") {
		q := typed[corev1.ResourceQuota](t, o)
		if q.Namespace != d.Namespace || q.Spec.ScopeSelector == nil {
			continue
		}
		for _, e := range q.Spec.ScopeSelector.MatchExpressions {
			if e.ScopeName != corev1.ResourceQuotaScopePriorityClass || e.Operator != corev1.ScopeSelectorOpIn || !slices.Contains(e.Values, pc) {
				continue
			}
			pods, ok := q.Spec.Hard[corev1.ResourcePods]
			if !ok || pods.Value() < int64(replicas+surge) {
				t.Errorf("ResourceQuota %s admits %v pods at %s, fewer than %d replicas and a surge of %d", q.Name, pods.String(), pc, replicas, surge)
			}
			return
		}
	}
	t.Errorf("priorityClassName %s without a ResourceQuota for it in namespace %s: clusters that limit the system classes (GKE) would create no pod", pc, d.Namespace)
}

// servingCertSecret returns the Secret of the cert-manager Certificate Gantry
// serves (the one that is not a CA), or "" if none is rendered.
func servingCertSecret(t *testing.T, m manifests) string {
	t.Helper()
	for _, o := range m.ofKind("Certificate") {
		if ca, _, _ := unstructured.NestedBool(o.Object, "spec", "isCA"); !ca {
			s, _, _ := unstructured.NestedString(o.Object, "spec", "secretName")
			return s
		}
	}
	return ""
}

// checkAPIServiceTrust: kube-apiserver must be able to verify Gantry's
// serving certificate, or be told explicitly not to; an APIService with
// neither stays unavailable. Each APIService carries exactly one of a
// caBundle (a PEM certificate), the cainjector annotation naming a rendered
// Certificate that Gantry serves, or insecureSkipTLSVerify; and a verified
// Gantry serves a certificate from files, not the self-signed one it writes
// to --cert-dir.
func checkAPIServiceTrust(t *testing.T, m manifests) {
	t.Helper()
	_, c := deploymentOf(t, m, m.ofKind("Deployment")[0].GetName())
	servesFiles := flagValue(parseArgs(t, c.Args), "tls-cert-file") != ""
	for _, o := range m.ofKind("APIService") {
		insecure, _, _ := unstructured.NestedBool(o.Object, "spec", "insecureSkipTLSVerify")
		caBundle, _, _ := unstructured.NestedString(o.Object, "spec", "caBundle")
		inject := o.GetAnnotations()["cert-manager.io/inject-ca-from"]
		n := 0
		for _, set := range []bool{insecure, caBundle != "", inject != ""} {
			if set {
				n++
			}
		}
		switch {
		case n == 0:
			t.Errorf("APIService %s has no caBundle, no cainjector annotation and no insecureSkipTLSVerify: it would stay unavailable", o.GetName())
		case n > 1:
			t.Errorf("APIService %s: more than one of caBundle (%v), cainjector annotation (%q), insecureSkipTLSVerify (%v)", o.GetName(), caBundle != "", inject, insecure)
		}
		if caBundle != "" {
			if _, err := parsePEMCert(caBundle, true); err != nil {
				t.Errorf("APIService %s: caBundle: %v", o.GetName(), err)
			}
		}
		if inject != "" {
			ns, name, _ := strings.Cut(inject, "/")
			cert := m.find("Certificate", ns, name)
			if cert == nil {
				t.Errorf("APIService %s: inject-ca-from %s names no rendered Certificate", o.GetName(), inject)
			} else if secret, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName"); secret != servingCertSecret(t, m) {
				t.Errorf("APIService %s: the CA is injected from Certificate %s, but Gantry serves Secret %q", o.GetName(), inject, servingCertSecret(t, m))
			}
		}
		if !insecure && !servesFiles {
			t.Errorf("APIService %s is verified, but Gantry serves the self-signed certificate it writes (no --tls-cert-file)", o.GetName())
		}
	}
}

// parsePEMCert decodes the first certificate of a PEM text, base64-encoded
// first if encoded is set (an APIService's caBundle in YAML).
func parsePEMCert(s string, encoded bool) (*x509.Certificate, error) {
	data := []byte(s)
	if encoded {
		var err error
		if data, err = base64.StdEncoding.DecodeString(s); err != nil {
			return nil, err
		}
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errNotPEM
	}
	return x509.ParseCertificate(block.Bytes)
}

var errNotPEM = errors.New("no PEM certificate")

// checkServiceMonitorTLS: Prometheus verifies Gantry's serving certificate as
// kube-apiserver does, for the Service's DNS name, with the CA that signed
// it: the ca.crt cert-manager keeps next to the serving certificate, or a
// ConfigMap holding the APIServices' caBundle. Never insecureSkipVerify.
func checkServiceMonitorTLS(t *testing.T, m manifests) {
	t.Helper()
	svc := typed[corev1.Service](t, m.ofKind("Service")[0])
	wantName := svc.Name + "." + svc.Namespace + ".svc"
	for _, sm := range m.ofKind("ServiceMonitor") {
		eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
		if len(eps) == 0 {
			t.Errorf("ServiceMonitor %s has no endpoints", sm.GetName())
		}
		for i, ep := range eps {
			tls, _, _ := unstructured.NestedMap(ep.(map[string]any), "tlsConfig")
			if skip, _, _ := unstructured.NestedBool(tls, "insecureSkipVerify"); skip {
				t.Errorf("ServiceMonitor %s endpoint %d: insecureSkipVerify", sm.GetName(), i)
			}
			if got, _, _ := unstructured.NestedString(tls, "serverName"); got != wantName {
				t.Errorf("ServiceMonitor %s endpoint %d: serverName %q, want %q", sm.GetName(), i, got, wantName)
			}
			secret, _, _ := unstructured.NestedStringMap(tls, "ca", "secret")
			cm, _, _ := unstructured.NestedStringMap(tls, "ca", "configMap")
			switch {
			case secret != nil:
				serving := servingCertSecret(t, m)
				if secret["name"] != serving || secret["key"] != "ca.crt" {
					t.Errorf("ServiceMonitor %s endpoint %d: CA from secret %v, want key ca.crt of %q, the serving certificate's", sm.GetName(), i, secret, serving)
				}
				for _, o := range m.ofKind("Certificate") {
					if s, _, _ := unstructured.NestedString(o.Object, "spec", "secretName"); s == serving {
						if dns, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "dnsNames"); !slices.Contains(dns, wantName) {
							t.Errorf("serverName %s is not among the serving certificate's dnsNames %v", wantName, dns)
						}
					}
				}
			case cm != nil:
				o := m.find("ConfigMap", sm.GetNamespace(), cm["name"])
				if o == nil {
					t.Errorf("ServiceMonitor %s endpoint %d: CA from ConfigMap %q, which is not rendered", sm.GetName(), i, cm["name"])
					break
				}
				pemText := typed[corev1.ConfigMap](t, o).Data[cm["key"]]
				ca, err := parsePEMCert(pemText, false)
				if err != nil {
					t.Errorf("ConfigMap %s key %s: %v", cm["name"], cm["key"], err)
					break
				}
				for _, a := range m.ofKind("APIService") {
					b, _, _ := unstructured.NestedString(a.Object, "spec", "caBundle")
					if apiCA, err := parsePEMCert(b, true); err != nil || !apiCA.Equal(ca) {
						t.Errorf("APIService %s does not verify Gantry with the CA the ServiceMonitor uses", a.GetName())
					}
				}
			default:
				t.Errorf("ServiceMonitor %s endpoint %d: no CA (tlsConfig %v)", sm.GetName(), i, tls)
			}
		}
	}
}

// checkNetworkPolicy: the one NetworkPolicy selects Gantry's pods, restricts
// ingress only, and each rule admits named peers (never everyone) to
// Gantry's serving port only. It returns the ingress rules.
func checkNetworkPolicy(t *testing.T, m manifests) []networkingv1.NetworkPolicyIngressRule {
	t.Helper()
	nps := m.ofKind("NetworkPolicy")
	if len(nps) != 1 {
		t.Fatalf("%d NetworkPolicies, want 1", len(nps))
	}
	np := typed[networkingv1.NetworkPolicy](t, nps[0])
	d, c := deploymentOf(t, m, m.ofKind("Deployment")[0].GetName())
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) || np.Namespace != d.Namespace {
		t.Errorf("NetworkPolicy %s/%s selects %v, not only Gantry's pods (%s, %v)", np.Namespace, np.Name, np.Spec.PodSelector, d.Namespace, d.Spec.Template.Labels)
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) || len(np.Spec.Egress) > 0 {
		t.Errorf("NetworkPolicy policyTypes %v: want Ingress only (Gantry's own connections are not its business)", np.Spec.PolicyTypes)
	}
	serving := containerPort(c, intstr.FromString("https"))
	for i, r := range np.Spec.Ingress {
		if len(r.From) == 0 {
			t.Errorf("ingress rule %d admits every source", i)
		}
		for _, p := range r.From {
			switch {
			case p.IPBlock == nil && p.PodSelector == nil && p.NamespaceSelector == nil:
				t.Errorf("ingress rule %d: an empty peer", i)
			case p.IPBlock != nil:
				if _, n, err := net.ParseCIDR(p.IPBlock.CIDR); err != nil {
					t.Errorf("ingress rule %d: %v", i, err)
				} else if ones, _ := n.Mask.Size(); ones == 0 {
					t.Errorf("ingress rule %d: ipBlock %s admits every address", i, p.IPBlock.CIDR)
				}
			}
		}
		if len(r.Ports) == 0 {
			t.Errorf("ingress rule %d admits every port", i)
		}
		for _, p := range r.Ports {
			if p.Port == nil || containerPort(c, *p.Port) != serving || (p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP) {
				t.Errorf("ingress rule %d: port %v is not Gantry's serving port %d/TCP", i, p.Port, serving)
			}
		}
	}
	return np.Spec.Ingress
}

// testCAPEM is a CA certificate for values that take a caBundle.
var testCAPEM = func() string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "gantry test CA"},
		NotBefore:             time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2124, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}()

// indent prefixes every line of s, for a block scalar in a values file.
func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return prefix + strings.Join(lines, "\n"+prefix) + "\n"
}
