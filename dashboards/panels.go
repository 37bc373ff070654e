package dashboards

import (
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Every panel and query variable reads from the Prometheus the dashboard
// user picks in the "datasource" variable; nothing names a data source or a
// cluster.
var datasource = common.DataSourceRef{Type: ptr("prometheus"), Uid: ptr("${datasource}")}

// Units Grafana knows (see units in the SDK) that the panels use.
const (
	unitNone    = "none"
	unitShort   = "short"
	unitReqps   = "reqps"
	unitOpm     = "opm" // operations per minute
	unitSeconds = "s"
	unitBytes   = "bytes"
	unitRatio   = "percentunit" // 0.0-1.0
)

func newDashboard(uid, title, description string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{Tag}).
		// Provisioned from code: edits in the UI would be lost on the
		// next update.
		Readonly().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Time("now-1h", "now").
		Refresh("30s").
		Link(dashboard.NewDashboardLinkBuilder("Gantry").
			Type(dashboard.DashboardLinkTypeDashboards).
			Icon("external link").
			Tags([]string{Tag}).
			AsDropdown(true).
			IncludeVars(true).
			KeepTime(true)).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").
			Label("Data source").
			Type("prometheus"))
}

// queryVariable is a variable whose options come from a Prometheus query,
// refreshed when the time range changes (series come and go).
func queryVariable(name, label, query string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(datasource).
		Query(dashboard.StringOrMap{String: ptr(query)}).
		Definition(query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
}

// multiVariable is a queryVariable that allows several values and "All";
// queries must match it with =~. "All" is sent as .+ rather than the
// alternation of every value, which keeps the query short.
func multiVariable(name, label, query string) *dashboard.QueryVariableBuilder {
	return queryVariable(name, label, query).
		Multi(true).
		IncludeAll(true).
		AllValue(".+").
		Current(dashboard.VariableOption{
			Text:  dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
			Value: dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
		})
}

// query is one PromQL target of a panel.
type query struct {
	expr, legend string
}

func q(expr, legend string) query { return query{expr: expr, legend: legend} }

// targets turns queries into SDK targets with ref ids A, B, ...
func targets(instant bool, qs []query) []cog.Builder[variants.Dataquery] {
	var out []cog.Builder[variants.Dataquery]
	for i, qu := range qs {
		b := prometheus.NewDataqueryBuilder().
			Expr(qu.expr).
			LegendFormat(qu.legend).
			RefId(string(rune('A' + i))).
			Datasource(datasource).
			EditorMode(prometheus.QueryEditorModeCode)
		if instant {
			b.Instant()
		} else {
			b.Range()
		}
		out = append(out, b)
	}
	return out
}

// graph is a time series panel, half the width of the dashboard.
func graph(title, description, unit string, qs ...query) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource).
		Targets(targets(false, qs)).
		Unit(unit).
		Height(8).
		Span(12).
		LineWidth(1).
		FillOpacity(10).
		ShowPoints(common.VisibilityModeNever).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true)).
		Tooltip(common.NewVizTooltipOptionsBuilder().
			Mode(common.TooltipDisplayModeMulti).
			Sort(common.SortOrderDescending))
}

// single is a stat panel showing the last value of an instant query.
func single(title, description, unit string, qs ...query) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource).
		Targets(targets(true, qs)).
		Unit(unit).
		Height(4).
		Span(6).
		GraphMode(common.BigValueGraphModeNone).
		ColorMode(common.BigValueColorModeValue).
		Orientation(common.VizOrientationAuto).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}))
}

// thresholds colours a value green, then by each step from its value up.
func thresholds(steps ...dashboard.Threshold) *dashboard.ThresholdsConfigBuilder {
	ts := append([]dashboard.Threshold{{Color: "green"}}, steps...)
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(ts)
}

// at is a threshold step: the colour from value v up.
func at(v float64, color string) dashboard.Threshold {
	return dashboard.Threshold{Value: &v, Color: color}
}

// states is a state timeline of 0/1 series, shown as false/true.
func states(title, description string, qs ...query) *statetimeline.PanelBuilder {
	return statetimeline.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource).
		Targets(targets(false, qs)).
		Height(8).
		Span(24).
		ShowValue(common.VisibilityModeNever).
		MergeValues(true).
		Mappings([]dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{
			Type: dashboard.MappingTypeValueToText,
			Options: map[string]dashboard.ValueMappingResult{
				"0": {Text: ptr("false"), Color: ptr("transparent"), Index: ptr(int32(0))},
				"1": {Text: ptr("true"), Color: ptr("green"), Index: ptr(int32(1))},
			},
		}}})
}

// sel renders a series selector: sel("up", `job=~"$job"`) is up{job=~"$job"}.
func sel(metric string, matchers ...string) string {
	var ms []string
	for _, m := range matchers {
		if m != "" {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return metric
	}
	return metric + "{" + strings.Join(ms, ", ") + "}"
}

// rate is rate(selector[$__rate_interval]); Grafana picks the window from
// the scrape interval and the panel's resolution.
func rate(metric string, matchers ...string) string {
	return "rate(" + sel(metric, matchers...) + "[$__rate_interval])"
}

func ptr[T any](v T) *T { return &v }
