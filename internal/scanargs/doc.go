// Package scanargs turns the arguments of one nmap_scan call into a validated,
// typed plan and the nmap argv for it.
//
// Nothing a user or a model writes can reach nmap as an option: every value
// is checked against a narrow rule, option values come from fixed tables or
// are re-rendered from parsed numbers, and targets are placed after "--".
// Every refusal is a *FieldError naming the field, the value and the rule.
package scanargs
