package results

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Banners, script output, hostnames and OS names come from the scanned
// machines: they are untrusted input for whoever reads a result, a model
// included, and may carry terminal escapes or text that poses as
// instructions. The decoder cleans every such string of control
// characters and ANSI escape sequences (keeping newlines and tabs in
// script output), and the text block quotes them, bounded, as data.

// clean removes ANSI escape sequences and control characters from s;
// multiline keeps newlines and tabs.
func clean(s string, multiline bool) string {
	if isClean(s, multiline) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size == 1:
			continue // not UTF-8
		case r == 0x1b || r == 0x9b || r == 0x9d: // ESC, CSI, OSC: skip the whole sequence
			i = skipEscape(s, i, r)
		case multiline && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// skipEscape returns the index just past the escape sequence that began
// with r before i: CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or
// ESC \\), or ESC and one more character.
func skipEscape(s string, i int, r rune) int {
	osc, csi := r == 0x9d, r == 0x9b
	if r == 0x1b && i < len(s) {
		switch s[i] {
		case '[':
			csi = true
		case ']':
			osc = true
		}
		i++ // the '[', ']' or the one character of a short sequence
	}
	switch {
	case osc:
		for i < len(s) {
			if s[i] == 0x07 {
				return i + 1
			}
			if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
			i++
		}
	case csi:
		for i < len(s) {
			if s[i] >= 0x40 && s[i] <= 0x7e {
				return i + 1
			}
			i++
		}
	}
	return min(i, len(s))
}

func isClean(s string, multiline bool) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError || r == '\u2028' || r == '\u2029' {
			if multiline && (r == '\n' || r == '\t') {
				continue
			}
			return false
		}
	}
	return true
}

// quoted renders remote text for the text block: on one line, at most n
// bytes, in double quotes with quotes and backslashes escaped, so that it
// reads as data, never as part of the server's own words.
func quoted(s string, n int) string {
	s = strings.Join(strings.Fields(clean(s, false)), " ")
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return strconv.Quote(s)
}
