// Package v1alpha1 holds the types of diagnostics.gantry.dev/v1alpha1, the
// read-only API through which Gantry explains what it serves: why an HPA
// gets the value it gets (HPAExplanation), what a raw metrics request would
// get (MetricExplanation), and how Gantry itself is doing (GantryStatus).
// Gantry computes them (adapter/explain) and serves them through the
// kube-apiserver (adapter/diagnostics.go); kubectl-gantry reads them.
//
// An explanation never holds a backend's URL, headers or credentials, nor
// series of another namespace than the one asked about.
package v1alpha1

import (
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of Gantry's diagnostics.
const GroupName = "diagnostics.gantry.dev"

// SchemeGroupVersion is the group and version the types are served as.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// Resource names, as they appear in the API paths.
const (
	ResourceHPAExplanations    = "hpaexplanations"
	ResourceMetricExplanations = "metricexplanations"
	ResourceStatuses           = "statuses"
	// StatusName is the one GantryStatus there is.
	StatusName = "gantry"
)

// Kinds.
const (
	KindHPAExplanation    = "HPAExplanation"
	KindMetricExplanation = "MetricExplanation"
	KindGantryStatus      = "GantryStatus"
)

// Query parameters of a metricexplanations request.
const (
	ParamType           = "type"           // pods, object or external
	ParamResource       = "resource"       // group-resource of the object(s), e.g. "pods", "deployments.apps"
	ParamName           = "name"           // the object, for type=object
	ParamLabelSelector  = "labelSelector"  // the objects, for type=pods
	ParamMetricSelector = "metricSelector" // the metric's label selector
)

// DiagnosisStatus is the verdict on a metric, an HPA or Gantry.
type DiagnosisStatus string

const (
	// StatusOK: the value is served and the HPA can act on it.
	StatusOK DiagnosisStatus = "OK"
	// StatusWarn: served, but something deserves attention (stale data,
	// a conflicting rule, some objects without a value, ...).
	StatusWarn DiagnosisStatus = "WARN"
	// StatusFail: the HPA cannot get a value for the metric, or Gantry
	// cannot serve it.
	StatusFail DiagnosisStatus = "FAIL"
)

// Diagnosis is the one-line verdict that ends every explanation.
type Diagnosis struct {
	Status DiagnosisStatus `json:"status"`
	// Reason says in one line what is wrong (or that nothing is).
	Reason string `json:"reason"`
	// Hint says what to do about it; empty when there is nothing to do.
	Hint string `json:"hint,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// HPAExplanation explains every metric of one HorizontalPodAutoscaler. Its
// name and namespace are the HPA's.
type HPAExplanation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// HPA is what the HPA asks for and what its status says.
	HPA HPASummary `json:"hpa"`
	// Metrics explains each entry of the HPA's spec.metrics, in order.
	Metrics []Explanation `json:"metrics"`
	// Replicas is what the HPA algorithm computes over all metrics (the
	// largest proposal, within min and max replicas); nil when no metric
	// yields a proposal.
	Replicas *ReplicaComputation `json:"replicas,omitempty"`
	// Diagnosis is the worst of the metrics' diagnoses, or a problem of
	// the HPA itself (its scale target, its selector).
	Diagnosis Diagnosis `json:"diagnosis"`
}

// HPASummary is what an HPA asks for and what it reported last.
type HPASummary struct {
	ScaleTargetRef autoscalingv2.CrossVersionObjectReference `json:"scaleTargetRef"`
	MinReplicas    int32                                     `json:"minReplicas"`
	MaxReplicas    int32                                     `json:"maxReplicas"`
	// Selector is the pod selector of the scale target (its scale
	// subresource's status.selector); empty when it could not be read.
	Selector string `json:"selector,omitempty"`
	// SelectorError says why the selector could not be read.
	SelectorError string `json:"selectorError,omitempty"`
	// CurrentReplicas and DesiredReplicas are the HPA's status.
	CurrentReplicas int32        `json:"currentReplicas"`
	DesiredReplicas int32        `json:"desiredReplicas"`
	LastScaleTime   *metav1.Time `json:"lastScaleTime,omitempty"`
	// Conditions are the HPA's status conditions (AbleToScale,
	// ScalingActive, ScalingLimited).
	Conditions []autoscalingv2.HorizontalPodAutoscalerCondition `json:"conditions,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// MetricExplanation explains one raw metrics request, as an HPA's metric
// would make it. Its name is the metric's, its namespace the request's.
type MetricExplanation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Explanation `json:",inline"`
}

// Explanation is the whole path of one metric request: API → rule →
// discovery → query → backend → objects → cache → value → what the HPA does.
// Sections after the first that failed are left out.
type Explanation struct {
	// Request is the metric asked for.
	Request MetricRequest `json:"request"`
	// API is the aggregated API that serves it.
	API APIInfo `json:"api"`
	// Rule is the rule that answers it; nil when none does.
	Rule *RuleInfo `json:"rule,omitempty"`
	// Discovery says whether discovery lists the metric.
	Discovery *DiscoveryInfo `json:"discovery,omitempty"`
	// Query is the query Gantry sends for the request, values filled in.
	Query *QueryInfo `json:"query,omitempty"`
	// Result is what the backend returned.
	Result *QueryResult `json:"result,omitempty"`
	// Objects are the objects asked about (Pods and Object metrics), each
	// with its value or why it has none.
	Objects *ObjectsInfo `json:"objects,omitempty"`
	// Cache says whether an HPA's request would be answered from the
	// value cache now, and how old that value is.
	Cache *CacheInfo `json:"cache,omitempty"`
	// Value is what Gantry serves for the request.
	Value *ServedValue `json:"value,omitempty"`
	// HPA is what the HPA does with the value (only in an HPAExplanation,
	// or when a target was given).
	HPA *HPAComputation `json:"hpa,omitempty"`
	// Diagnosis of this metric.
	Diagnosis Diagnosis `json:"diagnosis"`
}

// Metric types, as autoscaling/v2 names them.
const (
	MetricTypePods              = "Pods"
	MetricTypeObject            = "Object"
	MetricTypeExternal          = "External"
	MetricTypeResource          = "Resource"
	MetricTypeContainerResource = "ContainerResource"
)

// MetricRequest is a metric request, as the HPA controller would make it.
type MetricRequest struct {
	// Type is Pods, Object, External, Resource or ContainerResource.
	Type string `json:"type"`
	// Metric is the metric's name (for Resource: cpu or memory).
	Metric string `json:"metric"`
	// Namespace the request is made in.
	Namespace string `json:"namespace,omitempty"`
	// Resource is the group-resource of the object(s) described: "pods"
	// for Pods metrics, e.g. "deployments.apps" for Object metrics.
	Resource string `json:"resource,omitempty"`
	// Object is the described object's name (Object metrics).
	Object string `json:"object,omitempty"`
	// LabelSelector selects the pods (Pods and Resource metrics: the
	// scale target's selector).
	LabelSelector string `json:"labelSelector,omitempty"`
	// MetricSelector is the metric's own label selector.
	MetricSelector string `json:"metricSelector,omitempty"`
	// Container is the container of a ContainerResource metric.
	Container string `json:"container,omitempty"`
	// Path is the API path the HPA controller requests.
	Path string `json:"path,omitempty"`
}

// APIInfo is the aggregated API serving a metric and its APIService.
type APIInfo struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	// APIService is the APIService's name, e.g. v1beta2.custom.metrics.k8s.io.
	APIService string `json:"apiService"`
	// Found is false when the cluster has no such APIService.
	Found bool `json:"found"`
	// Available is the APIService's Available condition.
	Available bool `json:"available"`
	// Reason and Message are the Available condition's.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Service is namespace/name of the service behind the APIService
	// ("" for a local one); Gantry says whether it is Gantry.
	Service string `json:"service,omitempty"`
	// ServedByGantry is false when another adapter owns the APIService.
	ServedByGantry bool `json:"servedByGantry"`
	// Error says why the APIService could not be read.
	Error string `json:"error,omitempty"`
}

// Where a rule lives.
const (
	RuleOriginConfig     = "ConfigFile"
	RuleOriginMetricRule = "MetricRule"
)

// RuleInfo is the rule that answers a metric.
type RuleInfo struct {
	// ID names the rule: `rules[3] (http_requests)` for the config file,
	// `MetricRule team-a/web spec.rules[0] (http_requests)` for a
	// namespaced rule.
	ID string `json:"id"`
	// Origin is ConfigFile or MetricRule.
	Origin string `json:"origin"`
	// ConfigFile is the config file's path (origin ConfigFile).
	ConfigFile string `json:"configFile,omitempty"`
	// MetricRule is namespace/name of the MetricRule (origin MetricRule).
	MetricRule string `json:"metricRule,omitempty"`
	// Backend is the name of the backend the rule queries (never its URL).
	Backend string `json:"backend"`
	// Series is the series name the rule's query is rendered with.
	Series string `json:"series,omitempty"`
	// SeriesQuery is the rule's discovery selector.
	SeriesQuery string `json:"seriesQuery,omitempty"`
	// ResourceLabel is the series label the rule maps to the requested
	// resource (e.g. pod), and NamespaceLabel the one it maps to
	// namespaces.
	ResourceLabel  string `json:"resourceLabel,omitempty"`
	NamespaceLabel string `json:"namespaceLabel,omitempty"`
	// Window is the rule's window (windowSeconds of the values).
	Window *metav1.Duration `json:"window,omitempty"`
	// Conflicts name the other rules that yield the same metric; the one
	// above answers.
	Conflicts []string `json:"conflicts,omitempty"`
}

// DiscoveryInfo says what discovery knows of the metric.
type DiscoveryInfo struct {
	// Listed is whether the metric is in Gantry's metric list (what
	// ListAllMetrics and the HPA controller's requests are checked against).
	Listed bool `json:"listed"`
	// LastSuccess is when a relist last succeeded; nil before the first.
	LastSuccess *metav1.Time `json:"lastSuccess,omitempty"`
	// Interval is the relist interval.
	Interval *metav1.Duration `json:"interval,omitempty"`
	// Similar names discovered metrics of the same name for other
	// resources, or of similar names, when the metric is not listed.
	Similar []string `json:"similar,omitempty"`
}

// QueryInfo is a query Gantry sends.
type QueryInfo struct {
	// Backend is the backend's name (a config backend's name, or
	// prometheus, loki, local), never its URL.
	Backend string `json:"backend"`
	// Language is promql or logql.
	Language string `json:"language"`
	// Text is the query with the request's values filled in.
	Text string `json:"text"`
	// Form is "namespace" when one query answers every object of the
	// namespace, "objects" when the query names the objects, "external".
	Form string `json:"form,omitempty"`
	// Time is the query's evaluation time.
	Time metav1.Time `json:"time"`
}

// QueryResult is a backend's answer to a query.
type QueryResult struct {
	// Error says why the backend gave no answer (unavailable, rejected
	// the query); the rest is then empty.
	Error string `json:"error,omitempty"`
	// BadQuery is true when the backend rejected the query itself.
	BadQuery bool `json:"badQuery,omitempty"`
	// Series counts the series returned.
	Series int `json:"series"`
	// Samples are the first few series returned.
	Samples []Sample `json:"samples,omitempty"`
	// DurationMilliseconds is how long the query took.
	DurationMilliseconds int64 `json:"durationMilliseconds"`
	// Dropped counts samples dropped as NaN or infinite.
	Dropped int `json:"dropped,omitempty"`
}

// Sample is one series of a query result.
type Sample struct {
	Labels map[string]string `json:"labels"`
	// Value as Gantry serves it (a quantity; "NaN" or "+Inf" when the
	// backend returned one, which Gantry drops).
	Value string `json:"value"`
	// Age is how old the sample is, against the query's time.
	Age metav1.Duration `json:"age"`
	// Timestamp is the sample's own time.
	Timestamp metav1.Time `json:"timestamp"`
}

// ObjectsInfo are the objects a Pods or Object request is about.
type ObjectsInfo struct {
	// Selector matched the objects (Pods metrics).
	Selector string `json:"selector,omitempty"`
	// Matched counts the objects asked about, WithValue those with a value.
	Matched   int `json:"matched"`
	WithValue int `json:"withValue"`
	// Items are the objects (the first MaxObjects), those without a value
	// first.
	Items []ObjectValue `json:"items,omitempty"`
	// Omitted counts the objects left out of Items.
	Omitted int `json:"omitted,omitempty"`
}

// Why an object has no value.
const (
	// NoValueNoSeries: no series carries the object's name in the label the
	// rule maps to the resource.
	NoValueNoSeries = "NoSeries"
	// NoValueOtherLabel: series carry the name, but in another label
	// (pod_name where the rule maps pod).
	NoValueOtherLabel = "OtherLabel"
	// NoValueStale: the object's latest sample is older than the lookback
	// the query sees.
	NoValueStale = "Stale"
	// NoValueNotInResult: series of the object have recent samples, but
	// the query's result has no value for it (its range holds too few
	// samples, or the query filters it).
	NoValueNotInResult = "NotInResult"
	// NoValueNaN: the object's value was NaN or infinite and was dropped.
	NoValueNaN = "NaN"
	// NoValueNotFound: the object does not exist.
	NoValueNotFound = "NotFound"
	// NoValueQueryFailed: the backend gave no answer.
	NoValueQueryFailed = "QueryFailed"
)

// ObjectValue is one object and its value, or why it has none.
type ObjectValue struct {
	Name string `json:"name"`
	// Value served for the object; empty when it has none.
	Value string `json:"value,omitempty"`
	// Age of the sample, against the query's time.
	Age *metav1.Duration `json:"age,omitempty"`
	// Reason is one of NoSeries, OtherLabel, Stale, NotInResult, NaN,
	// NotFound, QueryFailed when the object has no value.
	Reason string `json:"reason,omitempty"`
	// Message says it in words: `series carry "pod_name", not "pod"`.
	Message string `json:"message,omitempty"`
}

// CacheInfo is the state of the value cache for the request.
type CacheInfo struct {
	// Enabled is false when --value-cache-ttl is 0.
	Enabled bool `json:"enabled"`
	// TTL is the cache's TTL.
	TTL *metav1.Duration `json:"ttl,omitempty"`
	// Hit is whether the HPA's request would now be answered from the
	// cache; Age is then how long ago its query was sent.
	Hit bool             `json:"hit"`
	Age *metav1.Duration `json:"age,omitempty"`
}

// ServedValue is what the API answers.
type ServedValue struct {
	// Found is false when the API answers NotFound (no value).
	Found bool `json:"found"`
	// Value is the value the HPA reads: the object's (Object), the
	// average over the pods with a value (Pods), the sum over the series
	// (External).
	Value string `json:"value,omitempty"`
	// Count is how many values it is computed from.
	Count int `json:"count"`
	// Timestamp is the oldest of their timestamps.
	Timestamp *metav1.Time `json:"timestamp,omitempty"`
	// Error is the API's error for the request, as the HPA controller
	// would see it.
	Error string `json:"error,omitempty"`
}

// HPA target types, as autoscaling/v2 names them.
const (
	TargetUtilization  = "Utilization"
	TargetValue        = "Value"
	TargetAverageValue = "AverageValue"
)

// HPAComputation is what the HPA controller does with a metric's value.
type HPAComputation struct {
	// TargetType is Utilization, AverageValue or Value.
	TargetType string `json:"targetType"`
	// Target and Current are the target and the current value of that type
	// (a percentage for Utilization, a quantity otherwise).
	Target  string `json:"target"`
	Current string `json:"current,omitempty"`
	// Ratio is current/target (usage ratio).
	Ratio *float64 `json:"ratio,omitempty"`
	// Tolerance is the HPA controller's tolerance (0.1 by default):
	// within 1±tolerance the replica count stays.
	Tolerance float64 `json:"tolerance"`
	// WithinTolerance is true when the ratio is within the tolerance.
	WithinTolerance bool `json:"withinTolerance"`
	// CurrentReplicas is the replica count the computation started from,
	// ReadyPods the pods it counted (Pods and Resource metrics).
	CurrentReplicas int32 `json:"currentReplicas"`
	ReadyPods       int32 `json:"readyPods,omitempty"`
	// Replicas is the replica count this metric proposes.
	Replicas *int32 `json:"replicas,omitempty"`
	// HPACurrent is the current value the HPA's own status reports for
	// this metric; empty when it reports none.
	HPACurrent string `json:"hpaCurrent,omitempty"`
	// Note explains a difference from the HPA controller's computation
	// (missing pods, unready pods, scale-down stabilization).
	Note string `json:"note,omitempty"`
}

// ReplicaComputation is the HPA's proposal over all its metrics.
type ReplicaComputation struct {
	// Proposed is the largest of the metrics' proposals.
	Proposed int32 `json:"proposed"`
	// Bounded is Proposed within min and max replicas.
	Bounded int32 `json:"bounded"`
	// HPADesired is the HPA's status.desiredReplicas.
	HPADesired int32 `json:"hpaDesired"`
	// Note explains why Bounded may differ from HPADesired
	// (stabilization window, scaling policies, the HPA not having run
	// since).
	Note string `json:"note,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// GantryStatus is how Gantry is doing: its config, discovery, backends and
// MetricRules. There is one, named gantry, cluster-scoped.
type GantryStatus struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Config      ConfigStatus       `json:"config"`
	Discovery   DiscoveryStatus    `json:"discovery"`
	Backends    []BackendStatus    `json:"backends,omitempty"`
	APIs        []APIInfo          `json:"apis,omitempty"`
	MetricRules *MetricRulesStatus `json:"metricRules,omitempty"`
	Diagnosis   Diagnosis          `json:"diagnosis"`
}

// ConfigStatus is the config file in use and the last reload.
type ConfigStatus struct {
	File string `json:"file"`
	// Rules and ExternalRules count the config file's rules in use.
	Rules         int `json:"rules"`
	ExternalRules int `json:"externalRules"`
	// LastReload is when the config in use was loaded (at start or by a
	// reload); LastReloadError is why the file's latest change was
	// rejected, "" when the file's content is the config in use.
	LastReload      *metav1.Time `json:"lastReload,omitempty"`
	LastReloadError string       `json:"lastReloadError,omitempty"`
}

// DiscoveryStatus is the state of discovery.
type DiscoveryStatus struct {
	Ready           bool             `json:"ready"`
	Message         string           `json:"message,omitempty"`
	LastSuccess     *metav1.Time     `json:"lastSuccess,omitempty"`
	Interval        *metav1.Duration `json:"interval,omitempty"`
	CustomMetrics   int              `json:"customMetrics"`
	ExternalMetrics int              `json:"externalMetrics"`
}

// BackendStatus is one backend, by name, and whether it answers.
type BackendStatus struct {
	Name string `json:"name"`
	Up   bool   `json:"up"`
	// Message says why it is down.
	Message string `json:"message,omitempty"`
}

// MetricRulesStatus summarises the namespaced rule resources.
type MetricRulesStatus struct {
	Enabled  bool                `json:"enabled"`
	Total    int                 `json:"total"`
	NotReady []MetricRuleProblem `json:"notReady,omitempty"`
}

// MetricRuleProblem is a MetricRule that is not Ready.
type MetricRuleProblem struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Reason    string `json:"reason,omitempty"`
	Message   string `json:"message,omitempty"`
}
