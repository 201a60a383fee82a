package config

import "strings"

// SettingsTable renders the settings table of docs/configuration.md (the
// block between <!-- settings:begin --> and <!-- settings:end -->) from
// the one table of settings, in its order, with the built-in defaults.
func SettingsTable() string {
	var b strings.Builder
	b.WriteString("| key | flag | environment | default | meaning |\n|---|---|---|---|---|\n")
	d := Default()
	for _, s := range settings {
		def := s.def
		if def == "" {
			def = "empty"
			if v := current(s.ptr(&d)); v != "" {
				def = "`" + v + "`"
			}
		}
		doc := s.doc
		if doc == "" {
			doc = s.help
		}
		b.WriteString("| `" + s.key + "` | `--" + s.flag + "` | `" + s.env + "` | " + def + " | " + doc + " |\n")
	}
	return b.String()
}
