package kubelet

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
)

// Defaults, as metrics-server's.
const (
	DefaultInterval    = 15 * time.Second
	DefaultTimeout     = 10 * time.Second
	DefaultConcurrency = 100
	DefaultPort        = 10250
)

// DefaultPreferredAddressTypes is the order in which a node's addresses are
// tried in direct mode.
var DefaultPreferredAddressTypes = []string{
	string(corev1.NodeHostName),
	string(corev1.NodeInternalDNS),
	string(corev1.NodeInternalIP),
	string(corev1.NodeExternalDNS),
	string(corev1.NodeExternalIP),
}

// Options configure how kubelets are found and scraped. The zero value of a
// field means its default.
type Options struct {
	// Interval between the starts of two scrape rounds.
	Interval time.Duration
	// Timeout bounds each request to one kubelet; a round never lasts
	// longer than this plus queueing behind Concurrency.
	Timeout time.Duration
	// Concurrency is how many kubelets are scraped at once.
	Concurrency int

	// ViaAPIServerProxy scrapes through the kube-apiserver's node proxy
	// (/api/v1/nodes/<name>/proxy/...) instead of the kubelet's address.
	ViaAPIServerProxy bool
	// UseNodeStatusPort takes the kubelet port from the Node's
	// status.daemonEndpoints.kubeletEndpoint.port (direct mode).
	UseNodeStatusPort bool
	// Port is the kubelet port when UseNodeStatusPort is off or the Node
	// has no port in its status (direct mode).
	Port int
	// PreferredAddressTypes orders the Node address types tried (direct mode).
	PreferredAddressTypes []string
	// InsecureTLS skips verifying the kubelet's serving certificate (direct mode).
	InsecureTLS bool
	// CAFile verifies the kubelet's serving certificate (direct mode);
	// empty means the CA of the rest.Config.
	CAFile string

	// Cadvisor also scrapes /metrics/cadvisor into the Ingester.
	Cadvisor bool
}

// AddFlags registers the options as --kubelet-* flags with their defaults.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&o.Interval, "kubelet-scrape-interval", DefaultInterval,
		"How often every node's kubelet is scraped for CPU and memory (metrics.k8s.io); also the resolution of the rates served, as metrics-server's --metric-resolution.")
	fs.DurationVar(&o.Timeout, "kubelet-request-timeout", DefaultTimeout,
		"Deadline of one request to one kubelet; a slow or dead node is given up after it without delaying the others.")
	fs.IntVar(&o.Concurrency, "kubelet-scrape-concurrency", DefaultConcurrency,
		"How many kubelets are scraped at the same time.")
	fs.BoolVar(&o.ViaAPIServerProxy, "kubelet-via-apiserver-proxy", false,
		"Scrape kubelets through the kube-apiserver's node proxy (/api/v1/nodes/NAME/proxy/metrics/resource, needs RBAC on nodes/proxy) instead of connecting to each node's address.")
	fs.BoolVar(&o.UseNodeStatusPort, "kubelet-use-node-status-port", false,
		"Use the kubelet port in each Node's status.daemonEndpoints.kubeletEndpoint.port instead of --kubelet-port.")
	fs.IntVar(&o.Port, "kubelet-port", DefaultPort,
		"Kubelet port when --kubelet-use-node-status-port is off or a Node has no port in its status.")
	fs.StringSliceVar(&o.PreferredAddressTypes, "kubelet-preferred-address-types", DefaultPreferredAddressTypes,
		"Node address types to connect to, in order of preference (Hostname, InternalDNS, InternalIP, ExternalDNS, ExternalIP).")
	fs.BoolVar(&o.InsecureTLS, "kubelet-insecure-tls", false,
		"Do not verify the kubelets' serving certificates. For testing only.")
	fs.StringVar(&o.CAFile, "kubelet-certificate-authority", "",
		"CA file that signed the kubelets' serving certificates; default: the CA Gantry uses for the kube-apiserver.")
	fs.BoolVar(&o.Cadvisor, "kubelet-cadvisor", false,
		"Also scrape every kubelet's /metrics/cadvisor (container_* series) into the in-memory store, for custom metrics rules.")
}

// withDefaults fills zero fields.
func (o Options) withDefaults() Options {
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if len(o.PreferredAddressTypes) == 0 {
		o.PreferredAddressTypes = DefaultPreferredAddressTypes
	}
	return o
}

// validate reports every problem at once.
func (o Options) validate() error {
	var errs []error
	if o.Interval < 0 {
		errs = append(errs, fmt.Errorf("--kubelet-scrape-interval: must be positive, got %s", o.Interval))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("--kubelet-request-timeout: must be positive, got %s", o.Timeout))
	}
	if o.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("--kubelet-scrape-concurrency: must be at least 1, got %d", o.Concurrency))
	}
	if o.Port < 0 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("--kubelet-port: must be a port number (1-65535), got %d", o.Port))
	}
	for _, t := range o.PreferredAddressTypes {
		if !validAddressType(t) {
			errs = append(errs, fmt.Errorf("--kubelet-preferred-address-types: unknown address type %q (want one of %s)",
				t, strings.Join(DefaultPreferredAddressTypes, ", ")))
		}
	}
	if o.InsecureTLS && o.CAFile != "" {
		errs = append(errs, errors.New("--kubelet-insecure-tls and --kubelet-certificate-authority: choose one"))
	}
	return errors.Join(errs...)
}

func validAddressType(t string) bool {
	for _, d := range DefaultPreferredAddressTypes {
		if t == d {
			return true
		}
	}
	return false
}
