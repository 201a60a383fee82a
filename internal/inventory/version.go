package inventory

import (
	"fmt"
	"strings"
)

// VersionKey maps a version string to a key whose byte order is the
// versions' numeric-aware order: each run of digits becomes its length
// (one digit, '1' to '9', after leading zeros are dropped; longer runs
// are capped at nine digits' worth of length) followed by the digits, so
// "9.2p1" < "10.0" and "8.9p1 Ubuntu" < "9.0". Letters and punctuation
// compare as bytes, lower-cased. The empty version has the empty key.
func VersionKey(v string) string {
	var b strings.Builder
	v = strings.ToLower(strings.TrimSpace(v))
	for i := 0; i < len(v); {
		c := v[i]
		if c < '0' || c > '9' {
			b.WriteByte(c)
			i++
			continue
		}
		j := i
		for j < len(v) && v[j] >= '0' && v[j] <= '9' {
			j++
		}
		digits := strings.TrimLeft(v[i:j], "0")
		if digits == "" {
			digits = "0"
		}
		if len(digits) > 9 {
			digits = digits[:9] // absurd: keep the order of the first nine
		}
		b.WriteByte(byte('0' + len(digits)))
		b.WriteString(digits)
		i = j
	}
	return b.String()
}

// VersionCmp is one comparison of a version filter, e.g. "<9.0".
type VersionCmp struct {
	// Op is one of < <= > >= = != or "^" (no operator given: the
	// version starts with the operand, "9.2" matching "9.2p1 Debian").
	Op  string
	Key string // VersionKey of the operand
	Raw string // the operand as given
}

// MaxVersionComparisons bounds the comparisons of a version filter: each
// is a condition of the query, and SQLite refuses an expression deeper
// than 1,000 (its error named the store's file).
const MaxVersionComparisons = 8

// ParseVersionFilter reads a version filter: one or more comparisons
// joined by commas, all of which must hold ("<9.0", ">=8.0,<9.0"); a
// version without an operator matches the versions it begins ("9.2"
// matches "9.2p1 Debian 2" but not "9.21"); "=" is exact. It refuses, naming the
// value and the rule, an empty operand, an unknown operator or more than
// MaxVersionComparisons comparisons.
func ParseVersionFilter(s string) ([]VersionCmp, error) {
	var out []VersionCmp
	if n := strings.Count(s, ",") + 1; n > MaxVersionComparisons {
		return nil, fmt.Errorf("invalid version %q: at most %d comparisons (this has %d)", shorten(s), MaxVersionComparisons, n)
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("invalid version %q: give comparisons such as <9.0 or >=8.0,<9.0 (each one an operator < <= > >= = != and a version)", s)
		}
		op := "^"
		for _, o := range []string{"<=", ">=", "!=", "==", "<", ">", "="} {
			if strings.HasPrefix(part, o) {
				op, part = o, strings.TrimSpace(part[len(o):])
				break
			}
		}
		if op == "==" {
			op = "="
		}
		if part == "" || strings.ContainsAny(part, "<>=!") {
			return nil, fmt.Errorf("invalid version %q: each comparison is an operator (< <= > >= = !=) followed by a version, e.g. <9.0", s)
		}
		out = append(out, VersionCmp{Op: op, Key: VersionKey(part), Raw: part})
	}
	return out, nil
}

// Match reports whether version v satisfies every comparison; an empty
// version (not detected) satisfies none.
func Match(v string, cmps []VersionCmp) bool {
	if v == "" {
		return false
	}
	k := VersionKey(v)
	for _, c := range cmps {
		var ok bool
		switch c.Op {
		case "<":
			ok = k < c.Key
		case "<=":
			ok = k <= c.Key
		case ">":
			ok = k > c.Key
		case ">=":
			ok = k >= c.Key
		case "=":
			ok = k == c.Key
		case "!=":
			ok = k != c.Key
		case "^":
			ok = strings.HasPrefix(k, c.Key) && (len(k) == len(c.Key) || !isDigit(c.Key[len(c.Key)-1]) || !isDigit(k[len(c.Key)]))
		}
		if !ok {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
