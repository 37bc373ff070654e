// Package backend is what Gantry's query backends (collectors/prometheus,
// collectors/loki) share around their HTTP calls: shared in-flight queries,
// bounded concurrency and deadlines (Calls), the backend self-metrics
// (Metrics), the error of a failed call (Error), the bounds of an answer
// (Limits), the HTTP client with its redirect policy (NewHTTPClient) and
// the connection flags (HTTPFlags).
//
// It sits below the backends' clients in the flow: they import it, and it
// knows nothing of PromQL, LogQL, rules or Kubernetes.
package backend
