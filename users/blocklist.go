package users

import (
	_ "embed"
	"slices"
	"strings"
	"sync"
)

//go:generate go run blocklist_gen.go

// blocklistData is the list of common and breached passwords that
// ValidatePassword refuses (NIST SP 800-63B-4 §3.1.1.2): one a line, each
// in the form passwordKey returns, at least MinPasswordLen characters
// long, sorted by byte value, without duplicates. blocklist_gen.go
// writes it from the password list of zxcvbn 4.4.2 (MIT, see
// blocklist_license.txt); TestBlocklistData checks its form.
//
//go:embed blocklist.txt
var blocklistData string

// blocklist returns the lines of blocklistData. It splits them on first
// use, so that processes that never validate a password (most commands)
// do not pay for it.
var blocklist = sync.OnceValue(func() []string {
	return strings.Split(strings.TrimSuffix(blocklistData, "\n"), "\n")
})

// contextWords are words that anyone guessing a sessiond password would
// try first, refused as passwords whatever the blocklist says (NIST SP
// 800-63B-4 §3.1.1.2: "context-specific words, such as the name of the
// service"), in the form passwordKey returns.
var contextWords = []string{"sessiond"}

// isCommonPassword reports whether key, a password in the form
// passwordKey returns, is on the blocklist. It takes O(log n) string
// comparisons.
func isCommonPassword(key string) bool {
	_, found := slices.BinarySearch(blocklist(), key)
	return found
}
