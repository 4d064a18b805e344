package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// MaxManifestBytes bounds a manifest file.
const MaxManifestBytes = 1 << 20

// Manifest is an app manifest (the v3 manifest schema's subset minicf's
// Cloud Controller applies): what `POST /v3/spaces/:guid/actions/
// apply_manifest` receives.
type Manifest struct {
	// Version is the manifest schema version: 0 (absent) or 1.
	Version      int
	Applications []Application
}

// Application is one entry of applications:. Pointers and nil slices/maps
// mean "not given": the Cloud Controller then keeps what the app has.
type Application struct {
	Name string
	// Path is the app's directory or archive (relative to the manifest);
	// the Cloud Controller ignores it.
	Path string
	// Command is the web process's start command; a pointer to "" is
	// written as `command: null`, which resets it.
	Command    *string
	Instances  *int
	Memory     string // e.g. 256M, 1G
	DiskQuota  string // disk-quota
	Buildpacks []string
	Stack      string
	Env        map[string]string
	// HealthCheckType is port, http, process (or none).
	HealthCheckType         string
	HealthCheckHTTPEndpoint string
	// Timeout is the health check's start timeout in seconds.
	Timeout      *int
	Routes       []ManifestRoute
	NoRoute      bool
	RandomRoute  bool
	DefaultRoute bool
}

// ManifestRoute is one entry of routes:.
type ManifestRoute struct {
	Route    string // host.domain[:port][/path]
	Protocol string // http1, http2 or tcp; "" = default
	// Options are per-route options, e.g. loadbalancing: least-connection.
	Options map[string]string
}

// ManifestError is a manifest that cannot be used: Line is 1-based (0 when
// unknown), Key names the offending key as a path (applications[0].instances).
type ManifestError struct {
	Line int
	Key  string
	Msg  string
}

func (e *ManifestError) Error() string {
	var b strings.Builder
	b.WriteString("manifest")
	if e.Line > 0 {
		fmt.Fprintf(&b, " line %d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

var (
	memoryRE = regexp.MustCompile(`^[0-9]+(?:[BbKkMmGgTt]|[KkMmGgTt][Bb])$`)
	// keys of an application entry, in the order Marshal writes them.
	appKeys = []string{"name", "path", "instances", "memory", "disk-quota", "command", "buildpacks", "stack",
		"env", "health-check-type", "health-check-http-endpoint", "timeout", "routes", "no-route",
		"random-route", "default-route"}
	routeKeys = []string{"route", "protocol", "options"}
)

// ParseManifest parses a manifest strictly: an unknown key, a value of the
// wrong type or a duplicate key is an error naming the key and its line.
func ParseManifest(data []byte) (m *Manifest, err error) {
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, &ManifestError{Msg: fmt.Sprintf("invalid YAML (%v)", r)}
		}
	}()
	if len(data) > MaxManifestBytes {
		return nil, &ManifestError{Msg: fmt.Sprintf("larger than %d bytes", MaxManifestBytes)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ManifestError{Msg: "empty: it needs an applications: list"}
		}
		return nil, &ManifestError{Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &ManifestError{Line: extra.Line, Msg: "holds more than one YAML document"}
	} else if !errors.Is(err, io.EOF) {
		return nil, &ManifestError{Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) != 1 {
			return nil, &ManifestError{Msg: "empty: it needs an applications: list"}
		}
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, typeErr(root, "", "a mapping with an applications: list")
	}
	m = &Manifest{}
	seenApps := false
	err = eachKey(root, "", func(key string, k, v *yaml.Node) error {
		switch key {
		case "version":
			n, err := intValue(v, key)
			if err != nil {
				return err
			}
			if n != 1 {
				return &ManifestError{Line: v.Line, Key: key, Msg: fmt.Sprintf("unsupported version %d: only 1 is", n)}
			}
			m.Version = n
		case "applications":
			seenApps = true
			if v.Kind != yaml.SequenceNode {
				return typeErr(v, key, "a list of applications")
			}
			for i, an := range v.Content {
				app, err := parseApplication(an, fmt.Sprintf("applications[%d]", i))
				if err != nil {
					return err
				}
				m.Applications = append(m.Applications, *app)
			}
		default:
			return unknownKey(k, "", key, []string{"applications", "version"})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !seenApps || len(m.Applications) == 0 {
		return nil, &ManifestError{Line: root.Line, Key: "applications", Msg: "the manifest lists no applications"}
	}
	names := map[string]int{}
	for i, a := range m.Applications {
		if j, dup := names[a.Name]; dup {
			return nil, &ManifestError{Key: fmt.Sprintf("applications[%d].name", i),
				Msg: fmt.Sprintf("app %q is listed twice (also applications[%d])", a.Name, j)}
		}
		names[a.Name] = i
	}
	return m, nil
}

func parseApplication(n *yaml.Node, at string) (*Application, error) {
	if n.Kind != yaml.MappingNode {
		return nil, typeErr(n, at, "a mapping (name: ..., path: ...)")
	}
	app := &Application{}
	hasName := false
	err := eachKey(n, at, func(key string, k, v *yaml.Node) error {
		path := at + "." + key
		var err error
		switch key {
		case "name":
			hasName = true
			if app.Name, err = stringValue(v, path); err == nil && strings.TrimSpace(app.Name) == "" {
				err = &ManifestError{Line: v.Line, Key: path, Msg: "must not be empty"}
			}
		case "path":
			app.Path, err = stringValue(v, path)
		case "command":
			if isNull(v) {
				app.Command = new(string)
				return nil
			}
			var s string
			s, err = stringValue(v, path)
			app.Command = &s
		case "instances":
			var i int
			if i, err = intValue(v, path); err == nil {
				if i < 0 {
					return &ManifestError{Line: v.Line, Key: path, Msg: "must not be negative"}
				}
				app.Instances = &i
			}
		case "memory":
			app.Memory, err = sizeValue(v, path)
		case "disk-quota", "disk_quota":
			app.DiskQuota, err = sizeValue(v, path)
		case "buildpacks":
			app.Buildpacks, err = stringList(v, path)
		case "stack":
			app.Stack, err = stringValue(v, path)
		case "env":
			app.Env, err = stringMap(v, path)
		case "health-check-type":
			if app.HealthCheckType, err = stringValue(v, path); err == nil {
				switch app.HealthCheckType {
				case "port", "http", "process", "none":
				default:
					return &ManifestError{Line: v.Line, Key: path, Msg: fmt.Sprintf("%q is not one of port, http, process", app.HealthCheckType)}
				}
			}
		case "health-check-http-endpoint":
			app.HealthCheckHTTPEndpoint, err = stringValue(v, path)
		case "timeout":
			var i int
			if i, err = intValue(v, path); err == nil {
				if i < 1 {
					return &ManifestError{Line: v.Line, Key: path, Msg: "must be at least 1 (seconds)"}
				}
				app.Timeout = &i
			}
		case "routes":
			app.Routes, err = parseRoutes(v, path)
		case "no-route":
			app.NoRoute, err = boolValue(v, path)
		case "random-route":
			app.RandomRoute, err = boolValue(v, path)
		case "default-route":
			app.DefaultRoute, err = boolValue(v, path)
		default:
			return unknownKey(k, at, key, appKeys)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if !hasName {
		return nil, &ManifestError{Line: n.Line, Key: at, Msg: "has no name"}
	}
	return app, nil
}

func parseRoutes(n *yaml.Node, at string) ([]ManifestRoute, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, typeErr(n, at, "a list of - route: HOST.DOMAIN[/PATH]")
	}
	routes := []ManifestRoute{}
	for i, rn := range n.Content {
		rat := fmt.Sprintf("%s[%d]", at, i)
		if rn.Kind != yaml.MappingNode {
			return nil, typeErr(rn, rat, "a mapping: - route: HOST.DOMAIN[/PATH]")
		}
		var r ManifestRoute
		has := false
		err := eachKey(rn, rat, func(key string, k, v *yaml.Node) error {
			path := rat + "." + key
			var err error
			switch key {
			case "route":
				has = true
				if r.Route, err = stringValue(v, path); err == nil && strings.TrimSpace(r.Route) == "" {
					err = &ManifestError{Line: v.Line, Key: path, Msg: "must not be empty"}
				}
			case "protocol":
				if r.Protocol, err = stringValue(v, path); err == nil {
					switch r.Protocol {
					case "http1", "http2", "tcp":
					default:
						err = &ManifestError{Line: v.Line, Key: path, Msg: fmt.Sprintf("%q is not one of http1, http2, tcp", r.Protocol)}
					}
				}
			case "options":
				r.Options, err = stringMap(v, path)
			default:
				return unknownKey(k, rat, key, routeKeys)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		if !has {
			return nil, &ManifestError{Line: rn.Line, Key: rat, Msg: "has no route: key"}
		}
		routes = append(routes, r)
	}
	return routes, nil
}

// eachKey calls f for each key of mapping n, rejecting non-string and
// duplicate keys, aliases and merge keys.
func eachKey(n *yaml.Node, at string, f func(key string, k, v *yaml.Node) error) error {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || (k.ShortTag() != "!!str" && k.ShortTag() != "!!merge") {
			return &ManifestError{Line: k.Line, Key: at, Msg: "keys must be plain strings"}
		}
		if k.ShortTag() == "!!merge" {
			return &ManifestError{Line: k.Line, Key: at, Msg: "merge keys (<<) are not supported"}
		}
		if v.Kind == yaml.AliasNode || k.Kind == yaml.AliasNode {
			return &ManifestError{Line: v.Line, Key: join(at, k.Value), Msg: "YAML aliases (*name) are not supported"}
		}
		if line, dup := seen[k.Value]; dup {
			return &ManifestError{Line: k.Line, Key: join(at, k.Value), Msg: fmt.Sprintf("given twice (also on line %d)", line)}
		}
		seen[k.Value] = k.Line
		if err := f(k.Value, k, v); err != nil {
			return err
		}
	}
	return nil
}

func join(at, key string) string {
	if at == "" {
		return key
	}
	return at + "." + key
}

func unknownKey(k *yaml.Node, at, key string, known []string) error {
	msg := "unknown key"
	if hint := closest(key, known); hint != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", hint)
	} else {
		sorted := append([]string(nil), known...)
		sort.Strings(sorted)
		msg += "; known keys: " + strings.Join(sorted, ", ")
	}
	return &ManifestError{Line: k.Line, Key: join(at, strconv.Quote(key)), Msg: msg}
}

// closest returns the known key nearest to key by edit distance, if near.
func closest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func typeErr(n *yaml.Node, key, want string) error {
	got := "a " + kindName(n)
	if n.Kind == yaml.ScalarNode {
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		got = fmt.Sprintf("%s %q", strings.TrimPrefix(n.ShortTag(), "!!"), v)
	}
	return &ManifestError{Line: n.Line, Key: key, Msg: fmt.Sprintf("must be %s, not %s", want, got)}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	}
	return "scalar"
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// stringValue accepts a string scalar (numbers are taken as written).
func stringValue(n *yaml.Node, key string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", typeErr(n, key, "a string")
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float":
	default:
		return "", typeErr(n, key, "a string")
	}
	if !utf8.ValidString(n.Value) {
		return "", &ManifestError{Line: n.Line, Key: key, Msg: "is not valid UTF-8"}
	}
	return n.Value, nil
}

func intValue(n *yaml.Node, key string) (int, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return 0, typeErr(n, key, "a whole number")
	}
	var i int64
	if err := n.Decode(&i); err != nil || i > 1<<31-1 || i < -(1<<31) {
		return 0, &ManifestError{Line: n.Line, Key: key, Msg: fmt.Sprintf("%q is not a whole number in range", n.Value)}
	}
	return int(i), nil
}

func boolValue(n *yaml.Node, key string) (bool, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		return false, typeErr(n, key, "true or false")
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		return false, typeErr(n, key, "true or false")
	}
	return b, nil
}

func sizeValue(n *yaml.Node, key string) (string, error) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		return "", &ManifestError{Line: n.Line, Key: key, Msg: fmt.Sprintf("%s needs a unit: %sM or %sG", n.Value, n.Value, n.Value)}
	}
	s, err := stringValue(n, key)
	if err != nil {
		return "", err
	}
	if !memoryRE.MatchString(s) {
		return "", &ManifestError{Line: n.Line, Key: key, Msg: fmt.Sprintf("%q must be a number with a unit: B, K, KB, M, MB, G, GB, T or TB", s)}
	}
	return s, nil
}

func stringList(n *yaml.Node, key string) ([]string, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, typeErr(n, key, "a list of strings")
	}
	out := []string{}
	for i, e := range n.Content {
		s, err := stringValue(e, fmt.Sprintf("%s[%d]", key, i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func stringMap(n *yaml.Node, key string) (map[string]string, error) {
	if n.Kind != yaml.MappingNode {
		return nil, typeErr(n, key, "a mapping of names to values")
	}
	out := map[string]string{}
	err := eachKey(n, key, func(k string, kn, v *yaml.Node) error {
		if !utf8.ValidString(k) {
			return &ManifestError{Line: kn.Line, Key: key, Msg: "keys must be valid UTF-8"}
		}
		if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!bool" {
			out[k] = v.Value
			return nil
		}
		s, err := stringValue(v, join(key, k))
		out[k] = s
		return err
	})
	return out, err
}

// Marshal renders m as YAML that ParseManifest reads back to the same value.
func (m *Manifest) Marshal() ([]byte, error) {
	root := mapping()
	if m.Version != 0 {
		addKV(root, "version", intNode(m.Version))
	}
	apps := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for _, a := range m.Applications {
		apps.Content = append(apps.Content, a.node())
	}
	addKV(root, "applications", apps)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (a *Application) node() *yaml.Node {
	n := mapping()
	addKV(n, "name", strNode(a.Name))
	if a.Path != "" {
		addKV(n, "path", strNode(a.Path))
	}
	if a.Instances != nil {
		addKV(n, "instances", intNode(*a.Instances))
	}
	if a.Memory != "" {
		addKV(n, "memory", strNode(a.Memory))
	}
	if a.DiskQuota != "" {
		addKV(n, "disk-quota", strNode(a.DiskQuota))
	}
	if a.Command != nil {
		if *a.Command == "" {
			addKV(n, "command", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"})
		} else {
			addKV(n, "command", strNode(*a.Command))
		}
	}
	if a.Buildpacks != nil {
		addKV(n, "buildpacks", strSeq(a.Buildpacks))
	}
	if a.Stack != "" {
		addKV(n, "stack", strNode(a.Stack))
	}
	if a.Env != nil {
		addKV(n, "env", strMapNode(a.Env))
	}
	if a.HealthCheckType != "" {
		addKV(n, "health-check-type", strNode(a.HealthCheckType))
	}
	if a.HealthCheckHTTPEndpoint != "" {
		addKV(n, "health-check-http-endpoint", strNode(a.HealthCheckHTTPEndpoint))
	}
	if a.Timeout != nil {
		addKV(n, "timeout", intNode(*a.Timeout))
	}
	if a.Routes != nil {
		rs := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, r := range a.Routes {
			rn := mapping()
			addKV(rn, "route", strNode(r.Route))
			if r.Protocol != "" {
				addKV(rn, "protocol", strNode(r.Protocol))
			}
			if r.Options != nil {
				addKV(rn, "options", strMapNode(r.Options))
			}
			rs.Content = append(rs.Content, rn)
		}
		addKV(n, "routes", rs)
	}
	if a.NoRoute {
		addKV(n, "no-route", boolNode(true))
	}
	if a.RandomRoute {
		addKV(n, "random-route", boolNode(true))
	}
	if a.DefaultRoute {
		addKV(n, "default-route", boolNode(true))
	}
	return n
}

func mapping() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"} }

func addKV(m *yaml.Node, k string, v *yaml.Node) {
	m.Content = append(m.Content, strNode(k), v)
}

func strNode(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	if strings.ContainsAny(s, "\n\r\t") || s != strings.TrimSpace(s) || !printable(s) {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0xfeff || r == utf8.RuneError || r > 0xfffd && r < 0x10000 {
			return false
		}
	}
	return true
}

func intNode(i int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(i)}
}

func boolNode(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}

func strSeq(ss []string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for _, s := range ss {
		n.Content = append(n.Content, strNode(s))
	}
	return n
}

func strMapNode(m map[string]string) *yaml.Node {
	n := mapping()
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		addKV(n, k, strNode(m[k]))
	}
	return n
}
