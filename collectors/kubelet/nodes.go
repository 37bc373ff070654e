package kubelet

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// trimNode is the informer's transform: it keeps only what scraping needs
// (name, addresses, kubelet port), so 1,000 Nodes with their images,
// conditions and labels cost a few hundred bytes each instead of tens of KB.
func trimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil // a DeletedFinalStateUnknown tombstone
	}
	addrs := make([]corev1.NodeAddress, len(n.Status.Addresses))
	copy(addrs, n.Status.Addresses)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:            n.Name,
			UID:             n.UID,
			ResourceVersion: n.ResourceVersion,
		},
		Status: corev1.NodeStatus{
			Addresses: addrs,
			DaemonEndpoints: corev1.NodeDaemonEndpoints{
				KubeletEndpoint: corev1.DaemonEndpoint{Port: n.Status.DaemonEndpoints.KubeletEndpoint.Port},
			},
		},
	}, nil
}

// endpoints builds the URL of a kubelet path (e.g. /metrics/resource) of a
// node, directly or through the kube-apiserver's node proxy.
type endpoints struct {
	proxy         *url.URL // the kube-apiserver's base URL in proxy mode, else nil
	addressTypes  []corev1.NodeAddressType
	useStatusPort bool
	port          int
}

func newEndpoints(o Options, apiServer *url.URL) *endpoints {
	e := &endpoints{useStatusPort: o.UseNodeStatusPort, port: o.Port}
	if o.ViaAPIServerProxy {
		e.proxy = apiServer
	}
	for _, t := range o.PreferredAddressTypes {
		e.addressTypes = append(e.addressTypes, corev1.NodeAddressType(t))
	}
	return e
}

// url returns the URL of path (starting with /) on node n's kubelet.
func (e *endpoints) url(n *corev1.Node, path string) (string, error) {
	if e.proxy != nil {
		u := *e.proxy
		// Node names are DNS subdomains; escaping only guards the path shape.
		u.Path = strings.TrimSuffix(u.Path, "/") + "/api/v1/nodes/" + url.PathEscape(n.Name) + "/proxy" + path
		u.RawPath = ""
		return u.String(), nil
	}
	host, err := e.address(n)
	if err != nil {
		return "", err
	}
	port := e.port
	if p := n.Status.DaemonEndpoints.KubeletEndpoint.Port; e.useStatusPort && p > 0 {
		port = int(p)
	}
	return "https://" + net.JoinHostPort(host, strconv.Itoa(port)) + path, nil
}

// address is the node's first address of the most preferred type.
func (e *endpoints) address(n *corev1.Node) (string, error) {
	for _, t := range e.addressTypes {
		for _, a := range n.Status.Addresses {
			if a.Type == t && a.Address != "" {
				return a.Address, nil
			}
		}
	}
	return "", fmt.Errorf("node %q has no address of the types %v", n.Name, e.addressTypes)
}
