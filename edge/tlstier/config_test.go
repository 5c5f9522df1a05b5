package tlstier

import (
	"errors"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hearth-gateway/hearth/shared/conf"
)

// The `default` tags (what the binary uses) and withDefaults (what New
// applies to zero values) must agree.
func TestConfigTagsMatchZeroValueDefaults(t *testing.T) {
	t.Parallel()
	opts, err := conf.Options(&Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		if !strings.HasPrefix(o.Env, "HEARTH_TLS_") || o.Usage == "" {
			t.Errorf("-%s: env %q, usage %q; want HEARTH_TLS_* and a usage", o.Flag, o.Env, o.Usage)
		}
	}
	if n := reflect.TypeFor[Config]().NumField(); n != len(opts) {
		t.Errorf("%d Config fields but %d options: every field needs a flag tag", n, len(opts))
	}

	for _, o := range opts {
		if v, ok := os.LookupEnv(o.Env); ok {
			t.Skipf("%s=%q set in the environment", o.Env, v)
		}
	}
	var fromTags Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	if err := conf.Load(fs, &fromTags, nil); err != nil {
		t.Fatal(err)
	}
	got := fromTags.withDefaults()
	want := Config{}.withDefaults()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults from tags\n%+v\ndiffer from zero-value defaults\n%+v", got, want)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	edges := []string{"http://127.0.0.1:8081"}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no edges", Config{}},
		{"edge without scheme", Config{Edges: []string{"127.0.0.1:8081"}}},
		{"edge ws scheme", Config{Edges: []string{"ws://127.0.0.1:8081"}}},
		{"edge with path", Config{Edges: []string{"http://127.0.0.1:8081/ws"}}},
		{"edge listed twice", Config{Edges: []string{"http://e:1", "http://e:1"}}},
		{"bad listen", Config{Edges: edges, Listen: "8443"}},
		{"unknown mode", Config{Edges: edges, CertMode: "letsencrypt"}},
		{"files without files", Config{Edges: edges, CertMode: CertModeFiles}},
		{"acme with localhost", Config{Edges: edges, CertMode: CertModeACME}},
		{"acme over http", Config{Edges: edges, CertMode: CertModeACME, Hostnames: []string{"a.example.com"}, ACMECA: "http://ca.example/dir"}},
		{"on-demand without ask", Config{Edges: edges, CertMode: CertModeACME, OnDemand: true}},
		{"on-demand outside acme", Config{Edges: edges, OnDemand: true, OnDemandAsk: "http://ask.local"}},
		{"negative timeout", Config{Edges: edges, DialTimeout: -1}},
		{"negative threshold", Config{Edges: edges, HealthyAfter: -1}},
		{"bad self-signed name", Config{Edges: edges, Hostnames: []string{"bad name"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.cfg.CADir = t.TempDir()
			if _, err := New(tt.cfg, zerolog.Nop(), nil); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}

	ok := Config{Edges: edges, CertMode: CertModeACME, OnDemand: true, OnDemandAsk: "http://127.0.0.1:9999/ask", StorageDir: t.TempDir()}
	if _, err := New(ok, zerolog.Nop(), nil); err != nil {
		t.Fatalf("valid on-demand config rejected: %v", err)
	}
}
