package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"

	yaml3 "go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// decode turns the YAML of a cloud config into a File. Only YAML that
// cannot be read at all stops it: a key given twice, an unknown field or a
// value of the wrong type is a problem with its field path, the value is
// left out, and decoding goes on so that validation reports the rest of the
// file too. typeErrs are the problems whose value was left out: validation
// errors at or below their paths are consequences, not further problems.
func decode(data []byte) (f File, problems field.ErrorList, typeErrs []string, err error) {
	// sigs.k8s.io/yaml reads YAML as the rest of Kubernetes does (a
	// repeated key keeps its last value here; duplicateKeys reports it).
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return File{}, nil, nil, fmt.Errorf("decoding YAML: %w", err)
	}
	problems = duplicateKeys(data)

	var tree any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		return File{}, nil, nil, fmt.Errorf("decoding YAML: %w", err)
	}
	p := pruner{}
	if _, keep := p.prune(tree, reflect.TypeFor[File](), nil); !keep {
		return File{}, nil, nil, fmt.Errorf("decoding YAML: the file must be a mapping of the fields %s", strings.Join(fieldNames(reflect.TypeFor[File]()), ", "))
	}
	problems = append(problems, p.problems...)

	clean, err := json.Marshal(tree)
	if err != nil {
		return File{}, nil, nil, fmt.Errorf("decoding YAML: %w", err)
	}
	// Every value left has the right type, so this cannot fail; if it
	// does, say so rather than validate half a file.
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(clean, &f); err != nil {
		return File{}, nil, nil, fmt.Errorf("decoding YAML: %w", err)
	}
	return f, problems, p.dropped, nil
}

// pruner walks a decoded JSON tree along the Go type it decodes into,
// reporting and removing unknown fields and values of the wrong type.
type pruner struct {
	problems field.ErrorList
	dropped  []string // paths of the values removed for their type
}

// prune checks v against t; keep is false when v itself has the wrong type
// and must be removed by the caller. Mappings are changed in place.
func (p *pruner) prune(v any, t reflect.Type, path *field.Path) (replacement any, keep bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return nil, true
	}
	if isUnmarshaler(t) {
		return v, p.leaf(v, t, path)
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return p.wrongType(v, path, "must be a mapping of the fields "+strings.Join(fieldNames(t), ", "))
		}
		fields := jsonFields(t)
		for _, key := range sortedKeys(m) {
			sf, known := fields[key]
			if !known {
				delete(m, key)
				p.problems = append(p.problems, unknownField(key, path, t))
				continue
			}
			if nv, keep := p.prune(m[key], sf.Type, child(path, key)); keep {
				m[key] = nv
			} else {
				delete(m, key)
			}
		}
		return m, true
	case reflect.Slice:
		s, ok := v.([]any)
		if !ok {
			return p.wrongType(v, path, "must be a list")
		}
		for i, e := range s {
			// A removed element becomes null, so that the indices of the
			// others, and the paths validation reports, stay as written.
			if nv, keep := p.prune(e, t.Elem(), index(path, i)); keep {
				s[i] = nv
			} else {
				s[i] = nil
			}
		}
		return s, true
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return p.wrongType(v, path, "must be a mapping")
		}
		for _, key := range sortedKeys(m) {
			if nv, keep := p.prune(m[key], t.Elem(), path.Key(key)); keep {
				m[key] = nv
			} else {
				delete(m, key)
			}
		}
		return m, true
	case reflect.Interface:
		return v, true
	default:
		return v, p.leaf(v, t, path)
	}
}

// leaf decodes a scalar (or a type that decodes itself) into t to see
// whether it fits.
func (p *pruner) leaf(v any, t reflect.Type, path *field.Path) bool {
	js, err := json.Marshal(v)
	if err == nil {
		err = sigsjson.UnmarshalCaseSensitivePreserveInts(js, reflect.New(t).Interface())
	}
	if err == nil {
		return true
	}
	_, keep := p.wrongType(v, path, expected(t, err))
	return keep
}

func (p *pruner) wrongType(v any, path *field.Path, detail string) (any, bool) {
	p.problems = append(p.problems, field.TypeInvalid(path, v, detail))
	p.dropped = append(p.dropped, path.String())
	return nil, false
}

// expected says what a value of type t looks like in the file.
func expected(t reflect.Type, err error) string {
	switch {
	case t == reflect.TypeFor[metav1.Duration]():
		return "must be a duration such as 500ms, 90s or 2m"
	case isUnmarshaler(t):
		return "cannot be read: " + err.Error()
	}
	switch t.Kind() {
	case reflect.String:
		return "must be a string (quote it if it looks like a number or a boolean)"
	case reflect.Bool:
		return "must be true or false"
	case reflect.Int, reflect.Int64:
		return "must be a whole number"
	case reflect.Int8, reflect.Int16, reflect.Int32:
		bits := t.Bits()
		return fmt.Sprintf("must be a whole number from %d to %d", int64(-1)<<(bits-1), int64(math.MaxInt64>>(64-bits)))
	case reflect.Uint, reflect.Uint64:
		return "must be a whole number from 0"
	case reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return fmt.Sprintf("must be a whole number from 0 to %d", uint64(math.MaxUint64>>(64-t.Bits())))
	case reflect.Float32, reflect.Float64:
		return "must be a number"
	}
	return "has the wrong type: " + err.Error()
}

func isUnmarshaler(t reflect.Type) bool {
	u := reflect.TypeFor[json.Unmarshaler]()
	return t.Implements(u) || reflect.PointerTo(t).Implements(u)
}

// unknownField reports a key that t does not have, with the fields it has
// and the one the operator probably meant.
func unknownField(key string, parent *field.Path, t reflect.Type) *field.Error {
	names := fieldNames(t)
	where := "the top level"
	if parent != nil {
		where = parent.String()
	}
	path := child(parent, key)
	detail := fmt.Sprintf("unknown field %q; %s takes %s", path.String(), where, strings.Join(names, ", "))
	if guess := closest(key, names); guess != "" {
		detail += fmt.Sprintf(" (did you mean %q?)", guess)
	}
	return field.Forbidden(path, detail)
}

// closest returns the name that key is a likely misspelling of, or "".
func closest(key string, names []string) string {
	best, bestDist := "", 3 // at most two edits
	for _, n := range names {
		if strings.EqualFold(n, key) {
			return n
		}
		if d := editDistance(strings.ToLower(key), strings.ToLower(n)); d < bestDist && d < len(n) {
			best, bestDist = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between two short strings.
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

// jsonFields maps the field names of struct t in the file (its json tags)
// to its fields, with the fields of embedded structs promoted.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for _, sf := range reflect.VisibleFields(t) {
		if !sf.IsExported() || len(sf.Index) > 1 && !promoted(t, sf) {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			continue // its fields are visible on their own
		}
		if name == "" {
			name = sf.Name
		}
		out[name] = sf
	}
	return out
}

// promoted tells whether a nested field comes from embedded structs
// without json names, as encoding/json promotes them.
func promoted(t reflect.Type, sf reflect.StructField) bool {
	for i := range sf.Index[:len(sf.Index)-1] {
		outer := t.FieldByIndex(sf.Index[:i+1])
		if name, _, _ := strings.Cut(outer.Tag.Get("json"), ","); !outer.Anonymous || name != "" {
			return false
		}
	}
	return true
}

// fieldNames lists the fields of struct t as the file names them, in
// declaration order.
func fieldNames(t reflect.Type) []string {
	fields := jsonFields(t)
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		return slices.Compare(fields[a].Index, fields[b].Index)
	})
	return names
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func child(path *field.Path, name string) *field.Path {
	if path == nil {
		return field.NewPath(name)
	}
	return path.Child(name)
}

func index(path *field.Path, i int) *field.Path {
	if path == nil {
		return field.NewPath("").Index(i)
	}
	return path.Index(i)
}

// duplicateKeys reports every key given twice in one mapping. YAML allows
// neither, but a plain decoder keeps the last value silently, and a strict
// one stops at the first, hiding every other problem of the file.
func duplicateKeys(data []byte) field.ErrorList {
	var doc yaml3.Node
	if err := yaml3.Unmarshal(data, &doc); err != nil {
		// The decoder that reads the file accepted it; its judgement holds.
		return nil
	}
	var errs field.ErrorList
	var walk func(n *yaml3.Node, path *field.Path)
	walk = func(n *yaml3.Node, path *field.Path) {
		switch n.Kind {
		case yaml3.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml3.MappingNode:
			firstLine := map[string]int{}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if k.Tag == "!!merge" {
					continue // keys merged in may be overridden
				}
				kp := child(path, k.Value)
				if line, dup := firstLine[k.Value]; dup {
					errs = append(errs, &field.Error{Type: field.ErrorTypeDuplicate, Field: kp.String(), BadValue: field.OmitValueType{},
						Detail: fmt.Sprintf("set at line %d and again at line %d; give it once", line, k.Line)})
					continue
				}
				firstLine[k.Value] = k.Line
				walk(v, kp)
			}
		case yaml3.SequenceNode:
			for i, c := range n.Content {
				walk(c, index(path, i))
			}
		}
	}
	walk(&doc, nil)
	return errs
}
