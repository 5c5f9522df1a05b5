// Package conftest keeps the README's configuration tables true: each
// binary's test compares the table generated from its config struct with the
// one between the README's markers, and rewrites it when HEARTH_UPDATE_README=1.
package conftest

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/hearth-gateway/hearth/shared/conf"
)

// update is set by HEARTH_UPDATE_README=1: an environment variable rather
// than a flag, so `go test ./...` can pass it to every package.
var update = os.Getenv("HEARTH_UPDATE_README") == "1"

// CheckREADME compares the table of cfg with the README section between
// "<!-- conf:NAME -->" and "<!-- /conf:NAME -->".
func CheckREADME(t *testing.T, readme, name string, cfg any) {
	t.Helper()
	var table bytes.Buffer
	if err := conf.WriteMarkdown(&table, cfg); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	begin, end := "<!-- conf:"+name+" -->\n", "<!-- /conf:"+name+" -->"
	doc := string(raw)
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no %q … %q section", readme, strings.TrimSpace(begin), end)
	}
	got := doc[i+len(begin) : j]
	if got == table.String() {
		return
	}
	if update {
		doc = doc[:i+len(begin)] + table.String() + doc[j:]
		if err := os.WriteFile(readme, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("the README's %s table is out of date; run: HEARTH_UPDATE_README=1 go test ./... -run TestREADME\nwant:\n%s", name, table.String())
}
