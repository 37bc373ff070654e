package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// TemplateDelims are the delimiters of every template in a rule file.
var TemplateDelims = [2]string{"<<", ">>"}

// QueryArgs are the values a metricsQuery template sees.
type QueryArgs struct {
	Series            string
	LabelMatchers     string
	LabelValuesByName map[string]string
	GroupBy           string
	GroupBySlice      []string
}

// ParseQueryTemplate parses a metricsQuery (or containerQuery/nodeQuery).
func ParseQueryTemplate(text string) (*template.Template, error) {
	t, err := template.New("metricsQuery").Delims(TemplateDelims[0], TemplateDelims[1]).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("not a valid template: %s", templateError(err))
	}
	return t, nil
}

// A query template is checked twice, with the same checks: here, when the
// rule file is loaded, rendered with sample arguments; and by adapter/rules
// for every request, rendered with the request's matchers. CheckPromQL and
// CheckLogQL are those checks of a rendered query.

// checkQueryTemplate renders the template with sample arguments and requires
// the result to parse as PromQL.
func checkQueryTemplate(text string, external bool) error {
	q, err := renderSample(text, external)
	if err != nil {
		return err
	}
	if err := CheckPromQL(q); err != nil {
		if errors.Is(err, errEmptyQuery) {
			return err
		}
		return fmt.Errorf("%w (rendered: %s)", err, q)
	}
	return nil
}

// errEmptyQuery is a template that renders nothing but white space.
var errEmptyQuery = errors.New("renders an empty query")

// CheckPromQL is the check of a rendered PromQL query: it is not empty and
// parses. The error names the parser's first line only.
func CheckPromQL(q string) error {
	if strings.TrimSpace(q) == "" {
		return errEmptyQuery
	}
	if _, err := ParsePromQL(q); err != nil {
		return fmt.Errorf("rendered query does not parse: %v", err)
	}
	return nil
}

// ParsePromQL parses a rendered query as Prometheus would, experimental
// functions included. The error is the first line of the parser's.
func ParsePromQL(q string) (parser.Expr, error) {
	expr, err := promql.ParseExpr(q)
	if err != nil {
		return nil, errors.New(firstLine(err.Error()))
	}
	return expr, nil
}

// renderSample parses a query template and renders it with sampleArgs.
func renderSample(text string, external bool) (string, error) {
	t, err := ParseQueryTemplate(text)
	if err != nil {
		return "", err
	}
	// Which labels LabelValuesByName holds depends on the rule's resources
	// and the request, so a lookup of a label the samples lack is not an
	// error here; fields that do not exist still are.
	t.Option("missingkey=zero")
	var b strings.Builder
	if err := t.Execute(&b, sampleArgs(external)); err != nil {
		return "", fmt.Errorf("template does not render: %s", templateError(err))
	}
	return b.String(), nil
}

// sampleArgs are the template values a query template is checked with: a
// request for two pods in a namespace, or an external one.
func sampleArgs(external bool) QueryArgs {
	if external {
		return QueryArgs{
			Series:            "sample_metric",
			LabelMatchers:     `namespace="default"`,
			LabelValuesByName: map[string]string{"namespace": "default"},
		}
	}
	return QueryArgs{
		Series:            "sample_metric",
		LabelMatchers:     `namespace="default",pod=~"a|b"`,
		LabelValuesByName: map[string]string{"namespace": "default", "pod": "a|b"},
		GroupBy:           "pod",
		GroupBySlice:      []string{"pod"},
	}
}

// CheckLogQLTemplate renders a logqlQuery template with sample arguments and
// checks what can be checked without a LogQL parser: the query is not empty,
// its brackets balance outside string literals, and it has a stream
// selector. Loki itself is the final judge (check-config --loki-url).
func CheckLogQLTemplate(text string, external bool) error {
	q, err := renderSample(text, external)
	if err != nil {
		return err
	}
	return CheckLogQL(q)
}

// CheckLogQL is the structural check of a rendered LogQL query.
func CheckLogQL(q string) error {
	if strings.TrimSpace(q) == "" {
		return errEmptyQuery
	}
	var stack []rune
	closing := map[rune]rune{')': '(', ']': '[', '}': '{'}
	selector := false
	for i := 0; i < len(q); i++ {
		c := rune(q[i])
		switch c {
		case '"', '`':
			// Skip a string literal: escapes only in double quotes.
			j := i + 1
			for ; j < len(q) && rune(q[j]) != c; j++ {
				if c == '"' && q[j] == '\\' {
					j++
				}
			}
			if j >= len(q) {
				return fmt.Errorf("unterminated string literal at offset %d (rendered: %s)", i, q)
			}
			i = j
		case '(', '[', '{':
			if c == '{' {
				selector = true
			}
			stack = append(stack, c)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != closing[c] {
				return fmt.Errorf("unbalanced %q at offset %d (rendered: %s)", c, i, q)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		return fmt.Errorf("unclosed %q (rendered: %s)", stack[len(stack)-1], q)
	}
	if !selector {
		return fmt.Errorf("no stream selector such as {app=\"web\"} (rendered: %s)", q)
	}
	return nil
}

// ParseLabelTemplate parses a resources.template, which renders a label name
// from .Group and .Resource. The error is text/template's own.
func ParseLabelTemplate(text string) (*template.Template, error) {
	return template.New("template").Delims(TemplateDelims[0], TemplateDelims[1]).Option("missingkey=error").Parse(text)
}

func checkLabelTemplate(text string) error {
	t, err := ParseLabelTemplate(text)
	if err != nil {
		return fmt.Errorf("not a valid template: %s", templateError(err))
	}
	// The template is also read backwards, to find the resource a label
	// names, so it may hold only text, one <<.Resource>> and at most one
	// <<.Group>>.
	count := map[string]int{}
	for _, n := range t.Tree.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
		case *parse.ActionNode:
			field := n.Pipe.String()
			if field != ".Group" && field != ".Resource" {
				return fmt.Errorf("only <<.Group>> and <<.Resource>> may appear in a label template, found <<%s>>", field)
			}
			count[field]++
		default:
			return fmt.Errorf("only <<.Group>> and <<.Resource>> may appear in a label template, found %s", n)
		}
	}
	if count[".Resource"] != 1 || count[".Group"] > 1 {
		return errors.New("must use <<.Resource>> once, and <<.Group>> at most once")
	}
	var b strings.Builder
	if err := t.Execute(&b, struct{ Group, Resource string }{"apps", "deployment"}); err != nil {
		return fmt.Errorf("template does not render with .Group and .Resource: %s", templateError(err))
	}
	if !model.LabelName(b.String()).IsValidLegacy() {
		return fmt.Errorf("renders %q, not a valid label name", b.String())
	}
	return nil
}

var (
	templateParseError = regexp.MustCompile(`^template: [^:]*:(\d+): `)
	templateExecError  = regexp.MustCompile(`^template: [^:]*:(\d+):(\d+): executing "[^"]*" at `)
	templateFieldError = regexp.MustCompile(`can't evaluate field \w+ in type \S+$`)
)

// templateError rewrites a text/template error without the template's
// internal name: "line 1: unclosed action", "line 1, column 18: <.Labels>:
// can't evaluate field Labels".
func templateError(err error) string {
	msg := err.Error()
	if m := templateExecError.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("line %s, column %s: %s", m[1], m[2], msg[len(m[0]):])
	} else if m := templateParseError.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("line %s: %s", m[1], msg[len(m[0]):])
	}
	if templateFieldError.MatchString(msg) {
		if strings.Contains(msg, "config.QueryArgs") {
			msg += " (fields: Series, LabelMatchers, LabelValuesByName, GroupBy, GroupBySlice)"
		} else {
			msg += " (fields: Group, Resource)"
		}
	}
	return msg
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
