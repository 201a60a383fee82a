package mcpserver

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// Small local models make the same few mistakes with tool arguments, and
// what they read back decides whether they recover. Arguments are checked
// here, against the same Go types the schemas come from, with messages a
// model can act on (never a Go struct dump), and coerced where the intent
// is unambiguous — enum values in any case, an array of target strings,
// "true"/"false", numeric strings, ports as numbers — each coercion named
// in a note on the result. Nothing here can widen a scan: the coerced
// arguments still go through the scan's own validation and the policy.

// argField is one argument of a tool, read from its Go type.
type argField struct {
	name     string
	kind     reflect.Kind // String, Bool or Int
	enum     []string
	min, max *int
	required bool
	example  string
}

func argFields(v any) []argField {
	var out []argField
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			a := argField{name: name, kind: ft.Kind(), required: !strings.Contains(opts, "omitempty")}
			if k := a.kind; k >= reflect.Int && k <= reflect.Int64 {
				a.kind = reflect.Int
			}
			if e := f.Tag.Get("enum"); e != "" {
				a.enum = strings.Split(e, "|")
			}
			for tag, dst := range map[string]**int{"min": &a.min, "max": &a.max} {
				if s := f.Tag.Get(tag); s != "" {
					n, _ := strconv.Atoi(s)
					*dst = &n
				}
			}
			if _, ex, ok := strings.Cut(f.Tag.Get("desc"), "Example: "); ok {
				a.example = ex
			}
			out = append(out, a)
		}
	}
	walk(reflect.TypeOf(v))
	return out
}

// argError is an argument refused, in words a model can act on.
type argError struct{ msg string }

func (e *argError) Error() string { return e.msg }

// normalize checks args against the fields of v's type and returns them
// coerced, with a note per coercion. maxOverride, when set, replaces a
// field's configured maximum (timeout_seconds).
func normalize(tool string, v any, args map[string]any, maxOverride map[string]int) (map[string]any, []string, error) {
	return normalizeFields(tool, argFields(v), args, maxOverride)
}

func normalizeFields(tool string, fields []argField, args map[string]any, maxOverride map[string]int) (map[string]any, []string, error) {
	byName := map[string]argField{}
	var names []string
	for _, f := range fields {
		byName[f.name] = f
		names = append(names, f.name)
	}
	out := make(map[string]any, len(args))
	var notes []string
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		val := args[k]
		f, ok := byName[k]
		if !ok {
			if near := closest(k, names); near != "" {
				return nil, nil, &argError{fmt.Sprintf("unknown argument %q — did you mean %q? %s takes: %s", k, near, tool, strings.Join(names, ", "))}
			}
			return nil, nil, &argError{fmt.Sprintf("unknown argument %q; %s takes: %s", k, tool, strings.Join(names, ", "))}
		}
		if n, ok := maxOverride[k]; ok {
			f.max = &n
		}
		got, note, err := coerce(f, val)
		if err != nil {
			return nil, nil, err
		}
		if note != "" {
			notes = append(notes, note)
		}
		out[k] = got
	}
	for _, f := range fields {
		if _, ok := out[f.name]; f.required && !ok {
			ex := f.example
			if ex == "" {
				ex = "…"
			}
			return nil, nil, &argError{fmt.Sprintf("missing required argument %q, e.g. {%q: %q}", f.name, f.name, ex)}
		}
	}
	return out, notes, nil
}

func coerce(f argField, val any) (any, string, error) {
	expected := func() error {
		switch f.kind {
		case reflect.Bool:
			return &argError{fmt.Sprintf("%s: expected true or false, got %s", f.name, describe(val))}
		case reflect.Int:
			return &argError{fmt.Sprintf("%s: expected a whole number%s, got %s", f.name, rangeText(f), describe(val))}
		}
		ex := ""
		if f.example != "" {
			ex = fmt.Sprintf(" such as %q", f.example)
		}
		return &argError{fmt.Sprintf("%s: expected a string%s, got %s", f.name, ex, describe(val))}
	}
	switch f.kind {
	case reflect.String:
		switch x := val.(type) {
		case string:
			return checkEnum(f, x)
		case []any:
			parts := make([]string, 0, len(x))
			for _, e := range x {
				switch e := e.(type) {
				case string:
					if f.name != "targets" {
						return nil, "", expected()
					}
					parts = append(parts, strings.TrimSpace(e))
				case float64:
					if f.name != "ports" || e != math.Trunc(e) {
						return nil, "", expected()
					}
					parts = append(parts, strconv.FormatFloat(e, 'f', 0, 64))
				default:
					return nil, "", expected()
				}
			}
			if len(parts) == 0 {
				return nil, "", expected()
			}
			sep := ", "
			if f.name == "ports" {
				sep = ","
			}
			s := strings.Join(parts, sep)
			return s, fmt.Sprintf("%s given as an array; read as %q", f.name, s), nil
		case float64:
			if f.name == "ports" && x == math.Trunc(x) {
				s := strconv.FormatFloat(x, 'f', 0, 64)
				return s, fmt.Sprintf("ports given as a number; read as %q", s), nil
			}
		}
		return nil, "", expected()
	case reflect.Bool:
		switch x := val.(type) {
		case bool:
			return x, "", nil
		case string:
			if b, err := strconv.ParseBool(strings.ToLower(x)); err == nil && (strings.EqualFold(x, "true") || strings.EqualFold(x, "false")) {
				return b, fmt.Sprintf("%s %q read as %v", f.name, x, b), nil
			}
		}
		return nil, "", expected()
	case reflect.Int:
		var n float64
		note := ""
		switch x := val.(type) {
		case float64:
			n = x
		case string:
			p, err := strconv.Atoi(strings.TrimSpace(x))
			if err != nil {
				return nil, "", expected()
			}
			n, note = float64(p), fmt.Sprintf("%s %q read as %d", f.name, x, p)
		default:
			return nil, "", expected()
		}
		if n != math.Trunc(n) {
			return nil, "", expected()
		}
		if (f.min != nil && n < float64(*f.min)) || (f.max != nil && n > float64(*f.max)) {
			return nil, "", &argError{fmt.Sprintf("%s: %v is out of range%s", f.name, n, rangeText(f))}
		}
		return int(n), note, nil
	}
	return val, "", nil
}

func checkEnum(f argField, s string) (any, string, error) {
	if len(f.enum) == 0 || slices.Contains(f.enum, s) {
		return s, "", nil
	}
	for _, e := range f.enum {
		if strings.EqualFold(e, s) {
			return e, fmt.Sprintf("%s %q read as %q", f.name, s, e), nil
		}
	}
	return nil, "", &argError{fmt.Sprintf("%s: %q is not one of %s", f.name, s, strings.Join(f.enum, ", "))}
}

func rangeText(f argField) string {
	switch {
	case f.min != nil && f.max != nil:
		return fmt.Sprintf(" from %d to %d", *f.min, *f.max)
	case f.min != nil:
		return fmt.Sprintf(" of at least %d", *f.min)
	case f.max != nil:
		return fmt.Sprintf(" of at most %d", *f.max)
	}
	return ""
}

// describe names a JSON value's kind for a message, with short values.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if len(x) > 40 {
			x = x[:37] + "..."
		}
		return fmt.Sprintf("the string %q", x)
	case bool:
		return fmt.Sprintf("the boolean %v", x)
	case float64:
		return fmt.Sprintf("the number %v", x)
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "a value of another type"
}

// closest is the known name nearest to k (a typo, a plural, a prefix),
// or "".
func closest(k string, names []string) string {
	best, bestD := "", 4
	lk := strings.ToLower(k)
	for _, n := range names {
		if strings.HasPrefix(n, lk) || strings.HasPrefix(lk, n) || strings.HasSuffix(lk, "_"+n) {
			return n
		}
		if d := distance(lk, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// distance is the Levenshtein distance of two short names.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// checked wraps a tool handler: its arguments are checked and coerced
// against v's type first; a refusal is an isError result in plain words,
// and each coercion becomes a note at the top of the result's text.
func (h *handlers) checked(tool string, v any, maxOverride map[string]int, next server.ToolHandlerFunc) server.ToolHandlerFunc {
	fields := argFields(v) // read from the type once, not per call
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		args, notes, err := normalizeFields(tool, fields, req.GetArguments(), maxOverride)
		if err != nil {
			h.Refused("validation")
			return mcp.NewToolResultError("Invalid arguments, nothing was run: " + err.Error()), nil
		}
		req.Params.Arguments = args
		res, err := next(ctx, req)
		if err != nil || res == nil || len(notes) == 0 {
			return res, err
		}
		var b strings.Builder
		for _, n := range notes {
			b.WriteString("note: " + n + "\n")
		}
		if len(res.Content) > 0 {
			if tc, ok := res.Content[0].(mcp.TextContent); ok {
				res.Content[0] = mcp.NewTextContent(b.String() + tc.Text)
				return res, nil
			}
		}
		res.Content = append([]mcp.Content{mcp.NewTextContent(b.String())}, res.Content...)
		return res, nil
	}
}
