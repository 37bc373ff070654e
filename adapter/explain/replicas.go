package explain

import (
	"math"
)

// The HPA controller's replica computation (pkg/controller/podautoscaler's
// ReplicaCalculator), for one metric, on values in milli-units as the
// controller reads them (Quantity.MilliValue), so that an explanation
// proposes the count the controller computes. What the controller does
// after (stabilization, scaling policies, min and max) is not here.

// DefaultTolerance is the HPA controller's default tolerance
// (--horizontal-pod-autoscaler-tolerance): while the usage ratio is
// within 1±tolerance, the replica count stays.
const DefaultTolerance = 0.1

// Tolerances are the HPA's tolerances for scaling down and up (its
// behavior's, when set, else DefaultTolerance).
type Tolerances struct{ Down, Up float64 }

// Within reports whether ratio keeps the replica count.
func (t Tolerances) Within(ratio float64) bool {
	return (1.0-t.Down) <= ratio && ratio <= (1.0+t.Up)
}

// Proposal is one metric's computation.
type Proposal struct {
	// Replicas is the proposed replica count.
	Replicas int32
	// Ratio is the usage ratio (current over target).
	Ratio float64
	// Usage is the current value as the HPA's status reports it: the
	// average per pod (milli-units), or the utilization percentage.
	Usage int64
	// Within is true when Ratio is within the tolerance.
	Within bool
}

// PodsAverage is the computation for a Pods metric with an AverageValue
// target (and a Resource metric with one): the ratio is the pods' average
// over the target. values are the milli-values of the ready pods that have
// one; missing counts the ready pods that have none. Missing pods are
// assumed at the target when the others ask to scale down and at zero when
// they ask to scale up; a result that then changes direction or falls
// within the tolerance keeps currentReplicas.
func PodsAverage(values []int64, missing int, target int64, currentReplicas int32, tol Tolerances) Proposal {
	if len(values) == 0 || target <= 0 {
		return Proposal{Replicas: currentReplicas}
	}
	usage := sum(values) / int64(len(values))
	ratio := float64(usage) / float64(target)
	p := Proposal{Ratio: ratio, Usage: usage, Within: tol.Within(ratio)}
	if missing == 0 {
		p.Replicas = currentReplicas
		if !p.Within {
			p.Replicas = int32(math.Ceil(ratio * float64(len(values))))
		}
		return p
	}
	var assumed int64
	if ratio < 1 {
		assumed = target
	}
	// At a ratio of exactly 1 the controller assumes nothing for them.
	total, n := sum(values), len(values)
	if ratio != 1 {
		total += assumed * int64(missing)
		n += missing
	}
	newRatio := float64(total/int64(n)) / float64(target)
	p.Replicas = currentReplicas
	if tol.Within(newRatio) || (ratio < 1 && newRatio > 1) || (ratio > 1 && newRatio < 1) {
		return p
	}
	r := int32(math.Ceil(newRatio * float64(n)))
	if (newRatio < 1 && r > currentReplicas) || (newRatio > 1 && r < currentReplicas) {
		return p
	}
	p.Replicas = r
	return p
}

// Value is the computation for an Object or External metric with a Value
// target: the ratio is the value over the target, applied to the ready pods
// (to 1 when the target is scaled to zero).
func Value(usage, target int64, currentReplicas, readyPods int32, tol Tolerances) Proposal {
	if target <= 0 {
		return Proposal{Replicas: currentReplicas}
	}
	ratio := float64(usage) / float64(target)
	p := Proposal{Ratio: ratio, Usage: usage, Within: tol.Within(ratio), Replicas: currentReplicas}
	switch {
	case currentReplicas == 0:
		p.Replicas = int32(math.Ceil(ratio))
	case !p.Within:
		p.Replicas = int32(math.Ceil(ratio * float64(readyPods)))
	}
	return p
}

// AverageValue is the computation for an Object or External metric with an
// AverageValue target: the value is shared among the current replicas;
// outside the tolerance the proposal is value over target. Usage is the
// value per replica.
func AverageValue(usage, target int64, statusReplicas int32, tol Tolerances) Proposal {
	if target <= 0 || statusReplicas <= 0 {
		return Proposal{Replicas: statusReplicas}
	}
	ratio := float64(usage) / (float64(target) * float64(statusReplicas))
	p := Proposal{Ratio: ratio, Within: tol.Within(ratio), Replicas: statusReplicas}
	if !p.Within {
		p.Replicas = int32(math.Ceil(float64(usage) / float64(target)))
	}
	p.Usage = int64(math.Ceil(float64(usage) / float64(statusReplicas)))
	return p
}

// Utilization is the computation for a Resource metric with a Utilization
// target, without missing pods: utilization is the pods' total usage over
// their total requests, in whole percent; the ratio is that over the target
// percentage, applied to the pods with a value.
func Utilization(usage, requests []int64, targetPercent int32, currentReplicas int32, tol Tolerances) Proposal {
	u, r := sum(usage), sum(requests)
	if r <= 0 || targetPercent <= 0 || len(usage) == 0 {
		return Proposal{Replicas: currentReplicas}
	}
	utilization := int64(int32(u * 100 / r))
	ratio := float64(utilization) / float64(targetPercent)
	p := Proposal{Ratio: ratio, Usage: utilization, Within: tol.Within(ratio), Replicas: currentReplicas}
	if !p.Within {
		p.Replicas = int32(math.Ceil(ratio * float64(len(usage))))
	}
	return p
}

func sum(vs []int64) int64 {
	var s int64
	for _, v := range vs {
		s += v
	}
	return s
}
