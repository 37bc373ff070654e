// Package filters holds the HTTP and log filters of Gantry's API server:
// request metrics and the metric selector check, which adapter puts in the
// handler chain inside authentication and authorization, and the klog filter
// that cmd/gantry installs before anything logs.
//
// Flow: API request → filters → custom-metrics-apiserver → provider.
package filters
