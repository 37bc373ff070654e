package metricrules

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/common/model"

	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/collectors/backend"
)

// seriesRecorder is the series lister of one MetricRule's registry. It
// lists with the namespace on the context (a backend with tenants then
// lists that namespace's tenant only, when the wiring's ListersFor puts
// it there), refuses a listing of more than maxSeries series (the
// Prometheus and Loki clients stop reading the answer there, so a rule
// matching a million series costs no more than maxSeries), and keeps
// what each series query listed until the controller has counted the
// objects with data (take). It is not a discovery.ShapeLister: the
// registry then asks for whole label sets, which the count of series and
// of objects needs.
type seriesRecorder struct {
	next      discovery.SeriesLister
	namespace string
	maxSeries int

	mu     sync.Mutex
	listed map[string][]model.LabelSet // by series query
}

var _ discovery.SeriesLister = (*seriesRecorder)(nil)

// TooManySeriesError is a MetricRule's series query that lists more
// series than --metricrule-max-series allows: its discovery fails, and
// no other rule is affected.
type TooManySeriesError struct {
	Max int
}

func (e *TooManySeriesError) Error() string {
	return fmt.Sprintf("the seriesQuery lists more than %d series (--metricrule-max-series); narrow it with more label matchers", e.Max)
}

func (l *seriesRecorder) Series(ctx context.Context, matchers []string, start, end time.Time) ([]model.LabelSet, error) {
	ctx = backend.WithMaxSeries(backend.WithNamespace(ctx, l.namespace), l.maxSeries)
	sets, err := l.next.Series(ctx, matchers, start, end)
	var limit *backend.LimitError
	if errors.As(err, &limit) && limit.Limit == "max_series" && l.maxSeries > 0 && int64(l.maxSeries) <= limit.Max {
		// The backend's own bound is above the MetricRule bound: say which
		// bound the team can act on.
		return nil, &TooManySeriesError{Max: l.maxSeries}
	}
	if err != nil {
		return nil, err
	}
	if l.maxSeries > 0 && len(sets) > l.maxSeries {
		return nil, &TooManySeriesError{Max: l.maxSeries}
	}
	if len(matchers) == 1 {
		l.mu.Lock()
		if l.listed == nil {
			l.listed = map[string][]model.LabelSet{}
		}
		l.listed[matchers[0]] = sets
		l.mu.Unlock()
	}
	return sets, nil
}

// take hands over what was listed since the last take.
func (l *seriesRecorder) take() map[string][]model.LabelSet {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.listed
	l.listed = nil
	return out
}
