// Package conf maps command-line flags and environment variables onto one
// config struct, so that every binary documents its settings in a single
// place: the struct's field tags.
//
// A field takes part when it carries a `flag` tag:
//
//	Listen string `flag:"listen" env:"HEARTH_EDGE_LISTEN" default:":8080" usage:"address to listen on"`
//
// Precedence, lowest first: the `default` tag, the environment variable, the
// command-line flag. Supported field kinds: string, bool, int, int64, uint64,
// float64, time.Duration and []string (comma separated).
//
// Fields of struct type without a `flag` tag are walked recursively, so a
// binary can embed the configs of the components it runs.
package conf

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrUnsupported is returned for a tagged field whose kind conf cannot parse.
var ErrUnsupported = errors.New("conf: unsupported field kind")

// Option describes one setting, as documented in the README's tables.
type Option struct {
	Flag    string
	Env     string
	Default string
	Usage   string
}

// Load fills cfg (a pointer to a struct) from defaults, the environment and
// args, in that order of precedence. It registers the flags on fs, so
// `-h` prints them.
func Load(fs *flag.FlagSet, cfg any, args []string) error {
	return load(fs, cfg, args, os.LookupEnv)
}

func load(fs *flag.FlagSet, cfg any, args []string, lookup func(string) (string, bool)) error {
	fields, err := walk(cfg)
	if err != nil {
		return err
	}
	for _, f := range fields {
		if err := set(f.v, f.opt.Default); err != nil {
			return fmt.Errorf("conf: default of -%s: %w", f.opt.Flag, err)
		}
		if f.opt.Env != "" {
			if s, ok := lookup(f.opt.Env); ok {
				if err := set(f.v, s); err != nil {
					return fmt.Errorf("conf: %s=%q: %w", f.opt.Env, s, err)
				}
			}
		}
		fs.Var(value{f.v}, f.opt.Flag, usageLine(f.opt))
	}
	return fs.Parse(args)
}

// Options lists the settings of cfg, sorted by flag name.
func Options(cfg any) ([]Option, error) {
	fields, err := walk(cfg)
	if err != nil {
		return nil, err
	}
	out := make([]Option, 0, len(fields))
	for _, f := range fields {
		out = append(out, f.opt)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Flag < out[j].Flag })
	return out, nil
}

// WriteMarkdown writes cfg's settings as a Markdown table.
func WriteMarkdown(w io.Writer, cfg any) error {
	opts, err := Options(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "| flag | env | default | meaning |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for _, o := range opts {
		def := o.Default
		if def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(w, "| `-%s` | `%s` | `%s` | %s |\n", o.Flag, o.Env, def, o.Usage)
	}
	return nil
}

func usageLine(o Option) string {
	if o.Env == "" {
		return o.Usage
	}
	return fmt.Sprintf("%s (env %s)", o.Usage, o.Env)
}

type field struct {
	v   reflect.Value
	opt Option
}

func walk(cfg any) ([]field, error) {
	rv := reflect.ValueOf(cfg)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("conf: want a pointer to a struct, got %T", cfg)
	}
	var out []field
	var visit func(v reflect.Value) error
	visit = func(v reflect.Value) error {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			fv := v.Field(i)
			name, ok := sf.Tag.Lookup("flag")
			if !ok {
				if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeOf(time.Time{}) {
					if err := visit(fv); err != nil {
						return err
					}
				}
				continue
			}
			if !supported(fv) {
				return fmt.Errorf("%w: %s.%s (%s)", ErrUnsupported, t.Name(), sf.Name, fv.Type())
			}
			out = append(out, field{v: fv, opt: Option{
				Flag:    name,
				Env:     sf.Tag.Get("env"),
				Default: sf.Tag.Get("default"),
				Usage:   sf.Tag.Get("usage"),
			}})
		}
		return nil
	}
	return out, visit(rv.Elem())
}

var durationType = reflect.TypeOf(time.Duration(0))

func supported(v reflect.Value) bool {
	if v.Type() == durationType {
		return true
	}
	switch v.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Uint64, reflect.Uint32, reflect.Float64:
		return true
	case reflect.Slice:
		return v.Type().Elem().Kind() == reflect.String
	}
	return false
}

func set(v reflect.Value, s string) error {
	if v.Type() == durationType {
		if s == "" {
			v.SetInt(0)
			return nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		if s == "" {
			v.SetBool(false)
			return nil
		}
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		if s == "" {
			v.SetInt(0)
			return nil
		}
		n, err := strconv.ParseInt(s, 0, 64)
		if err != nil {
			return err
		}
		v.SetInt(n)
	case reflect.Uint64, reflect.Uint32:
		if s == "" {
			v.SetUint(0)
			return nil
		}
		n, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			return err
		}
		v.SetUint(n)
	case reflect.Float64:
		if s == "" {
			v.SetFloat(0)
			return nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		v.SetFloat(f)
	case reflect.Slice:
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	}
	return nil
}

func get(v reflect.Value) string {
	if v.Type() == durationType {
		return time.Duration(v.Int()).String()
	}
	if v.Kind() == reflect.Slice {
		return strings.Join(v.Interface().([]string), ",")
	}
	return fmt.Sprint(v.Interface())
}

// value adapts a struct field to flag.Value.
type value struct{ v reflect.Value }

func (f value) String() string {
	if !f.v.IsValid() {
		return ""
	}
	return get(f.v)
}

func (f value) Set(s string) error { return set(f.v, s) }

// IsBoolFlag lets "-flag" stand for "-flag=true" on bool fields.
func (f value) IsBoolFlag() bool { return f.v.IsValid() && f.v.Kind() == reflect.Bool }
