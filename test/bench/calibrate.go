package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"syscall"
	"time"
)

// calibrate is the machine's state in one number: the CPU time (this
// thread's user+system, from getrusage) a fixed piece of work takes in the
// bench process, the median of three, in milliseconds. The work is what a
// metrics API server does per request, JSON over a list of 1,000 metric
// values, encoded and decoded. On a quiet machine it is a constant; on a
// busy one (other processes sharing the cores and their caches) the same
// work costs more CPU time, and so does Gantry's: a figure of CPU per
// request is comparable to another only beside this one.
func calibrate() float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	type item struct {
		Kind, Namespace, Name, Metric, Timestamp, Value string
		Window                                          int64
	}
	items := make([]item, 1000)
	for i := range items {
		items[i] = item{Kind: "Pod", Namespace: "bench", Name: fmt.Sprintf("web-%05d", i), Metric: metric,
			Timestamp: "2026-12-07T00:00:00Z", Value: fmt.Sprintf("%dm", 1000+i), Window: 30}
	}
	var out []item
	runs := make([]float64, 3)
	for r := range runs {
		t0 := threadCPU()
		for range 20 {
			data, err := json.Marshal(items)
			if err != nil {
				panic(err)
			}
			out = out[:0]
			if err := json.Unmarshal(data, &out); err != nil {
				panic(err)
			}
		}
		runs[r] = float64(threadCPU()-t0) / float64(time.Millisecond)
	}
	slices.Sort(runs)
	return round(runs[1], 1)
}

// threadCPU is the calling thread's CPU time (RUSAGE_THREAD).
func threadCPU() time.Duration {
	const rusageThread = 1
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
