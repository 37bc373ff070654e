package enforce

// The PromQL functions a namespaced rule may call: each reads only the
// series of the selectors in its arguments (or none, as time() and
// vector() do), so confining those selectors confines the function. A
// function Prometheus adds later is refused until it is judged and listed
// here; TestEveryParserFunctionIsJudged fails when the parser knows a
// function that is in neither list.
var allowedFunctions = setOf(
	// Element-wise arithmetic and rounding.
	"abs", "ceil", "floor", "round", "exp", "ln", "log2", "log10", "sqrt", "sgn",
	"clamp", "clamp_max", "clamp_min",
	"acos", "acosh", "asin", "asinh", "atan", "atanh",
	"cos", "cosh", "sin", "sinh", "tan", "tanh", "deg", "rad", "pi",
	"max_of", "min_of",
	// Time of the sample or of the query.
	"time", "timestamp", "start", "end", "range", "step", "start_timestamp",
	"day_of_month", "day_of_week", "day_of_year", "days_in_month",
	"hour", "minute", "month", "year",
	// Over a range of the argument's samples.
	"rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets",
	"predict_linear", "double_exponential_smoothing", "integral",
	"avg_over_time", "count_over_time", "last_over_time", "first_over_time",
	"max_over_time", "min_over_time", "sum_over_time", "quantile_over_time",
	"stddev_over_time", "stdvar_over_time", "mad_over_time", "present_over_time",
	"absent_over_time",
	"ts_of_first_over_time", "ts_of_last_over_time", "ts_of_max_over_time", "ts_of_min_over_time",
	// Native and classic histograms of the argument.
	"histogram_avg", "histogram_count", "histogram_sum", "histogram_fraction",
	"histogram_quantile", "histogram_quantiles", "histogram_stddev", "histogram_stdvar",
	// Shape of the argument: its labels (label_replace and label_join may
	// not write the namespace label, see checkNode), order, type.
	"label_replace", "label_join", "sort", "sort_desc", "sort_by_label", "sort_by_label_desc",
	"scalar", "vector",
	// absent() returns one series labelled from the argument's equality
	// matchers, which include the confined namespace.
	"absent",
)

// refusedFunctions are functions Prometheus knows that a namespaced rule
// may not call, with the reason given in the error.
var refusedFunctions = map[string]string{
	"info": "it joins the argument with target_info series that no selector of the query names, which could belong to any namespace",
}

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}
