package enforce

import "testing"

// BenchmarkPromQL is the cost a confined rule adds to each query it
// renders: the typical template of the shipped ConfigMap, rendered for a
// request about three pods.
func BenchmarkPromQL(b *testing.B) {
	const q = `sum by (pod) (rate(http_requests_total{namespace="team-a",pod=~"web-(?:1|2|3)"}[2m]))`
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PromQL(q, label, ns); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLogQL(b *testing.B) {
	const q = `sum by (pod) (rate({app="web", namespace="team-a", pod=~"web-(?:1|2|3)"} |= "error" [2m]))`
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LogQL(q, label, ns); err != nil {
			b.Fatal(err)
		}
	}
}
