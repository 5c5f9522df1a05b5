// Package deploy has no code of its own: its tests keep the deployments in
// deploy/compose and deploy/k8s (and deploy/Dockerfile) honest against the
// binaries they run, so that renaming a setting cannot silently break them.
//
// Each binary's settings are read from the repository's Go source, not from
// a list kept here: starting at the `config` struct of each main package
// (edge/cmd/hearth-edge, ...), the struct fields are followed into the
// repo's packages and every `env:"..."` tag is collected, together with its
// `default:"..."`. Main packages are parsed, never imported.
//
// Always run (pure Go):
//   - every HEARTH_* and AMQP_URL name written anywhere in the deployment
//     files is a real setting (catches typos, also in comments and scripts);
//   - every Hearth process in the compose file and the kustomize base, as
//     written, sets only settings of the binary it runs, and the processes
//     agree with each other: one broker topology for all edges and hubs,
//     unique edge ids, a unique stable id for every hub (literal, or the pod
//     name), liveness announcements well inside the timeouts the hubs judge
//     them by, the TLS tier's edge list naming exactly the edges, drain and
//     shard-release times inside the grace periods, probes and healthchecks
//     on the right ports. A setting a binary no longer has (such as the
//     hubs' old HEARTH_HUB_INDEX and HEARTH_HUB_COUNT) fails the first two.
//
// When docker-compose (or the docker compose plugin) and kubectl are on
// PATH, the same checks also run on what those tools render. Without the
// tools those tests skip and say so: `make test` does not install them.
package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const (
	repoRoot    = ".."
	composeFile = "compose/docker-compose.yml"
	k8sDir      = "k8s"
	dockerfile  = "Dockerfile"

	// graceMargin is what a grace period must leave beyond a drain timeout
	// for the process to close its broker connection and exit.
	graceMargin = 5 * time.Second

	// hubReleaseTimeout is how long a hub takes, at most, to release its
	// shards on SIGTERM (hub.Worker.Run; not a setting).
	hubReleaseTimeout = 10 * time.Second
)

// topologyEnv are the settings every edge and hub of a deployment must share.
var topologyEnv = []string{"AMQP_URL", "HEARTH_SHARDS", "HEARTH_QUORUM", "HEARTH_SHARD_QUEUE_MAX"}

// hubSharedEnv are settings every hub must agree on, set or defaulted:
// each hub declares every shard's state stream with its retention, and
// RabbitMQ refuses to re-declare a stream with other arguments.
var hubSharedEnv = []string{"HEARTH_STATE_BYTES"}

// adminListenEnv names, per binary, the setting whose address serves
// /healthz, /readyz and /metrics.
var adminListenEnv = map[string]string{
	"hearth-edge": "HEARTH_EDGE_LISTEN",
	"hearth-hub":  "HEARTH_HUB_ADMIN_LISTEN",
	"hearth-tls":  "HEARTH_TLS_METRICS_LISTEN",
}

// settingName matches the names this test polices in deployment files.
// HEARTH_COMPOSE_* are the compose file's own interpolation variables.
var settingName = regexp.MustCompile(`\b(HEARTH_[A-Z0-9_]+|AMQP_URL)\b`)

func isSetting(name string) bool {
	return settingName.MatchString(name) && !strings.HasPrefix(name, "HEARTH_COMPOSE_")
}

// ---------------------------------------------------------------------------
// Settings, from the Go source.

// sourceSettings holds what the Go source says about settings.
type sourceSettings struct {
	// binaries maps a binary name to its settings: env name → default.
	binaries map[string]map[string]string
	// all is every env tag in the repository's non-test Go files.
	all map[string]bool
	// cmdDirs are the main packages' directories, relative to the repo root.
	cmdDirs []string
}

var loadSettingsOnce = sync.OnceValues(func() (*sourceSettings, error) {
	return loadSettings(repoRoot)
})

func settings(t *testing.T) *sourceSettings {
	t.Helper()
	s, err := loadSettingsOnce()
	if err != nil {
		t.Fatalf("reading settings from the Go source: %v", err)
	}
	return s
}

// goPackage is the struct types of one parsed package directory.
type goPackage map[string]goStruct

type goStruct struct {
	st      *ast.StructType
	imports map[string]string // local name → import path, of the declaring file
}

type sourceIndex struct {
	root, module string
	fset         *token.FileSet
	pkgs         map[string]goPackage // by directory
}

func loadSettings(root string) (*sourceSettings, error) {
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return nil, err
	}
	m := regexp.MustCompile(`(?m)^module\s+(\S+)`).FindSubmatch(gomod)
	if m == nil {
		return nil, errors.New("no module line in go.mod")
	}
	x := &sourceIndex{root: root, module: string(m[1]), fset: token.NewFileSet(), pkgs: map[string]goPackage{}}
	out := &sourceSettings{binaries: map[string]map[string]string{}, all: map[string]bool{}}

	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin") {
				return filepath.SkipDir
			}
			if filepath.Base(filepath.Dir(path)) == "cmd" {
				rel, _ := filepath.Rel(root, path)
				out.cmdDirs = append(out.cmdDirs, filepath.ToSlash(rel))
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(x.fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if fl, ok := n.(*ast.Field); ok {
				if env, _, ok := fieldTag(fl); ok && env != "" {
					out.all[env] = true
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		return nil, err
	}

	for _, dir := range out.cmdDirs {
		pkg, err := x.pkg(filepath.Join(root, dir))
		if err != nil {
			return nil, err
		}
		if _, ok := pkg["config"]; !ok {
			continue // no settings (e.g. hearth-chat, which takes flags per subcommand)
		}
		envs := map[string]string{}
		if err := x.collect(filepath.Join(root, dir), "config", envs, map[string]bool{}); err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		out.binaries[filepath.Base(dir)] = envs
	}
	return out, nil
}

// fieldTag reports a field's env tag and default, and whether it has a
// flag tag (which makes it a setting in package conf; fields without one
// are walked into).
func fieldTag(f *ast.Field) (env, def string, isSetting bool) {
	if f.Tag == nil {
		return "", "", false
	}
	raw, err := strconv.Unquote(f.Tag.Value)
	if err != nil {
		return "", "", false
	}
	tag := reflect.StructTag(raw)
	if _, ok := tag.Lookup("flag"); !ok {
		return "", "", false
	}
	return tag.Get("env"), tag.Get("default"), true
}

// pkg parses the non-test files of the package in dir, once.
func (x *sourceIndex) pkg(dir string) (goPackage, error) {
	if p, ok := x.pkgs[dir]; ok {
		return p, nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	p := goPackage{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(x.fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		imports := map[string]string{}
		for _, im := range f.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			local := filepath.Base(path)
			if im.Name != nil {
				local = im.Name.Name
			}
			imports[local] = path
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				if st, ok := ts.Type.(*ast.StructType); ok {
					p[ts.Name.Name] = goStruct{st: st, imports: imports}
				}
			}
		}
	}
	x.pkgs[dir] = p
	return p, nil
}

// collect adds the settings of struct typ in dir to out, walking untagged
// fields of struct type (named or embedded) the way package conf does.
func (x *sourceIndex) collect(dir, typ string, out map[string]string, seen map[string]bool) error {
	key := dir + "." + typ
	if seen[key] {
		return nil
	}
	seen[key] = true
	pkg, err := x.pkg(dir)
	if err != nil {
		return err
	}
	s, ok := pkg[typ]
	if !ok {
		return nil // not a struct type: nothing to walk
	}
	for _, f := range s.st.Fields.List {
		if env, def, isSetting := fieldTag(f); isSetting {
			if env != "" {
				out[env] = def
			}
			continue
		}
		t := f.Type
		if star, ok := t.(*ast.StarExpr); ok {
			t = star.X
		}
		switch t := t.(type) {
		case *ast.Ident:
			if err := x.collect(dir, t.Name, out, seen); err != nil {
				return err
			}
		case *ast.SelectorExpr:
			id, ok := t.X.(*ast.Ident)
			if !ok {
				continue
			}
			path, ok := s.imports[id.Name]
			if !ok || !strings.HasPrefix(path, x.module+"/") {
				continue // outside the module: holds no settings
			}
			sub := filepath.Join(x.root, filepath.FromSlash(strings.TrimPrefix(path, x.module+"/")))
			if err := x.collect(sub, t.Sel.Name, out, seen); err != nil {
				return err
			}
		}
	}
	return nil
}

func TestSettingsFromSource(t *testing.T) {
	t.Parallel()
	s := settings(t)
	// Guards the source walk: if these go missing, the walk is broken, not
	// the deployments.
	want := map[string][]string{
		"hearth-edge": {"AMQP_URL", "HEARTH_EDGE_ID", "HEARTH_JWT_SECRET_FILE", "HEARTH_SHARDS", "HEARTH_LOG_FORMAT", "HEARTH_TRUSTED_PROXIES", "HEARTH_EDGE_ANNOUNCE"},
		"hearth-hub":  {"AMQP_URL", "HEARTH_HUB_ID", "HEARTH_HUB_HEARTBEAT", "HEARTH_HUB_TIMEOUT", "HEARTH_EDGE_TIMEOUT", "HEARTH_STATE_BYTES", "HEARTH_SHARDS", "HEARTH_LOG_FORMAT"},
		"hearth-tls":  {"HEARTH_TLS_EDGES", "HEARTH_TLS_METRICS_LISTEN", "HEARTH_TLS_CA_DIR"},
	}
	for bin, names := range want {
		got, ok := s.binaries[bin]
		if !ok {
			t.Errorf("no config struct found for %s among %v", bin, s.cmdDirs)
			continue
		}
		for _, n := range names {
			if _, ok := got[n]; !ok {
				t.Errorf("%s: setting %s not found in the source walk (found %v)", bin, n, sortedKeys(got))
			}
		}
	}
	// The checks fall back on these defaults.
	for bin, names := range map[string][]string{
		"hearth-edge": {"HEARTH_EDGE_ANNOUNCE"},
		"hearth-hub":  {"HEARTH_HUB_ADMIN_LISTEN", "HEARTH_HUB_HEARTBEAT", "HEARTH_HUB_TIMEOUT", "HEARTH_EDGE_TIMEOUT", "HEARTH_STATE_BYTES"},
	} {
		for _, n := range names {
			if got := s.binaries[bin][n]; got == "" {
				t.Errorf("%s: no default for %s in the source walk", bin, n)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Every name in the deployment files.

func deploymentFiles(t *testing.T) []string {
	t.Helper()
	files := []string{dockerfile}
	for _, dir := range []string{"compose", k8sDir} {
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == "secrets" {
					return filepath.SkipDir // local, never committed
				}
				return nil
			}
			if d.Name() == ".env" || d.Name() == ".gitignore" {
				return nil // .env is the user's; .env.example is checked
			}
			files = append(files, path)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files
}

func TestDeploymentFilesNameRealSettings(t *testing.T) {
	t.Parallel()
	s := settings(t)
	files := deploymentFiles(t)
	if len(files) < 5 {
		t.Fatalf("only %v: are the deployment files missing?", files)
	}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, name := range settingName.FindAllString(line, -1) {
				if isSetting(name) && !s.all[name] {
					t.Errorf("%s:%d: %s is not a setting of any Hearth binary (no env:%q tag in the Go source)", path, i+1, name, name)
				}
			}
		}
	}
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	s := settings(t)
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, dir := range s.cmdDirs {
		parent := "./" + filepath.ToSlash(filepath.Dir(dir)) + "/..."
		if !strings.Contains(df, parent) && !strings.Contains(df, "./"+dir) {
			t.Errorf("%s: the go build line does not build %s (want %s)", dockerfile, dir, parent)
		}
	}
	users := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(users) == 0 {
		t.Fatalf("%s: no USER: the image would run as root", dockerfile)
	}
	if u := users[len(users)-1][1]; strings.HasPrefix(u, "0") || strings.HasPrefix(u, "root") {
		t.Errorf("%s: final USER %s is root", dockerfile, u)
	}
	if !strings.Contains(df, "/usr/local/bin") {
		t.Errorf("%s: binaries are not installed in /usr/local/bin", dockerfile)
	}
}

// ---------------------------------------------------------------------------
// The neutral model both deployments are checked in.

// process is one Hearth process (or set of replicas) as a deployment runs it.
type process struct {
	where    string // for messages: "compose service edge-0"
	name     string // compose service or k8s workload name
	binary   string
	replicas int
	// env maps each setting the deployment gives the process to a value:
	// the literal, or a description of its source ("secret:x/y",
	// "field:metadata.name", "script").
	env map[string]string
	// literal reports whether env[name] is a literal value.
	literal map[string]bool
	grace   time.Duration // how long the platform waits after SIGTERM
	// probePorts maps a probe ("readiness", "liveness", "healthcheck") to
	// the port and path it checks.
	probes map[string]probeTarget
}

type probeTarget struct {
	port int
	path string
}

// value returns the effective literal value of a setting: the deployment's,
// else the binary's default.
func (p *process) value(s *sourceSettings, name string) (string, bool) {
	if v, ok := p.env[name]; ok {
		return v, p.literal[name]
	}
	def, ok := s.binaries[p.binary][name]
	return def, ok
}

// checkProcesses runs the checks common to both deployments.
func checkProcesses(t *testing.T, s *sourceSettings, procs []*process) {
	t.Helper()
	byBinary := map[string][]*process{}
	for _, p := range procs {
		byBinary[p.binary] = append(byBinary[p.binary], p)
		known, ok := s.binaries[p.binary]
		if !ok {
			t.Errorf("%s runs %s, which is not a binary with a config struct (have %v)", p.where, p.binary, sortedKeys(s.binaries))
			continue
		}
		for _, name := range sortedKeys(p.env) {
			if _, ok := known[name]; isSetting(name) && !ok {
				t.Errorf("%s: %s is not a setting of %s (its settings: %v)", p.where, name, p.binary, sortedKeys(known))
			}
		}
		// The admin/health address must be reachable from outside the
		// container, and probes must point at it.
		if envName, ok := adminListenEnv[p.binary]; ok {
			addr, lit := p.value(s, envName)
			host, portStr, err := net.SplitHostPort(addr)
			port, _ := strconv.Atoi(portStr)
			switch {
			case !lit || err != nil:
				t.Errorf("%s: %s=%q is not a literal host:port", p.where, envName, addr)
			case host != "" && host != "0.0.0.0" && host != "::":
				t.Errorf("%s: %s=%q listens on %s only; probes and Prometheus cannot reach it", p.where, envName, addr, host)
			default:
				if len(p.probes) == 0 {
					t.Errorf("%s: no health probes", p.where)
				}
				for kind, pr := range p.probes {
					if pr.port != port {
						t.Errorf("%s: %s probe checks port %d, but %s serves health on %s", p.where, kind, pr.port, p.binary, addr)
					}
					want := "/healthz"
					if kind == "readiness" || kind == "healthcheck" {
						want = "/readyz"
					}
					if pr.path != want {
						t.Errorf("%s: %s probe checks %q, want %q", p.where, kind, pr.path, want)
					}
				}
			}
		}
	}

	edges, hubs, tls := byBinary["hearth-edge"], byBinary["hearth-hub"], byBinary["hearth-tls"]
	if len(edges) == 0 || len(hubs) == 0 || len(tls) == 0 {
		t.Fatalf("want edges, hubs and a TLS tier; have %v", sortedKeys(byBinary))
	}

	// One broker topology for all.
	for _, name := range topologyEnv {
		values := map[string][]string{}
		for _, p := range slices.Concat(edges, hubs) {
			v, ok := p.env[name]
			if !ok {
				t.Errorf("%s: %s is not set; every edge and hub must set it, to the same value", p.where, name)
				continue
			}
			values[v] = append(values[v], p.name)
		}
		if len(values) > 1 {
			t.Errorf("%s differs between edges and hubs: %v", name, values)
		}
	}

	// Edges: authenticated, drained within their grace period.
	for _, p := range edges {
		if _, ok := p.env["HEARTH_JWT_SECRET_FILE"]; !ok {
			if _, ok := p.env["HEARTH_JWT_SECRET"]; !ok {
				t.Errorf("%s: neither HEARTH_JWT_SECRET_FILE nor HEARTH_JWT_SECRET is set", p.where)
			}
		}
		for _, name := range []string{"HEARTH_EDGE_ID", "HEARTH_TRUSTED_PROXIES", "HEARTH_ALLOWED_ORIGINS"} {
			if _, ok := p.env[name]; !ok {
				t.Errorf("%s: %s is not set", p.where, name)
			}
		}
		checkGrace(t, s, p, "HEARTH_DRAIN_TIMEOUT")
	}
	for _, p := range tls {
		checkGrace(t, s, p, "HEARTH_TLS_DRAIN_TIMEOUT")
	}

	// Hubs: told apart by id, release their shards within the grace
	// period, agree on the state streams.
	checkHubIDs(t, hubs)
	for _, p := range hubs {
		if p.grace < hubReleaseTimeout+graceMargin {
			t.Errorf("%s: grace period %v is shorter than the hub's shard release (%v) + %v: shards would be taken over only after the hub timeout",
				p.where, p.grace, hubReleaseTimeout, graceMargin)
		}
	}
	for _, name := range hubSharedEnv {
		values := map[string][]string{}
		for _, p := range hubs {
			v, _ := p.value(s, name)
			values[v] = append(values[v], p.name)
		}
		if len(values) > 1 {
			t.Errorf("%s differs between hubs: %v", name, values)
		}
	}

	// Liveness: every hub hears every other hub and edge at least twice
	// within the timeout it judges them by, as the hub itself requires of
	// its own heartbeat (a late announcement must not lose a hub its
	// shards, or an edge its members).
	for _, judge := range hubs {
		hubTimeout, ok1 := durationSetting(t, s, judge, "HEARTH_HUB_TIMEOUT")
		edgeTimeout, ok2 := durationSetting(t, s, judge, "HEARTH_EDGE_TIMEOUT")
		for _, h := range hubs {
			if beat, ok := durationSetting(t, s, h, "HEARTH_HUB_HEARTBEAT"); ok && ok1 && hubTimeout <= 2*beat {
				t.Errorf("%s: HEARTH_HUB_TIMEOUT=%v does not exceed twice %s's HEARTH_HUB_HEARTBEAT=%v", judge.where, hubTimeout, h.name, beat)
			}
		}
		for _, e := range edges {
			if ann, ok := durationSetting(t, s, e, "HEARTH_EDGE_ANNOUNCE"); ok && ok2 && edgeTimeout <= 2*ann {
				t.Errorf("%s: HEARTH_EDGE_TIMEOUT=%v does not exceed twice %s's HEARTH_EDGE_ANNOUNCE=%v: its members would be dropped while it is alive", judge.where, edgeTimeout, e.name, ann)
			}
		}
	}
}

func checkGrace(t *testing.T, s *sourceSettings, p *process, drainEnv string) {
	t.Helper()
	v, _ := p.value(s, drainEnv)
	drain, err := time.ParseDuration(v)
	if err != nil {
		t.Errorf("%s: %s=%q: %v", p.where, drainEnv, v, err)
		return
	}
	if p.grace < drain+graceMargin {
		t.Errorf("%s: grace period %v is shorter than %s=%v + %v: SIGTERM's drain would be cut short",
			p.where, p.grace, drainEnv, drain, graceMargin)
	}
}

// durationSetting returns a duration setting's effective value.
func durationSetting(t *testing.T, s *sourceSettings, p *process, name string) (time.Duration, bool) {
	t.Helper()
	v, lit := p.value(s, name)
	if !lit {
		t.Errorf("%s: %s=%q is not a literal duration", p.where, name, v)
		return 0, false
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Errorf("%s: %s=%q: %v", p.where, name, v, err)
		return 0, false
	}
	return d, true
}

// checkHubIDs checks that every hub has an id of its own. Hubs count each
// other by id: two hubs under one id would be one hub to the others (and
// fight over one control queue). The id is a literal (one replica each,
// all distinct) or the pod's name; an empty one would be random, new on
// every restart, so deployments give a stable one.
func checkHubIDs(t *testing.T, hubs []*process) {
	t.Helper()
	ids := map[string]string{}
	for _, p := range hubs {
		v, set := p.env["HEARTH_HUB_ID"]
		switch {
		case v == "field:metadata.name" && !p.literal["HEARTH_HUB_ID"]:
			// Unique per pod, stable for the pod's life.
		case !set || v == "":
			t.Errorf("%s: HEARTH_HUB_ID is not set: give each hub a stable id (a literal, or the pod name via fieldRef metadata.name)", p.where)
		case !p.literal["HEARTH_HUB_ID"]:
			t.Errorf("%s: HEARTH_HUB_ID=%q: want a literal or the pod name (fieldRef metadata.name), to be sure it is unique", p.where, v)
		case p.replicas != 1:
			t.Errorf("%s: %d replicas share HEARTH_HUB_ID %q: take it from the pod name, or run one replica per id", p.where, p.replicas, v)
		default:
			if other, dup := ids[v]; dup {
				t.Errorf("%s and %s share HEARTH_HUB_ID %q: the other hubs would count them as one", other, p.where, v)
			}
			ids[v] = p.where
		}
	}
}

// binaryOf returns the Hearth binary a command runs: its first word, or the
// binary a shell script execs.
func binaryOf(cmd []string) string {
	if len(cmd) > 0 && strings.HasPrefix(filepath.Base(cmd[0]), "hearth-") {
		return filepath.Base(cmd[0])
	}
	for _, arg := range cmd {
		if m := execLine.FindStringSubmatch(arg); m != nil {
			return m[1]
		}
	}
	return ""
}

var (
	execLine   = regexp.MustCompile(`(?m)^\s*exec\s+(?:\S*/)?(hearth-[a-z0-9-]+)\b`)
	exportLine = regexp.MustCompile(`(?m)^\s*export\s+([A-Za-z_][A-Za-z0-9_]*)=`)
)

// ---------------------------------------------------------------------------
// Compose.

type composeProject struct {
	Services map[string]composeService `yaml:"services"`
	Secrets  map[string]any            `yaml:"secrets"`
}

type composeService struct {
	Command any  `yaml:"command"`
	Scale   *int `yaml:"scale"`
	Deploy  *struct {
		Replicas *int `yaml:"replicas"`
	} `yaml:"deploy"`
	Environment     any `yaml:"environment"`
	DependsOn       any `yaml:"depends_on"`
	Secrets         []any
	StopGracePeriod string `yaml:"stop_grace_period"`
	Healthcheck     *struct {
		Test any `yaml:"test"`
	} `yaml:"healthcheck"`
}

// interpolation is compose's ${VAR}, ${VAR:-default} and ${VAR-default}.
var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}`)

// interpolate resolves s as compose would with none of the variables set.
func interpolate(s string) string {
	return interpolation.ReplaceAllString(s, "$2")
}

func stringList(v any) []string {
	switch v := v.(type) {
	case nil:
		return nil
	case string:
		return strings.Fields(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return []string{fmt.Sprint(v)}
}

func composeEnv(v any) map[string]string {
	out := map[string]string{}
	switch v := v.(type) {
	case map[string]any:
		for k, val := range v {
			if val == nil {
				val = ""
			}
			out[k] = fmt.Sprint(val)
		}
	case []any:
		for _, e := range v {
			k, val, _ := strings.Cut(fmt.Sprint(e), "=")
			out[k] = val
		}
	}
	return out
}

var composeHealthURL = regexp.MustCompile(`https?://[^/\s:]+:(\d+)(/\S*)`)

// checkCompose checks a compose project, raw (interpolated as with no
// variables set) or as `docker-compose config` renders it.
func checkCompose(t *testing.T, src []byte) {
	t.Helper()
	s := settings(t)
	var proj composeProject
	if err := yaml.Unmarshal(src, &proj); err != nil {
		t.Fatalf("parsing compose: %v", err)
	}
	if len(proj.Services) == 0 {
		t.Fatal("compose: no services")
	}
	var procs []*process
	for _, name := range sortedKeys(proj.Services) {
		svc := proj.Services[name]
		cmd := stringList(svc.Command)
		for i := range cmd {
			cmd[i] = interpolate(cmd[i])
		}
		bin := binaryOf(cmd)
		if bin == "" {
			continue // not a Hearth service (rabbitmq)
		}
		p := &process{
			where: "compose service " + name, name: name, binary: bin, replicas: 1,
			env: map[string]string{}, literal: map[string]bool{}, probes: map[string]probeTarget{},
			grace: 10 * time.Second, // compose's default
		}
		if svc.Scale != nil {
			p.replicas = *svc.Scale
		}
		if svc.Deploy != nil && svc.Deploy.Replicas != nil {
			p.replicas = *svc.Deploy.Replicas
		}
		for k, v := range composeEnv(svc.Environment) {
			p.env[k] = interpolate(v)
			p.literal[k] = true
		}
		if g := interpolate(svc.StopGracePeriod); g != "" {
			d, err := time.ParseDuration(g)
			if err != nil {
				t.Errorf("%s: stop_grace_period %q: %v", p.where, g, err)
			}
			p.grace = d
		}
		if svc.Healthcheck == nil {
			t.Errorf("%s: no healthcheck", p.where)
		} else {
			test := strings.Join(stringList(svc.Healthcheck.Test), " ")
			m := composeHealthURL.FindStringSubmatch(test)
			if m == nil {
				t.Errorf("%s: healthcheck %q checks no http://host:port/path URL", p.where, test)
			} else {
				port, _ := strconv.Atoi(m[1])
				p.probes["healthcheck"] = probeTarget{port: port, path: m[2]}
			}
		}
		// Secrets a file setting points at must be given to the service.
		if f, ok := p.env["HEARTH_JWT_SECRET_FILE"]; ok {
			if secret, ok := strings.CutPrefix(f, "/run/secrets/"); ok {
				if !composeHasSecret(svc.Secrets, secret) {
					t.Errorf("%s: HEARTH_JWT_SECRET_FILE=%s but the service has no secret %q", p.where, f, secret)
				}
				if _, ok := proj.Secrets[secret]; !ok {
					t.Errorf("%s: secret %q is not defined at the top level", p.where, secret)
				}
			}
		}
		// Edges and hubs wait for a healthy broker.
		if bin == "hearth-edge" || bin == "hearth-hub" {
			if !composeDependsHealthy(svc.DependsOn, "rabbitmq") {
				t.Errorf("%s: does not depend on rabbitmq with condition service_healthy", p.where)
			}
		}
		procs = append(procs, p)
	}
	if _, ok := proj.Services["rabbitmq"]; !ok {
		t.Errorf("compose: no rabbitmq service")
	}
	checkProcesses(t, s, procs)

	var edges []*process
	for _, p := range procs {
		if p.binary == "hearth-edge" {
			edges = append(edges, p)
		}
	}
	// Edge ids are unique (hub ids: checkProcesses).
	ids := map[string]string{}
	for _, p := range edges {
		id := p.env["HEARTH_EDGE_ID"]
		if p.replicas != 1 {
			t.Errorf("%s: %d replicas share HEARTH_EDGE_ID %q", p.where, p.replicas, id)
		}
		if other, dup := ids[id]; dup {
			t.Errorf("%s and %s share HEARTH_EDGE_ID %q", other, p.where, id)
		}
		ids[id] = p.where
	}
	// The TLS tier lists exactly the edge services.
	var want []string
	for _, p := range edges {
		addr, _ := p.value(s, "HEARTH_EDGE_LISTEN")
		_, port, _ := net.SplitHostPort(addr)
		want = append(want, "http://"+p.name+":"+port)
	}
	for _, p := range procs {
		if p.binary == "hearth-tls" {
			checkEdgeList(t, p, want)
		}
	}
}

func composeHasSecret(list []any, name string) bool {
	for _, e := range list {
		switch e := e.(type) {
		case string:
			if e == name {
				return true
			}
		case map[string]any:
			if e["source"] == name {
				return true
			}
		}
	}
	return false
}

func composeDependsHealthy(dep any, service string) bool {
	m, ok := dep.(map[string]any)
	if !ok {
		return false
	}
	d, ok := m[service].(map[string]any)
	return ok && d["condition"] == "service_healthy"
}

// checkEdgeList checks that the TLS tier proxies to exactly want.
func checkEdgeList(t *testing.T, p *process, want []string) {
	t.Helper()
	var got []string
	for _, e := range strings.Split(p.env["HEARTH_TLS_EDGES"], ",") {
		if e = strings.TrimSpace(e); e != "" {
			got = append(got, e)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: HEARTH_TLS_EDGES lists %v, but the edges are %v: change the edge count and the list together", p.where, got, want)
	}
}

func TestComposeFile(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	checkCompose(t, src)
}

// composeCommand finds docker-compose, or the docker compose plugin.
func composeCommand() ([]string, bool) {
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}, true
	}
	if _, err := exec.LookPath("docker"); err == nil {
		if exec.Command("docker", "compose", "version").Run() == nil {
			return []string{"docker", "compose"}, true
		}
	}
	return nil, false
}

func TestComposeConfigRenders(t *testing.T) {
	t.Parallel()
	cmd, ok := composeCommand()
	if !ok {
		t.Skip("docker-compose (or the docker compose plugin) is not on PATH: `docker-compose config` not run (apt-get install docker-compose); the pure-Go compose checks still ran")
	}
	run := func(args ...string) []byte {
		t.Helper()
		full := append(slices.Clone(cmd), append([]string{"-f", composeFile}, args...)...)
		c := exec.Command(full[0], full[1:]...)
		var stderr bytes.Buffer
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(full, " "), err, stderr.String())
		}
		return out
	}
	run("config", "-q")
	checkCompose(t, run("config"))
}

// ---------------------------------------------------------------------------
// Kubernetes.

type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Replicas    *int           `yaml:"replicas"`
		ServiceName string         `yaml:"serviceName"`
		ClusterIP   string         `yaml:"clusterIP"`
		Selector    map[string]any `yaml:"selector"`
		Template    struct {
			Metadata struct {
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sPodSpec struct {
	TerminationGracePeriodSeconds *int           `yaml:"terminationGracePeriodSeconds"`
	Containers                    []k8sContainer `yaml:"containers"`
	Volumes                       []struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
			Items      []struct {
				Key  string `yaml:"key"`
				Path string `yaml:"path"`
			} `yaml:"items"`
		} `yaml:"secret"`
	} `yaml:"volumes"`
}

type k8sKeyRef struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
			SecretKeyRef    *k8sKeyRef `yaml:"secretKeyRef"`
			ConfigMapKeyRef *k8sKeyRef `yaml:"configMapKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	StartupProbe   *k8sProbe `yaml:"startupProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

func decodeK8s(t *testing.T, where string, src []byte) []k8sObject {
	t.Helper()
	var out []k8sObject
	dec := yaml.NewDecoder(bytes.NewReader(src))
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if o.Kind != "" {
			out = append(out, o)
		}
	}
}

// loadK8sBase reads the kustomize base as written, emulating the few
// kustomize features it uses (resource files, ConfigMap generators) so the
// checks run without kubectl. Anything else it refuses, so that it is
// taught rather than silently wrong.
func loadK8sBase(t *testing.T) []k8sObject {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources          []string `yaml:"resources"`
		ConfigMapGenerator []struct {
			Name     string   `yaml:"name"`
			Envs     []string `yaml:"envs"`
			Literals []string `yaml:"literals"`
			Files    []string `yaml:"files"`
		} `yaml:"configMapGenerator"`
		Unsupported map[string]any `yaml:",inline"`
	}
	if err := yaml.Unmarshal(src, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	for key := range k.Unsupported {
		switch key {
		case "apiVersion", "kind", "namespace", "labels", "commonAnnotations", "images":
		default:
			t.Fatalf("kustomization.yaml uses %q, which loadK8sBase does not emulate: teach it", key)
		}
	}
	var objs []k8sObject
	for _, r := range k.Resources {
		path := filepath.Join(k8sDir, r)
		if fi, err := os.Stat(path); err != nil || fi.IsDir() {
			t.Fatalf("kustomization.yaml: resource %q is not a file; loadK8sBase reads files only", r)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, decodeK8s(t, path, b)...)
	}
	for _, g := range k.ConfigMapGenerator {
		cm := k8sObject{Kind: "ConfigMap", Data: map[string]string{}}
		cm.Metadata.Name = g.Name
		lines := slices.Clone(g.Literals)
		for _, env := range g.Envs {
			b, err := os.ReadFile(filepath.Join(k8sDir, env))
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(string(b), "\n") {
				if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
					lines = append(lines, line)
				}
			}
		}
		for _, line := range lines {
			key, val, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("configMapGenerator %s: %q is not KEY=value", g.Name, line)
			}
			cm.Data[key] = val
		}
		for _, f := range g.Files {
			b, err := os.ReadFile(filepath.Join(k8sDir, f))
			if err != nil {
				t.Fatal(err)
			}
			cm.Data[filepath.Base(f)] = string(b)
		}
		objs = append(objs, cm)
	}
	return objs
}

func isHearthImage(image string) bool {
	name := image
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	name, _, _ = strings.Cut(name, "@")
	name, _, _ = strings.Cut(name, ":")
	return name == "hearth"
}

// checkK8s checks a set of Kubernetes objects: the base as written, or as
// `kubectl kustomize` renders it.
func checkK8s(t *testing.T, objs []k8sObject) {
	t.Helper()
	s := settings(t)
	find := func(kind, name string) *k8sObject {
		for i := range objs {
			if objs[i].Kind == kind && objs[i].Metadata.Name == name {
				return &objs[i]
			}
		}
		return nil
	}
	secretKeys := func(name string) map[string]bool {
		o := find("Secret", name)
		if o == nil {
			return nil
		}
		keys := map[string]bool{}
		for k := range o.Data {
			keys[k] = true
		}
		for k := range o.StringData {
			keys[k] = true
		}
		return keys
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.Kind]++
	}
	if kinds["Namespace"] == 0 {
		t.Errorf("k8s: no Namespace")
	}

	var procs []*process
	type workload struct {
		obj  *k8sObject
		proc *process
	}
	var workloads []workload
	for i := range objs {
		o := &objs[i]
		if o.Kind != "Deployment" && o.Kind != "StatefulSet" {
			continue
		}
		pod := &o.Spec.Template.Spec
		for ci := range pod.Containers {
			c := &pod.Containers[ci]
			bin := binaryOf(slices.Concat(c.Command, c.Args))
			if bin == "" {
				if isHearthImage(c.Image) {
					t.Errorf("%s/%s container %s: runs the hearth image but no hearth-* binary found in its command", o.Kind, o.Metadata.Name, c.Name)
				}
				continue
			}
			replicas := 1
			if o.Spec.Replicas != nil {
				replicas = *o.Spec.Replicas
			}
			p := &process{
				where: fmt.Sprintf("k8s %s/%s container %s", o.Kind, o.Metadata.Name, c.Name),
				name:  o.Metadata.Name, binary: bin, replicas: replicas,
				env: map[string]string{}, literal: map[string]bool{}, probes: map[string]probeTarget{},
				grace: 30 * time.Second, // Kubernetes' default
			}
			if g := pod.TerminationGracePeriodSeconds; g != nil {
				p.grace = time.Duration(*g) * time.Second
			}
			for _, ef := range c.EnvFrom {
				switch {
				case ef.ConfigMapRef != nil:
					cm := find("ConfigMap", ef.ConfigMapRef.Name)
					if cm == nil {
						t.Errorf("%s: envFrom ConfigMap %q does not exist", p.where, ef.ConfigMapRef.Name)
						continue
					}
					for k, v := range cm.Data {
						p.env[k], p.literal[k] = v, true
					}
				case ef.SecretRef != nil:
					keys := secretKeys(ef.SecretRef.Name)
					if keys == nil {
						t.Errorf("%s: envFrom Secret %q does not exist", p.where, ef.SecretRef.Name)
					}
					for k := range keys {
						p.env[k] = "secret:" + ef.SecretRef.Name + "/" + k
					}
				}
			}
			for _, e := range c.Env {
				switch vf := e.ValueFrom; {
				case vf == nil:
					p.env[e.Name], p.literal[e.Name] = e.Value, true
				case vf.FieldRef != nil:
					p.env[e.Name], p.literal[e.Name] = "field:"+vf.FieldRef.FieldPath, false
				case vf.SecretKeyRef != nil:
					ref := vf.SecretKeyRef
					if !secretKeys(ref.Name)[ref.Key] {
						t.Errorf("%s: %s refers to Secret %s key %q, which does not exist", p.where, e.Name, ref.Name, ref.Key)
					}
					p.env[e.Name], p.literal[e.Name] = "secret:"+ref.Name+"/"+ref.Key, false
				case vf.ConfigMapKeyRef != nil:
					ref := vf.ConfigMapKeyRef
					cm := find("ConfigMap", ref.Name)
					if cm == nil {
						t.Errorf("%s: %s refers to ConfigMap %q, which does not exist", p.where, e.Name, ref.Name)
						continue
					}
					v, ok := cm.Data[ref.Key]
					if !ok {
						t.Errorf("%s: %s refers to ConfigMap %s key %q, which does not exist", p.where, e.Name, ref.Name, ref.Key)
					}
					p.env[e.Name], p.literal[e.Name] = v, true
				default:
					p.env[e.Name] = "valueFrom"
				}
			}
			for _, arg := range slices.Concat(c.Command, c.Args) {
				for _, m := range exportLine.FindAllStringSubmatch(arg, -1) {
					p.env[m[1]], p.literal[m[1]] = "script", false
				}
			}
			port := func(v any) int {
				switch v := v.(type) {
				case int:
					return v
				case string:
					for _, cp := range c.Ports {
						if cp.Name == v {
							return cp.ContainerPort
						}
					}
					n, _ := strconv.Atoi(v)
					return n
				}
				return 0
			}
			for kind, pr := range map[string]*k8sProbe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
				switch {
				case pr == nil && kind != "startup":
					t.Errorf("%s: no %s probe", p.where, kind)
				case pr != nil && pr.HTTPGet == nil:
					t.Errorf("%s: %s probe is not an httpGet", p.where, kind)
				case pr != nil:
					p.probes[kind] = probeTarget{port: port(pr.HTTPGet.Port), path: pr.HTTPGet.Path}
				}
			}
			// Prometheus scrapes the port the admin endpoints are on.
			ann := o.Spec.Template.Metadata.Annotations
			if ann["prometheus.io/scrape"] != "true" {
				t.Errorf("%s: pod template lacks prometheus.io/scrape: \"true\"", p.where)
			}
			if r, ok := p.probes["readiness"]; ok && ann["prometheus.io/port"] != strconv.Itoa(r.port) {
				t.Errorf("%s: prometheus.io/port %q, but metrics are served on %d", p.where, ann["prometheus.io/port"], r.port)
			}
			for _, res := range []string{"cpu", "memory"} {
				if c.Resources.Requests[res] == "" || c.Resources.Limits[res] == "" {
					t.Errorf("%s: no %s request and limit", p.where, res)
				}
			}
			// A secret file setting must point into a mounted Secret volume.
			if f, ok := p.env["HEARTH_JWT_SECRET_FILE"]; ok {
				checkSecretFile(t, p, c, pod, f, secretKeys)
			}
			procs = append(procs, p)
			workloads = append(workloads, workload{obj: o, proc: p})
		}
	}
	checkProcesses(t, s, procs)

	var edgeURLs []string
	for _, w := range workloads {
		o, p := w.obj, w.proc
		switch p.binary {
		case "hearth-hub":
			// Any workload kind: hubs need no stable names or addresses
			// (their ids: checkProcesses).
			checkPDB(t, objs, o)
		case "hearth-edge":
			if o.Kind != "StatefulSet" {
				t.Errorf("%s: want a StatefulSet (stable pod names are the edge ids and the TLS tier's addresses)", p.where)
				continue
			}
			if p.env["HEARTH_EDGE_ID"] != "field:metadata.name" {
				t.Errorf("%s: HEARTH_EDGE_ID must come from the pod name (fieldRef metadata.name), got %q", p.where, p.env["HEARTH_EDGE_ID"])
			}
			svc := find("Service", o.Spec.ServiceName)
			if svc == nil || svc.Spec.ClusterIP != "None" {
				t.Errorf("%s: serviceName %q is not a headless Service", p.where, o.Spec.ServiceName)
			}
			checkPDB(t, objs, o)
			addr, _ := p.value(s, "HEARTH_EDGE_LISTEN")
			_, port, _ := net.SplitHostPort(addr)
			for i := 0; i < p.replicas; i++ {
				edgeURLs = append(edgeURLs, fmt.Sprintf("http://%s-%d.%s:%s", o.Metadata.Name, i, o.Spec.ServiceName, port))
			}
		}
	}
	for _, p := range procs {
		if p.binary == "hearth-tls" {
			checkEdgeList(t, p, edgeURLs)
		}
	}
}

// checkSecretFile checks that path lies in a Secret volume mounted in c
// and that the Secret holds the file.
func checkSecretFile(t *testing.T, p *process, c *k8sContainer, pod *k8sPodSpec, path string, secretKeys func(string) map[string]bool) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != vm.Name || v.Secret == nil {
				continue
			}
			key := rel
			if len(v.Secret.Items) > 0 {
				key = ""
				for _, it := range v.Secret.Items {
					if it.Path == rel {
						key = it.Key
					}
				}
			}
			if key == "" || !secretKeys(v.Secret.SecretName)[key] {
				t.Errorf("%s: %s is not a key of Secret %s", p.where, path, v.Secret.SecretName)
			}
			return
		}
	}
	t.Errorf("%s: HEARTH_JWT_SECRET_FILE=%s is not in a mounted Secret volume", p.where, path)
}

// checkPDB checks that a PodDisruptionBudget covers o's pods.
func checkPDB(t *testing.T, objs []k8sObject, o *k8sObject) {
	t.Helper()
	labels := o.Spec.Template.Metadata.Labels
	for _, pdb := range objs {
		if pdb.Kind != "PodDisruptionBudget" {
			continue
		}
		ml, _ := pdb.Spec.Selector["matchLabels"].(map[string]any)
		if len(ml) == 0 {
			continue
		}
		match := true
		for k, v := range ml {
			if labels[k] != fmt.Sprint(v) {
				match = false
			}
		}
		if match {
			return
		}
	}
	t.Errorf("k8s %s/%s: no PodDisruptionBudget selects its pods", o.Kind, o.Metadata.Name)
}

func TestK8sBase(t *testing.T) {
	t.Parallel()
	checkK8s(t, loadK8sBase(t))
}

func TestKustomizeRenders(t *testing.T) {
	t.Parallel()
	var cmd []string
	if _, err := exec.LookPath("kubectl"); err == nil {
		cmd = []string{"kubectl", "kustomize", k8sDir}
	} else if _, err := exec.LookPath("kustomize"); err == nil {
		cmd = []string{"kustomize", "build", k8sDir}
	} else {
		t.Skip("neither kubectl nor kustomize is on PATH: the base was not rendered (the pure-Go k8s checks still ran)")
	}
	c := exec.Command(cmd[0], cmd[1:]...)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd, " "), err, stderr.String())
	}
	objs := decodeK8s(t, strings.Join(cmd, " "), out)
	checkK8s(t, objs)
	// Every object lands in the namespace (the Namespace itself aside).
	for _, o := range objs {
		if o.Kind != "Namespace" && o.Metadata.Namespace != "hearth" {
			t.Errorf("%s/%s: namespace %q, want hearth", o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
