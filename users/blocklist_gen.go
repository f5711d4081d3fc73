//go:build ignore

// blocklist_gen writes blocklist.txt, the common passwords that
// ValidatePassword refuses, and blocklist_license.txt, the license they are
// used under. go generate ./users/ runs it (see blocklist.go); it needs the
// Go module proxy, or the module below in the module cache.
//
// The source is data/passwords.txt of the Go module
// github.com/trustelem/zxcvbn v1.0.1 (MIT): the password frequency list of
// zxcvbn 4.4.2, 47,023 passwords found in breaches, most common first. The
// module is fetched with go mod download and checked against the pinned
// checksum below, so the output depends on nothing else; it is not imported
// and adds nothing to go.mod.
//
// Each password is put in the form ValidatePassword compares (NFKC, then
// lower case); those shorter than 8 characters in that form are dropped,
// since ValidatePassword refuses them for their length alone. The rest are
// written sorted by byte value without duplicates, one a line, for a binary
// search.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

const (
	module  = "github.com/trustelem/zxcvbn"
	version = "v1.0.1"
	// sum is the go.sum hash of the module's zip file.
	sum = "h1:mp4JFtzdDYGj9WYSD3KQSkwwUumWNFzXaAjckaTYpsc="
	// minLen is users.MinPasswordLen; TestBlocklistData fails if they
	// differ.
	minLen = 8
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("blocklist_gen: ")
	dir := download()
	words := read(filepath.Join(dir, "data", "passwords.txt"))
	if err := os.WriteFile("blocklist.txt", []byte(strings.Join(words, "\n")+"\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	license, err := os.ReadFile(filepath.Join(dir, "LICENSE.txt"))
	if err != nil {
		log.Fatal(err)
	}
	head := fmt.Sprintf("blocklist.txt is derived from data/passwords.txt of %s %s\n(the password list of zxcvbn 4.4.2), under this license:\n\n", module, version)
	if err := os.WriteFile("blocklist_license.txt", append([]byte(head), license...), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("%d passwords, %d bytes", len(words), len(strings.Join(words, "\n"))+1)
}

// download fetches the module into the module cache, checks its checksum
// and returns its directory. It runs go outside this module, so that
// go.mod and go.sum stay as they are.
func download() string {
	tmp, err := os.MkdirTemp("", "blocklist_gen")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("go", "mod", "download", "-json", module+"@"+version)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		log.Fatalf("go mod download %s@%s: %v\n%s", module, version, err, out)
	}
	var m struct{ Dir, Sum, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		log.Fatal(err)
	}
	if m.Error != "" {
		log.Fatal(m.Error)
	}
	if m.Sum != sum {
		log.Fatalf("%s@%s has checksum %s, want %s", module, version, m.Sum, sum)
	}
	return m.Dir
}

// read returns the passwords of a zxcvbn frequency file ("password count"
// lines) in the form ValidatePassword compares, at least minLen characters
// long, sorted and without duplicates.
func read(path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	var words []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			log.Fatalf("%s: line %q is not \"password count\"", path, sc.Text())
		}
		w := strings.ToLower(norm.NFKC.String(fields[0]))
		if !utf8.ValidString(w) || strings.Contains(w, "\n") {
			log.Fatalf("%s: unusable password %q", path, fields[0])
		}
		if utf8.RuneCountInString(w) >= minLen {
			words = append(words, w)
		}
	}
	if err := sc.Err(); err != nil {
		log.Fatal(err)
	}
	slices.Sort(words)
	return slices.Compact(words)
}
