package mcpserver

import (
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
)

// Tool schemas are derived from the Go types that carry the arguments and
// results, so that each parameter and field is declared once, with its
// description and bounds in struct tags:
//
//	json:"name,omitempty"  the property name (omitempty: optional input)
//	desc:"..."             its description
//	enum:"a|b|c"           allowed values
//	min:"1" max:"600"      integer bounds
//	minLength maxLength    string bounds
//	default:"..."          the default, typed like the field
//
// The shape is the one LM Studio and the TypeScript SDK accept: every
// object inline (no $ref or $defs), no boolean subschemas, arrays that say
// their items, and an object at the top. mcp-go's WithInputSchema[T] is
// not used: it carries descriptions and enums but no bounds or defaults.

// schemaOf derives the JSON schema of v's type. As an input schema
// (input true) a property is required unless its json tag says omitempty;
// as an output schema every property is required (the values are always
// present, arrays never null). Input objects refuse unknown properties.
func schemaOf(v any, input bool) map[string]any {
	return typeSchema(reflect.TypeOf(v), input)
}

func typeSchema(t reflect.Type, input bool) map[string]any {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": typeSchema(t.Elem(), input)}
	case reflect.Struct:
		props := map[string]any{}
		required := []string{}
		addFields(t, input, props, &required)
		slices.Sort(required)
		o := map[string]any{"type": "object", "properties": props, "required": required}
		if input {
			o["additionalProperties"] = false // unknown arguments are refused
		}
		return o
	}
	// Only the kinds above occur in tool arguments and results; a test
	// holds that every tool schema is made of them.
	return map[string]any{"type": "string"}
}

func addFields(t reflect.Type, input bool, props map[string]any, required *[]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			addFields(f.Type, input, props, required)
			continue
		}
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		p := typeSchema(f.Type, input)
		if d := f.Tag.Get("desc"); d != "" {
			p["description"] = d
		}
		if e := f.Tag.Get("enum"); e != "" {
			p["enum"] = strings.Split(e, "|")
		}
		for _, k := range []string{"min", "max", "minLength", "maxLength"} {
			if v := f.Tag.Get(k); v != "" {
				n, _ := strconv.Atoi(v)
				key := map[string]string{"min": "minimum", "max": "maximum"}[k]
				if key == "" {
					key = k
				}
				p[key] = n
			}
		}
		if d, ok := f.Tag.Lookup("default"); ok {
			var v any = d
			switch p["type"] {
			case "boolean":
				v = d == "true"
			case "integer":
				v, _ = strconv.Atoi(d)
			}
			p["default"] = v
		}
		props[name] = p
		if !input || !strings.Contains(opts, "omitempty") {
			*required = append(*required, name)
		}
	}
}

// withInput publishes the input schema derived from v's type; set may
// adjust properties whose bounds come from the configuration.
func withInput(v any, set func(props map[string]any)) mcp.ToolOption {
	s := schemaOf(v, true)
	if set != nil {
		set(s["properties"].(map[string]any))
	}
	b, _ := json.Marshal(s) // maps of strings, numbers and slices: cannot fail
	return func(t *mcp.Tool) {
		t.InputSchema.Type = "" // NewTool's default; a raw schema replaces it
		t.RawInputSchema = b
	}
}

// withOutput publishes the output schema derived from v's type.
func withOutput(v any) mcp.ToolOption {
	b, _ := json.Marshal(schemaOf(v, false))
	return func(t *mcp.Tool) {
		t.OutputSchema.Type = ""
		t.RawOutputSchema = b
	}
}
