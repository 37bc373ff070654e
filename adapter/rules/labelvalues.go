package rules

import (
	"strconv"
	"strings"
	"text/template"

	"github.com/prometheus/prometheus/promql/parser"
)

// How LabelValuesByName is written into a query.
//
// prometheus-adapter gives a template, for each label of the request, its
// values joined with "|" and nothing else (pkg/naming/metrics_query.go,
// processQueryParts): "a|b" is meant for an =~ matcher, and a single value
// is the value itself, which an = matcher matches literally. Gantry
// escapes the values, so that a name can neither end the string literal
// nor widen the regexp: for =~ they become an escaped, compacted
// alternation (web-(?:1|2)). That form is wrong in an = or != matcher,
// which reads it literally: node-1.example.com would become
// node-1\.example\.com and match no series. So where the template pastes a
// value into the string of an = or != matcher, it gets the values joined
// with "|" as prometheus-adapter writes them (one value: the value), still
// escaped for the string literal; everywhere else the regexp form.
//
// Where each value lands is read from the query itself: the template is
// run once more with a placeholder for each label's value, and the result
// is split into tokens by PromQL's own lexer (for LogQL, see
// logqlLiteralStrings); a string literal right after = or != is an equality
// matcher's. The placeholders are then replaced by the values. The query
// is only written that way if, with the regexp form everywhere, it is the
// one the template renders with the values themselves, so a template that
// branches on a value, or text that looks like a placeholder, keeps the
// regexp form.

// placeholderStart and placeholderEnd enclose the index of a label in the
// placeholder rendering. Neither can come from a request (values are
// written with strconv.Quote, which escapes control characters) nor, in
// practice, from a template.
const (
	placeholderStart = '\x01'
	placeholderEnd   = '\x02'
)

// execute runs a query template for a request, writing LabelValuesByName
// as its context in the query needs (see above). literalStrings returns
// the byte ranges of the query's string literals that are the values of
// equality matchers.
func execute(t *template.Template, series string, ms []Matcher, groupBy []string, literalStrings func(string) [][2]int) (string, error) {
	args := queryArgs(series, ms, groupBy)
	var b strings.Builder
	if err := t.Execute(&b, args); err != nil {
		return "", err
	}
	q := b.String()
	if len(args.LabelValuesByName) == 0 {
		return q, nil
	}
	literal := make(map[string]string, len(ms))
	differs := false
	for _, m := range ms {
		l := string(m.Label)
		literal[l] = stringBody(strings.Join(m.Values, "|"))
		differs = differs || literal[l] != args.LabelValuesByName[l]
	}
	if !differs || !readsLabelValues(t) {
		return q, nil
	}

	// The template once more, with a placeholder for each label's value.
	labels := make([]string, 0, len(literal))
	placeholders := make(map[string]string, len(literal))
	for l := range args.LabelValuesByName {
		placeholders[l] = string(placeholderStart) + strconv.Itoa(len(labels)) + string(placeholderEnd)
		labels = append(labels, l)
	}
	marked := args
	marked.LabelValuesByName = placeholders
	b.Reset()
	if err := t.Execute(&b, marked); err != nil {
		return q, nil
	}
	withPlaceholders := b.String()
	literalRanges := literalStrings(withPlaceholders)

	var out, check strings.Builder
	rest := withPlaceholders
	for {
		i := strings.IndexByte(rest, placeholderStart)
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], placeholderEnd)
		if j < 0 {
			return q, nil
		}
		n, err := strconv.Atoi(rest[i+1 : i+j])
		if err != nil || n < 0 || n >= len(labels) {
			return q, nil
		}
		offset := len(withPlaceholders) - len(rest) + i
		value := args.LabelValuesByName[labels[n]]
		out.WriteString(rest[:i])
		check.WriteString(rest[:i])
		check.WriteString(value)
		if inRanges(literalRanges, offset) {
			value = literal[labels[n]]
		}
		out.WriteString(value)
		rest = rest[i+j+1:]
	}
	out.WriteString(rest)
	check.WriteString(rest)
	if check.String() != q {
		return q, nil
	}
	return out.String(), nil
}

func inRanges(ranges [][2]int, offset int) bool {
	for _, r := range ranges {
		if offset >= r[0] && offset < r[1] {
			return true
		}
	}
	return false
}

// promqlLiteralStrings returns the byte ranges of the string literals of a
// PromQL query that are the values of = or != matchers, as PromQL's lexer
// reads them; it stops at the first thing the lexer cannot read.
func promqlLiteralStrings(q string) [][2]int {
	var out [][2]int
	l := parser.Lex(q)
	var prev parser.ItemType
	for {
		var it parser.Item
		l.NextItem(&it)
		switch it.Typ {
		case parser.EOF, parser.ERROR:
			return out
		case parser.COMMENT:
			continue
		case parser.STRING:
			if prev == parser.EQL || prev == parser.NEQ {
				out = append(out, [2]int{int(it.Pos), int(it.Pos) + len(it.Val)})
			}
		}
		prev = it.Typ
	}
}

// logqlLiteralStrings returns the byte ranges of the string literals of a
// LogQL query that follow =, ==, != or |= (label matchers, label filters
// and line filters that compare literally), reading strings as CheckLogQL
// does.
func logqlLiteralStrings(q string) [][2]int {
	var out [][2]int
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c != '"' && c != '`' {
			continue
		}
		j := i + 1
		for ; j < len(q) && q[j] != c; j++ {
			if c == '"' && q[j] == '\\' {
				j++
			}
		}
		op := strings.TrimRight(q[:i], " \t\r\n")
		if strings.HasSuffix(op, "=") {
			out = append(out, [2]int{i, min(j+1, len(q))})
		}
		i = j
	}
	return out
}
