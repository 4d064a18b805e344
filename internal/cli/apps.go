package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/minicf/minicf/internal/cc/ccapi"
	"github.com/spf13/cobra"
)

// AppNotFoundError is an app name the targeted space does not hold.
type AppNotFoundError struct{ Name string }

func (e *AppNotFoundError) Error() string { return fmt.Sprintf("App '%s' not found.", e.Name) }

// findApp looks an app up by name in the targeted space.
func (s *session) findApp(ctx context.Context, name string) (*ccapi.App, error) {
	app, err := getFirst[ccapi.App](ctx, s.api, query("/v3/apps", "names", name, "space_guids", s.cfg.SpaceGUID))
	if err != nil {
		return nil, s.appErr(err, name)
	}
	if app == nil {
		return nil, &AppNotFoundError{Name: name}
	}
	return app, nil
}

// appErr turns a 404 "App not found" into AppNotFoundError.
func (s *session) appErr(err error, name string) error {
	var ae *APIError
	if errors.As(err, &ae) && ae.Is404("App not found") {
		return &AppNotFoundError{Name: name}
	}
	return err
}

func appsCommand(o Options) *cobra.Command {
	return &cobra.Command{
		Use:   "apps",
		Short: "List all apps in the target space",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, func(ctx context.Context, s *session) error { return s.apps(ctx) })
		},
	}
}

// apps lists the space's apps as `cf apps` (API < 3.211): apps, their
// processes and each process's stats, then the routes of all the apps.
func (s *session) apps(ctx context.Context) error {
	if err := s.needSpace(); err != nil {
		return err
	}
	s.say("Getting apps in %s%s...", s.orgSpace(), s.asUser())
	s.say("")
	apps, err := getAll[ccapi.App](ctx, s.api, query("/v3/apps", "order_by", "name", "per_page", "5000", "space_guids", s.cfg.SpaceGUID))
	if err != nil {
		return err
	}
	if len(apps) == 0 {
		s.say("No apps found")
		return nil
	}
	guids := make([]string, len(apps))
	for i, a := range apps {
		guids[i] = a.GUID
	}
	procs, err := getAll[ccapi.Process](ctx, s.api, query("/v3/processes", "app_guids", strings.Join(guids, ",")))
	if err != nil {
		return err
	}
	byApp := map[string][]string{}
	for _, p := range procs {
		stats, err := s.stats(ctx, p.GUID)
		if err != nil {
			return err
		}
		running := 0
		for _, st := range stats {
			if st.State == ccapi.InstanceRunning {
				running++
			}
		}
		app := relGUID(p.Relationships, "app")
		byApp[app] = append(byApp[app], fmt.Sprintf("%s:%d/%d", p.Type, running, len(stats)))
	}
	routes, err := getAll[ccapi.Route](ctx, s.api, query("/v3/routes", "app_guids", strings.Join(guids, ",")))
	if err != nil {
		return err
	}
	urls := map[string][]string{}
	for _, r := range routes {
		seen := map[string]bool{}
		for _, d := range r.Destinations {
			if !seen[d.App.GUID] {
				seen[d.App.GUID] = true
				urls[d.App.GUID] = append(urls[d.App.GUID], r.URL)
			}
		}
	}
	rows := [][]string{{"name", "requested state", "processes", "routes"}}
	for _, a := range apps {
		sort.Strings(byApp[a.GUID])
		rows = append(rows, []string{a.Name, strings.ToLower(a.State), strings.Join(byApp[a.GUID], ","), strings.Join(urls[a.GUID], ", ")})
	}
	writeTable(s.out, rows)
	return nil
}

func relGUID(rels map[string]ccapi.Relationship, name string) string {
	if r, ok := rels[name]; ok && r.Data != nil {
		return r.Data.GUID
	}
	return ""
}

// stats GETs /v3/processes/:guid/stats.
func (s *session) stats(ctx context.Context, processGUID string) ([]ccapi.ProcessStat, error) {
	var list ccapi.List[ccapi.ProcessStat]
	if err := s.api.get(ctx, "/v3/processes/"+processGUID+"/stats", &list); err != nil {
		return nil, err
	}
	sort.SliceStable(list.Resources, func(i, j int) bool { return list.Resources[i].Index < list.Resources[j].Index })
	return list.Resources, nil
}

func appCommand(o Options) *cobra.Command {
	return &cobra.Command{
		Use:   "app APP_NAME",
		Short: "Display health and status for an app: its instances, the cells they run on and their addresses",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, func(ctx context.Context, s *session) error {
				if err := s.needSpace(); err != nil {
					return err
				}
				s.say("Showing health and status for app %s in %s%s...", args[0], s.orgSpace(), s.asUser())
				s.say("")
				app, err := s.findApp(ctx, args[0])
				if err != nil {
					return err
				}
				_, err = s.summary(ctx, app)
				return err
			})
		},
	}
}

// summary prints an app as `cf app` does: the app block, then one block
// per process with its instances (state, since, cell, addresses).
func (s *session) summary(ctx context.Context, app *ccapi.App) ([]ccapi.Route, error) {
	procs, err := getAll[ccapi.Process](ctx, s.api, "/v3/apps/"+app.GUID+"/processes")
	if err != nil {
		return nil, s.appErr(err, app.Name)
	}
	stats := make([][]ccapi.ProcessStat, len(procs))
	for i, p := range procs {
		if stats[i], err = s.stats(ctx, p.GUID); err != nil {
			return nil, err
		}
	}
	routes, err := getAll[ccapi.Route](ctx, s.api, "/v3/apps/"+app.GUID+"/routes")
	if err != nil {
		return nil, err
	}
	var droplet *ccapi.Droplet
	var d ccapi.Droplet
	if err := s.api.get(ctx, "/v3/apps/"+app.GUID+"/droplets/current", &d); err == nil {
		droplet = &d
	} else if ae := (*APIError)(nil); !errors.As(err, &ae) || ae.StatusCode != 404 {
		return nil, err
	}
	urls := make([]string, len(routes))
	for i, r := range routes {
		urls[i] = r.URL
	}
	lastUploaded, stack, buildpacks := "", "", strings.Join(app.Lifecycle.Data.Buildpacks, ", ")
	if droplet != nil {
		lastUploaded = droplet.CreatedAt.In(s.loc).Format("Mon 02 Jan 15:04:05 MST 2006")
		stack = droplet.Stack
		var bps []string
		for _, bp := range droplet.Buildpacks {
			name := bp.Name
			if bp.Version != "" {
				name += " " + bp.Version
			}
			bps = append(bps, name)
		}
		if len(bps) > 0 {
			buildpacks = strings.Join(bps, ", ")
		}
	}
	writeKeyValues(s.out, [][2]string{
		{"name", app.Name},
		{"requested state", strings.ToLower(app.State)},
		{"routes", strings.Join(urls, ", ")},
		{"last uploaded", lastUploaded},
		{"stack", stack},
		{"buildpacks", buildpacks},
	})
	for i, p := range procs {
		s.say("")
		s.processBlock(p, stats[i], droplet)
	}
	return routes, nil
}

// processBlock prints one process and its instance table.
func (s *session) processBlock(p ccapi.Process, stats []ccapi.ProcessStat, droplet *ccapi.Droplet) {
	running := 0
	for _, st := range stats {
		if st.State == ccapi.InstanceRunning {
			running++
		}
	}
	command := ""
	if p.Command != nil {
		command = *p.Command
	} else if droplet != nil {
		command = droplet.ProcessTypes[p.Type]
	}
	writeKeyValues(s.out, [][2]string{
		{"type", p.Type},
		{"instances", fmt.Sprintf("%d/%d", running, len(stats))},
		{"memory usage", formatMB(p.MemoryInMB)},
		{"start command", command},
	})
	if len(stats) == 0 {
		s.say("There are no running instances of this process.")
		return
	}
	rows := [][]string{{"", "state", "since", "cell", "address", "instance address", "details"}}
	for _, st := range stats {
		details := ""
		if st.Details != nil {
			details = *st.Details
		}
		rows = append(rows, []string{
			fmt.Sprintf("#%d", st.Index),
			strings.ToLower(st.State),
			s.now().Add(-time.Duration(st.Uptime) * time.Second).UTC().Format(time.RFC3339),
			st.CellID,
			instanceAddress(st),
			st.InstanceAddress,
			details,
		})
	}
	writeTable(s.out, rows)
}

// instanceAddress is where the router sends an instance's requests: the
// cell's address and the host port mapped to the envoy's TLS port (or to
// the app's port when there is no TLS proxy).
func instanceAddress(st ccapi.ProcessStat) string {
	if st.Host == "" || len(st.InstancePorts) == 0 {
		return st.Host
	}
	port := st.InstancePorts[0].ExternalTLSProxyPort
	if port == 0 {
		port = st.InstancePorts[0].External
	}
	if port == 0 {
		return st.Host
	}
	return net.JoinHostPort(st.Host, strconv.Itoa(port))
}

// waitForInstances polls the app's processes' stats every poll interval
// until every process has all its instances RUNNING, printing "n of N
// instances running" when it changes. It fails when every instance has
// crashed, or after timeout.
func (s *session) waitForInstances(ctx context.Context, app *ccapi.App, timeout time.Duration) error {
	procs, err := getAll[ccapi.Process](ctx, s.api, "/v3/apps/"+app.GUID+"/processes")
	if err != nil {
		return s.appErr(err, app.Name)
	}
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		want, running, starting, crashed, down, total := 0, 0, 0, 0, 0, 0
		done := true
		for _, p := range procs {
			if p.Instances == 0 {
				continue
			}
			stats, err := s.stats(ctx, p.GUID)
			if err != nil {
				return err
			}
			want += p.Instances
			total += len(stats)
			r := 0
			for _, st := range stats {
				switch st.State {
				case ccapi.InstanceRunning:
					r++
				case ccapi.InstanceStarting:
					starting++
				case ccapi.InstanceCrashed:
					crashed++
				default:
					down++
				}
			}
			running += r
			if r < p.Instances {
				done = false
			}
		}
		line := fmt.Sprintf("%d of %d instances running", running, want)
		var more []string
		if starting > 0 {
			more = append(more, fmt.Sprintf("%d starting", starting))
		}
		if crashed > 0 {
			more = append(more, fmt.Sprintf("%d crashed", crashed))
		}
		if down > 0 {
			more = append(more, fmt.Sprintf("%d down", down))
		}
		if len(more) > 0 {
			line += ", " + strings.Join(more, ", ")
		}
		if line != last && want > 0 {
			s.say("%s", line)
			last = line
		}
		if done {
			return nil
		}
		if total > 0 && crashed == total {
			return fmt.Errorf("Start unsuccessful: all instances of app %s crashed\n\nTIP: use 'minicf logs %s --recent' for more information", app.Name, app.Name)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Start app timeout: app %s did not have all instances running within %s\n\nTIP: Application must be listening on the right port. Instead of hard coding the port, use the $PORT environment variable.\nUse 'minicf logs %s --recent' for more information", app.Name, timeout, app.Name)
		}
		if err := sleep(ctx, s.poll); err != nil {
			return err
		}
	}
}

// curlHints prints how to reach the app's routes through the router.
func (s *session) curlHints(w io.Writer, routes []ccapi.Route) {
	var lines []string
	for _, r := range routes {
		if r.Protocol == "tcp" || r.URL == "" {
			continue
		}
		lines = append(lines, s.curlLine(r.URL))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w)
	if s.cfg.Router == "" {
		fmt.Fprintln(w, "Routes:")
	} else {
		fmt.Fprintln(w, "Try it:")
	}
	for _, l := range lines {
		fmt.Fprintf(w, "   %s\n", l)
	}
}

// curlLine is "curl http://HOST:ROUTERPORT/PATH", or the route's URL when
// the router's address is not known. A router that is not on loopback gets
// the route as a Host header.
func (s *session) curlLine(routeURL string) string {
	host, path := routeURL, "/"
	if i := strings.IndexByte(routeURL, '/'); i >= 0 {
		host, path = routeURL[:i], routeURL[i:]
	}
	if s.cfg.Router == "" {
		return "http://" + host + path
	}
	r := s.cfg.Router
	if !strings.Contains(r, "://") {
		r = "http://" + r
	}
	u, err := url.Parse(r)
	if err != nil || u.Host == "" {
		return "http://" + host + path
	}
	rhost, port := u.Hostname(), u.Port()
	hostPort := host
	if port != "" && !(u.Scheme == "http" && port == "80") && !(u.Scheme == "https" && port == "443") {
		hostPort = net.JoinHostPort(host, port)
	}
	ip := net.ParseIP(rhost)
	loopback := rhost == "" || rhost == "localhost" || (ip != nil && (ip.IsLoopback() || ip.IsUnspecified()))
	if loopback {
		return fmt.Sprintf("curl %s://%s%s", u.Scheme, hostPort, path)
	}
	return fmt.Sprintf("curl -H 'Host: %s' %s://%s%s", host, u.Scheme, u.Host, path)
}
