package trace

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Timeline is a route's journey as `minicf trace` shows it.
type Timeline struct {
	Route string `json:"route"`
	Steps []Step `json:"steps"`
	// TotalMs is the time from the first step to the last.
	TotalMs float64 `json:"total_ms"`
	// Missing are the places of flow 1 with no event (yet), each as its
	// step names joined by "|".
	Missing []string `json:"missing,omitempty"`
	// Note explains a journey that skips steps: a route mapped to an app
	// whose instances already ran.
	Note string `json:"note,omitempty"`
	// Request is the request `minicf trace` sent through the router.
	Request *Request `json:"request,omitempty"`
}

// Step is an event on the timeline. Since is from the first step, Delta
// from the previous one; each Delta is the difference of consecutive
// Sinces, so the deltas add up to the last Since.
type Step struct {
	Event
	SinceNs int64   `json:"since_ns"`
	DeltaNs int64   `json:"delta_ns"`
	SinceMs float64 `json:"since_ms"`
	DeltaMs float64 `json:"delta_ms"`
}

// Request is one request through the router and the path it took back.
type Request struct {
	Method     string  `json:"method"`
	URL        string  `json:"url"`
	Host       string  `json:"host"`
	Status     int     `json:"status,omitempty"`
	RequestID  string  `json:"request_id,omitempty"`
	DurationMs float64 `json:"duration_ms"`
	Error      string  `json:"error,omitempty"`
	// First says the router's first-request event is this request: it was
	// the first the router sent to its endpoint.
	First bool `json:"first"`
	// Endpoint and InstanceGUID are where the request went, and FoundBy
	// how that is known: "first-request event", "app answer" or "only
	// endpoint".
	Endpoint     string `json:"endpoint,omitempty"`
	InstanceGUID string `json:"instance_guid,omitempty"`
	FoundBy      string `json:"found_by,omitempty"`
	// Hops is the request's path: router, cell (DNAT), envoy, app.
	Hops []Hop `json:"hops,omitempty"`
}

// Hop is one stop of a request's path.
type Hop struct {
	Component string `json:"component"`
	Address   string `json:"address"`
	Detail    string `json:"detail"`
}

// NewTimeline orders events by time and measures each step from the
// first and from the previous.
func NewTimeline(route string, events []Event) *Timeline {
	evs := append([]Event(nil), events...)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	t := &Timeline{Route: NormalizeRoute(route), Steps: make([]Step, 0, len(evs))}
	seen := map[int]bool{}
	for i, e := range evs {
		s := Step{Event: e}
		if i > 0 {
			s.SinceNs = e.Time.Sub(evs[0].Time).Nanoseconds()
			s.DeltaNs = s.SinceNs - t.Steps[i-1].SinceNs
		}
		s.SinceMs, s.DeltaMs = ms(s.SinceNs), ms(s.DeltaNs)
		t.Steps = append(t.Steps, s)
		seen[StepOrder(e.Step)] = true
	}
	if n := len(t.Steps); n > 0 {
		t.TotalMs = t.Steps[n-1].SinceMs
	}
	// A route mapped to running instances: they were placed, created and
	// started before this journey began, and only registering is new.
	earlier := seen[StepOrder(StepRouteRegistered)] && !seen[StepOrder(StepContainerCreated)]
	if earlier {
		t.Note = "the instances were already running when the route was mapped: their placement, container, DNAT, " +
			"envoy and RUNNING steps happened before this journey began (minicf trace shows them for the route they started with)"
	}
	for _, f := range Flow {
		if earlier && f.Order > StepOrder(StepLRPDesired) && f.Order < StepOrder(StepRouteRegistered) {
			continue
		}
		if !seen[f.Order] {
			t.Missing = append(t.Missing, strings.Join(f.Steps, "|"))
		}
	}
	return t
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// last is the latest step named step of instance (any instance when "").
func (t *Timeline) last(step, instance string) *Step {
	for i := len(t.Steps) - 1; i >= 0; i-- {
		s := &t.Steps[i]
		if s.Step == step && (instance == "" || s.InstanceGUID == instance) {
			return s
		}
	}
	return nil
}

// Endpoints are the pool entries the router added for the route, the
// latest per address.
func (t *Timeline) Endpoints() []PoolEntry {
	by := map[string]PoolEntry{}
	var order []string
	for _, s := range t.Steps {
		if s.Step != StepRouteAdded {
			continue
		}
		var p PoolEntry
		if json.Unmarshal(s.Artifact, &p) != nil || p.Address == "" {
			continue
		}
		if _, ok := by[p.Address]; !ok {
			order = append(order, p.Address)
		}
		by[p.Address] = p
	}
	out := make([]PoolEntry, 0, len(order))
	for _, a := range order {
		out = append(out, by[a])
	}
	return out
}

// PoolEntry is the part of a route-added artifact (a /routes entry) the
// request path needs.
type PoolEntry struct {
	Address             string `json:"address"`
	TLS                 bool   `json:"tls"`
	PrivateInstanceID   string `json:"private_instance_id"`
	ServerCertDomainSAN string `json:"server_cert_domain_san"`
}

// FirstRequest is a first-request artifact.
type FirstRequest struct {
	RequestID string `json:"request_id"`
	Endpoint  string `json:"endpoint"`
	Status    int    `json:"status"`
}

// Locate finds where req went: the first-request event that carries its
// request id, else the instance the app's answer names (a JSON body with
// instance_guid, as examples/hello gives), else the route's only
// endpoint. Then it draws the path back.
func (t *Timeline) Locate(req *Request, answer []byte) {
	if req == nil || req.RequestID == "" {
		return
	}
	for _, s := range t.Steps {
		var fr FirstRequest
		if s.Step == StepFirstRequest && json.Unmarshal(s.Artifact, &fr) == nil && fr.RequestID == req.RequestID {
			req.First, req.Endpoint, req.InstanceGUID, req.FoundBy = true, fr.Endpoint, s.InstanceGUID, "first-request event"
		}
	}
	eps := t.Endpoints()
	if req.InstanceGUID == "" {
		var a struct {
			InstanceGUID string `json:"instance_guid"`
		}
		if json.Unmarshal(answer, &a) == nil && a.InstanceGUID != "" {
			for _, p := range eps {
				if p.PrivateInstanceID == a.InstanceGUID {
					req.Endpoint, req.InstanceGUID, req.FoundBy = p.Address, a.InstanceGUID, "app answer"
				}
			}
		}
	}
	if req.InstanceGUID == "" && len(eps) == 1 {
		req.Endpoint, req.InstanceGUID, req.FoundBy = eps[0].Address, eps[0].PrivateInstanceID, "only endpoint"
	}
	if req.InstanceGUID != "" {
		req.Hops = t.path(req)
	}
}

// path draws router → cell ip:port → DNAT → envoy → app for the
// instance req went to, from that instance's events.
func (t *Timeline) path(req *Request) []Hop {
	inst := req.InstanceGUID
	var pe PoolEntry
	for _, p := range t.Endpoints() {
		if p.Address == req.Endpoint || req.Endpoint == "" && p.PrivateInstanceID == inst {
			pe = p
		}
	}
	if pe.Address == "" {
		pe.Address = req.Endpoint
	}
	routerAddr := ""
	if u := strings.TrimPrefix(strings.TrimPrefix(req.URL, "http://"), "https://"); u != "" {
		routerAddr, _, _ = strings.Cut(u, "/")
	}
	how := "plain HTTP"
	if pe.TLS {
		how = "TLS, checking the certificate's SAN is " + pe.ServerCertDomainSAN
	}
	hops := []Hop{{Component: "router", Address: routerAddr,
		Detail: fmt.Sprintf("looks up %s in its route table and picks %s from the pool (%s)", t.Route, pe.Address, how)}}
	next := pe.Address
	if s := t.last(StepDNATApplied, inst); s != nil {
		var a DNATArtifact
		json.Unmarshal(s.Artifact, &a)
		_, port, _ := net.SplitHostPort(pe.Address)
		for _, r := range a.Rules {
			if strings.Contains(r, "--dport "+port+" ") {
				if i := strings.Index(r, "--to-destination "); i >= 0 {
					next = strings.Fields(r[i+len("--to-destination "):])[0]
				}
				hops = append(hops, Hop{Component: "cell", Address: pe.Address,
					Detail: fmt.Sprintf("DNAT in %s: %s", a.Namespace, r)})
			}
		}
	} else if t.last(StepDNATNotInProcessMode, inst) != nil {
		hops = append(hops, Hop{Component: "cell", Address: pe.Address,
			Detail: "process mode: no network namespace and no DNAT; the port is the instance's own on 127.0.0.1"})
	}
	if s := t.last(StepEnvoyListening, inst); s != nil && pe.TLS {
		var a EnvoyArtifact
		json.Unmarshal(s.Artifact, &a)
		addr := next
		if a.Address != "" && !strings.HasPrefix(a.Address, "0.0.0.0:") {
			addr = a.Address
		}
		hops = append(hops, Hop{Component: "envoy", Address: addr,
			Detail: fmt.Sprintf("terminates TLS as CN %s (serial %s, not after %s) and proxies to %s",
				a.CN, a.Serial, a.NotAfter.UTC().Format(time.RFC3339), a.ProxiesTo)})
		if a.ProxiesTo != "" {
			next = a.ProxiesTo
		}
	}
	app := Hop{Component: "app", Address: next, Detail: "answers"}
	if req.Status != 0 {
		app.Detail += fmt.Sprintf(" %d", req.Status)
	}
	if t.last(StepDNATApplied, inst) != nil && strings.HasPrefix(next, "127.0.0.1:") {
		app.Detail += " on the container's own loopback"
	}
	if s := t.last(StepActualLRPRunning, inst); s != nil {
		var a struct {
			Index int32 `json:"index"`
		}
		json.Unmarshal(s.Artifact, &a)
		app.Detail += fmt.Sprintf(" (instance %s, index %d, on %s)", inst, a.Index, s.CellID)
	}
	return append(hops, app)
}

// DNATArtifact is a dnat-applied artifact.
type DNATArtifact struct {
	Namespace string   `json:"namespace"`
	Table     string   `json:"table"`
	Chain     string   `json:"chain"`
	Rules     []string `json:"rules"`
}

// EnvoyArtifact is an envoy-listening artifact.
type EnvoyArtifact struct {
	Address     string    `json:"address"`
	ProxiesTo   string    `json:"proxies_to"`
	CN          string    `json:"cn"`
	Serial      string    `json:"serial"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	DNSNames    []string  `json:"dns_names,omitempty"`
	IPAddresses []string  `json:"ip_addresses,omitempty"`
	Issuer      string    `json:"issuer,omitempty"`
}

const indent = "                          " // under the step column

// Render writes the timeline for people: one line per step (time since
// the first step, delta from the previous, step, component, keys), then
// what happened and the artifact; then the request and its path.
func (t *Timeline) Render(w io.Writer) {
	if len(t.Steps) == 0 {
		fmt.Fprintf(w, "No trace events for %s (yet). Is the route mapped to a started app? Events are kept in memory by `minicf up`, the last %d only.\n", t.Route, DefaultCapacity)
	} else {
		fmt.Fprintf(w, "Route %s: %d steps in %s ms\n\n", t.Route, len(t.Steps), fmtTenths(tenths(t.Steps[len(t.Steps)-1].SinceNs)))
		fmt.Fprintf(w, "%10s %10s  %-25s %-14s %s\n", "since ms", "delta ms", "step", "component", "keys")
		for _, s := range t.Steps {
			RenderStep(w, s)
		}
	}
	if t.Note != "" {
		fmt.Fprintf(w, "\nNote: %s.\n", t.Note)
	}
	if len(t.Missing) > 0 {
		fmt.Fprintf(w, "\nNot seen (yet): %s\n", strings.Join(t.Missing, ", "))
	}
	if r := t.Request; r != nil {
		fmt.Fprintln(w)
		if r.Error != "" {
			fmt.Fprintf(w, "Request %s %s (Host %s): %s\n", r.Method, r.URL, r.Host, r.Error)
			return
		}
		fmt.Fprintf(w, "Request %s %s (Host %s) -> %d in %s ms, X-Vcap-Request-Id %s\n", r.Method, r.URL, r.Host, r.Status, fmtMs(r.DurationMs), r.RequestID)
		switch {
		case r.First:
			fmt.Fprintf(w, "  the first request the router sent to this endpoint: it is the first-request step above\n")
		case r.FoundBy != "":
			fmt.Fprintf(w, "  endpoint known by the %s\n", r.FoundBy)
		case len(t.Endpoints()) > 1:
			fmt.Fprintf(w, "  one of %d endpoints answered; the app did not say which\n", len(t.Endpoints()))
		}
		for _, h := range r.Hops {
			fmt.Fprintf(w, "  %-8s %-22s %s\n", h.Component, h.Address, h.Detail)
		}
	}
}

// RenderStep writes one step as Render does (and --follow). Times are
// shown in tenths of a millisecond, the delta as the difference of the
// rounded times, so that the column of deltas adds up to the last time.
func RenderStep(w io.Writer, s Step) {
	since := tenths(s.SinceNs)
	delta := since - tenths(s.SinceNs-s.DeltaNs)
	fmt.Fprintf(w, "%10s %10s  %-25s %-14s %s\n", fmtTenths(since), "+"+fmtTenths(delta), s.Step, s.Component, keys(s.Event))
	if s.Detail != "" {
		fmt.Fprintf(w, "%s%s\n", indent, s.Detail)
	}
	for _, l := range artifactLines(s.Event) {
		fmt.Fprintf(w, "%s%s\n", indent, l)
	}
}

func fmtMs(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// tenths rounds nanoseconds to tenths of a millisecond.
func tenths(ns int64) int64 {
	if ns < 0 {
		return -tenths(-ns)
	}
	return (ns + 50_000) / 100_000
}

func fmtTenths(v int64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%d", sign, v/10, v%10)
}

func keys(e Event) string {
	var parts []string
	add := func(name, v string) {
		if v != "" {
			parts = append(parts, name+" "+v)
		}
	}
	add("app", short(e.AppGUID))
	add("process", short(e.ProcessGUID))
	add("instance", short(e.InstanceGUID))
	add("cell", e.CellID)
	return strings.Join(parts, ", ")
}

// artifactLines shows the artifact: the routes of a DesiredLRP, the
// rules of a DNAT step, the NATS message, the pool entry, or the JSON.
func artifactLines(e Event) []string {
	if len(e.Artifact) == 0 {
		return nil
	}
	switch e.Step {
	case StepLRPDesired, StepLRPUpdated:
		var a struct {
			Routes json.RawMessage `json:"routes"`
		}
		if json.Unmarshal(e.Artifact, &a) == nil && len(a.Routes) > 0 {
			return []string{"routes " + compact(a.Routes)}
		}
	case StepDNATApplied:
		var a DNATArtifact
		if json.Unmarshal(e.Artifact, &a) == nil && len(a.Rules) > 0 {
			out := []string{fmt.Sprintf("ip netns exec %s iptables -t %s -S:", a.Namespace, a.Table)}
			for _, r := range a.Rules {
				out = append(out, "  "+r)
			}
			return out
		}
	case StepRouteRegistered:
		return []string{"router.register " + compact(e.Artifact)}
	case StepRouteAdded:
		return []string{"pool entry " + compact(e.Artifact)}
	}
	return []string{compact(e.Artifact)}
}

func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}
