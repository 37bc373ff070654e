package config

import (
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// problem is a schema violation at a YAML path such as
// ["rules", "[3]", "resources", "overrides", "pod", "resource"].
type problem struct {
	line int
	path []string
	msg  string
}

// splitSection splits a path into the part of the file it belongs to
// ("rules[3]", "externalRules[0]", "resourceRules.cpu", "resourceRules", or ""
// for the top level) and the field within it ("seriesFilters[0].is").
func splitSection(path []string) (section, field string) {
	n := 0
	switch {
	case len(path) >= 2 && (path[0] == "rules" || path[0] == "externalRules" || path[0] == "backends") && strings.HasPrefix(path[1], "["):
		n = 2
	case len(path) >= 2 && path[0] == "resourceRules" && (path[1] == "cpu" || path[1] == "memory"):
		n = 2
	case len(path) >= 1:
		n = 1
	}
	return joinPath(path[:n]), joinPath(path[n:])
}

func joinPath(path []string) string {
	var b strings.Builder
	for i, p := range path {
		if i > 0 && !strings.HasPrefix(p, "[") {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// sectionName is the display name of the rule a section names, decoded
// leniently from the YAML so that a rule with schema problems is still
// called by its name.
func sectionName(doc *yaml.Node, section string) string {
	key, idx, ok := strings.Cut(section, "[")
	if !ok || (key != "rules" && key != "externalRules" && key != "backends") {
		return ""
	}
	var i int
	if _, err := fmt.Sscanf(idx, "%d]", &i); err != nil {
		return ""
	}
	for k := 0; k+1 < len(doc.Content); k += 2 {
		if doc.Content[k].Value != key {
			continue
		}
		seq := doc.Content[k+1]
		if seq.Kind != yaml.SequenceNode || i >= len(seq.Content) {
			return ""
		}
		if key == "backends" {
			var b struct {
				Name string `yaml:"name"`
			}
			_ = seq.Content[i].Decode(&b) // best effort
			return b.Name
		}
		var r DiscoveryRule
		_ = seq.Content[i].Decode(&r) // best effort: fields that do not decode stay empty
		return r.DisplayName()
	}
	return ""
}

// maxCheckedNodes bounds the nodes strictCheck walks. Aliases and merge keys
// let a few hundred bytes of YAML stand for billions of nodes; a real rule
// file has a few thousand.
const maxCheckedNodes = 100_000

// checker is the state of one strictCheck walk.
type checker struct {
	// walking holds the mappings and lists being walked: an alias to one
	// of them (such as a rule merging itself with "<<: *rule") would never
	// end.
	walking map[*yaml.Node]bool
	nodes   int
	// exceeded is set once more than maxCheckedNodes were walked.
	exceeded *problem
}

// strictCheck walks a YAML node against the Go type it will decode into and
// reports unknown fields, duplicate keys and wrong kinds with their line and
// path, which the yaml package cannot do for nested nodes. It removes unknown
// and repeated keys from mappings, and bad reports whether n itself cannot be
// decoded, for the caller to replace it: what is left then decodes.
func (c *checker) strictCheck(n *yaml.Node, t reflect.Type, path []string) (problems []problem, bad bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	line := n.Line // of the use, for an alias
	alias := ""
	if n.Kind == yaml.AliasNode {
		alias = n.Value
		n = n.Alias
	}
	if c.exceeded != nil {
		return nil, true
	}
	if c.nodes++; c.nodes > maxCheckedNodes {
		c.exceeded = &problem{line: line, path: path, msg: fmt.Sprintf("the document expands to more than %d nodes through aliases and merge keys", maxCheckedNodes)}
		return nil, true
	}
	if n.Tag == "!!null" {
		return nil, false
	}
	wrong := func(format string, args ...any) ([]problem, bool) {
		return []problem{{line: line, path: path, msg: fmt.Sprintf(format, args...)}}, true
	}
	if c.walking[n] {
		return wrong("alias *%s refers to a mapping or list that contains it", alias)
	}
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		c.walking[n] = true
		defer delete(c.walking, n)
	}
	if reflect.PointerTo(t).Implements(reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()) {
		probe := reflect.New(t).Interface().(yaml.Unmarshaler)
		if err := n.Decode(probe); err != nil {
			return wrong("%v", err)
		}
		return nil, false
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		if n.Kind != yaml.MappingNode {
			return wrong("expected a mapping, got %s", kindName(n))
		}
		var out []problem
		seen := map[string]int{}
		kept := n.Content[:0:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			if first, dup := seen[key.Value]; dup {
				out = append(out, problem{line: key.Line, path: append(clone(path), key.Value), msg: fmt.Sprintf("defined twice (first at line %d)", first)})
				continue
			}
			if key.Tag == "!!merge" {
				ps, bad := c.checkMerge(val, t, path)
				out = append(out, ps...)
				if !bad {
					kept = append(kept, key, val)
				}
				continue
			}
			seen[key.Value] = key.Line
			valType := t
			if t.Kind() == reflect.Map {
				valType = t.Elem()
			} else if f, ok := fieldByTag(t, key.Value); ok {
				valType = f.Type
			} else {
				known := knownFields(t)
				msg := fmt.Sprintf("unknown field %q", key.Value)
				if s := suggest(key.Value, known); s != "" {
					msg += fmt.Sprintf(", did you mean %q?", s)
				}
				out = append(out, problem{line: key.Line, path: path, msg: msg + " (known fields: " + strings.Join(known, ", ") + ")"})
				continue
			}
			ps, bad := c.strictCheck(val, valType, append(clone(path), key.Value))
			out = append(out, ps...)
			if bad {
				val = nullNode(val)
			}
			kept = append(kept, key, val)
		}
		n.Content = kept
		return out, false
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return wrong("expected a list, got %s", kindName(n))
		}
		var out []problem
		for i, item := range n.Content {
			ps, bad := c.strictCheck(item, t.Elem(), append(clone(path), fmt.Sprintf("[%d]", i)))
			out = append(out, ps...)
			if bad {
				n.Content[i] = nullNode(item)
			}
		}
		return out, false
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return wrong("expected a string, got %s", kindName(n))
		}
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			return wrong("expected true or false, got %s", kindName(n))
		}
	}
	return nil, false
}

func nullNode(at *yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: at.Line, Column: at.Column}
}

// checkMerge checks the mappings merged into a mapping with "<<: *anchor"
// (or a list of anchors) as part of that mapping; keys written next to the
// merge key override merged ones, so they are not duplicates. bad reports a
// merge value that is not a mapping or a list of them, or that merges a
// mapping into itself.
func (c *checker) checkMerge(n *yaml.Node, t reflect.Type, path []string) ([]problem, bool) {
	line := n.Line
	use := n
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		return c.strictCheck(use, t, path)
	case yaml.SequenceNode:
		var out []problem
		anyBad := false
		for _, item := range n.Content {
			target := item
			if target.Kind == yaml.AliasNode {
				target = target.Alias
			}
			if target.Kind != yaml.MappingNode {
				return []problem{{line: line, path: path, msg: fmt.Sprintf("merge key \"<<\": expected a mapping or a list of mappings, got a list holding %s", kindName(target))}}, true
			}
			ps, bad := c.strictCheck(item, t, path)
			out = append(out, ps...)
			anyBad = anyBad || bad
		}
		return out, anyBad
	}
	return []problem{{line: line, path: path, msg: fmt.Sprintf("merge key \"<<\": expected a mapping or a list of mappings, got %s", kindName(n))}}, true
}

func clone(path []string) []string {
	return append([]string(nil), path...)
}

// suggest returns the known field closest to a misspelt one, if any is close.
func suggest(key string, known []string) string {
	best, bestDist := "", 3 // at most two edits away
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return k
		}
		if d := editDistance(strings.ToLower(key), strings.ToLower(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func knownFields(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" {
			out = append(out, name)
		}
	}
	return out
}
