package conf

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Port int `flag:"port" env:"T_PORT" default:"8080" usage:"port"`
}

type testConfig struct {
	Name  string        `flag:"name" env:"T_NAME" default:"hearth" usage:"a name"`
	Debug bool          `flag:"debug" env:"T_DEBUG" usage:"debug"`
	Wait  time.Duration `flag:"wait" env:"T_WAIT" default:"2s" usage:"wait"`
	List  []string      `flag:"list" env:"T_LIST" default:"a,b" usage:"list"`
	Ratio float64       `flag:"ratio" env:"T_RATIO" default:"0.5" usage:"ratio"`
	Inner inner
	//lint:ignore U1000 an unexported field the loader must skip
	ignored string
}

func loadT(t *testing.T, env map[string]string, args ...string) (testConfig, error) {
	t.Helper()
	var c testConfig
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	err := load(fs, &c, args, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	return c, err
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	c, err := loadT(t, nil)
	if err != nil || c.Name != "hearth" || c.Wait != 2*time.Second || strings.Join(c.List, "|") != "a|b" || c.Inner.Port != 8080 || c.Ratio != 0.5 || c.Debug {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	c, _ = loadT(t, map[string]string{"T_NAME": "env", "T_PORT": "9", "T_DEBUG": "true"})
	if c.Name != "env" || c.Inner.Port != 9 || !c.Debug {
		t.Fatalf("env: %+v", c)
	}
	c, _ = loadT(t, map[string]string{"T_NAME": "env"}, "-name", "flag", "-debug=false", "-list", "x, y ,", "-wait", "1m")
	if c.Name != "flag" || c.Debug || strings.Join(c.List, "|") != "x|y" || c.Wait != time.Minute {
		t.Fatalf("flags: %+v", c)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	if _, err := loadT(t, map[string]string{"T_WAIT": "soon"}); err == nil || !strings.Contains(err.Error(), "T_WAIT") {
		t.Fatalf("bad env value: %v", err)
	}
	if _, err := loadT(t, nil, "-port", "x"); err == nil {
		t.Fatal("bad flag value accepted")
	}
	var notPtr testConfig
	if err := Load(flag.NewFlagSet("t", flag.ContinueOnError), notPtr, nil); err == nil {
		t.Fatal("non-pointer accepted")
	}
	type bad struct {
		C chan int `flag:"c"`
	}
	if _, err := Options(&bad{}); err == nil {
		t.Fatal("unsupported kind accepted")
	}
}

func TestMarkdown(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := WriteMarkdown(&b, &testConfig{}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"| `-name` | `T_NAME` | `hearth` | a name |", "| `-debug` | `T_DEBUG` | `(empty)` | debug |", "| `-port` | `T_PORT` | `8080` | port |"} {
		if !strings.Contains(out, want) {
			t.Fatalf("markdown lacks %q:\n%s", want, out)
		}
	}
}
