package cli

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/minicf/minicf/internal/cc/ccapi"
	"github.com/spf13/cobra"
)

// routeSpec is a route as the flags name it: DOMAIN --hostname H --path P.
type routeSpec struct {
	domain, host, path string
}

func (r routeSpec) url() string {
	u := r.domain
	if r.host != "" {
		u = r.host + "." + u
	}
	return u + r.path
}

// describe is how the cf CLI names a route that is not there.
func (r routeSpec) describe() string {
	s := fmt.Sprintf("Route with host '%s'", r.host)
	if r.path != "" {
		return s + fmt.Sprintf(", domain '%s' and path '%s'", r.domain, r.path)
	}
	return s + fmt.Sprintf(" for domain '%s'", r.domain)
}

// normalizePath gives a route path its leading slash, as the cf CLI does.
func normalizePath(p string) string {
	if p != "" && !strings.HasPrefix(p, "/") {
		return "/" + p
	}
	return p
}

func routeFlags(cmd *cobra.Command, r *routeSpec, hostRequired bool) {
	usage := "Hostname for the HTTP route"
	if hostRequired {
		usage += " (required)"
	}
	cmd.Flags().StringVarP(&r.host, "hostname", "n", "", usage)
	cmd.Flags().StringVar(&r.path, "path", "", "Path for the HTTP route")
}

// DomainNotFoundError is a domain the Cloud Controller does not know.
type DomainNotFoundError struct{ Name string }

func (e *DomainNotFoundError) Error() string { return fmt.Sprintf("Domain '%s' not found.", e.Name) }

func (s *session) findDomain(ctx context.Context, name string) (*ccapi.Domain, error) {
	d, err := getFirst[ccapi.Domain](ctx, s.api, query("/v3/domains", "names", name, "page", "1", "per_page", "1"))
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, &DomainNotFoundError{Name: name}
	}
	return d, nil
}

// findRoute finds the route host.domain/path ("paths=" matches the empty
// path); nil if there is none.
func (s *session) findRoute(ctx context.Context, domainGUID string, r routeSpec) (*ccapi.Route, error) {
	return getFirst[ccapi.Route](ctx, s.api, query("/v3/routes", "domain_guids", domainGUID, "hosts", r.host, "paths", r.path, "page", "1", "per_page", "1"))
}

type createRouteBody struct {
	Host          string                        `json:"host,omitempty"`
	Path          string                        `json:"path,omitempty"`
	Relationships map[string]ccapi.Relationship `json:"relationships"`
}

func (s *session) createRoute(ctx context.Context, domainGUID string, r routeSpec) (*ccapi.Route, error) {
	var route ccapi.Route
	_, err := s.api.call(ctx, "POST", "/v3/routes", createRouteBody{
		Host: r.host,
		Path: r.path,
		Relationships: map[string]ccapi.Relationship{
			"space":  ccapi.ToOne(s.cfg.SpaceGUID),
			"domain": ccapi.ToOne(domainGUID),
		},
	}, &route)
	if err != nil {
		return nil, err
	}
	return &route, nil
}

// routeCommand is a verb on one route, "VERB [APP_NAME] DOMAIN --hostname H
// [--path P]": the domain is the last of nargs arguments. Before f runs, and
// so before any request, it checks that a space is targeted and that the
// route is one the Cloud Controller would take.
func routeCommand(o Options, use, short string, nargs int, hostRequired bool,
	f func(ctx context.Context, s *session, r routeSpec, args []string) error) *cobra.Command {
	var flags routeSpec
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(nargs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, func(ctx context.Context, s *session) error {
				if err := s.needSpace(); err != nil {
					return err
				}
				r := routeSpec{domain: args[nargs-1], host: flags.host, path: normalizePath(flags.path)}
				if err := r.check(hostRequired); err != nil {
					return err
				}
				return f(ctx, s, r, args)
			})
		},
	}
	routeFlags(cmd, &flags, hostRequired)
	return cmd
}

var hostPattern = regexp.MustCompile(`^[\w-]+$`)

// check rejects, with the Cloud Controller's words, a route it would refuse
// for its host or path alone (a path is normalized first); whether the
// domain exists is for the Cloud Controller to say.
func (r routeSpec) check(hostRequired bool) error {
	switch {
	case r.domain == "" || strings.ContainsAny(r.domain, "/ "):
		return fmt.Errorf("Domain '%s' is not a domain name.", r.domain)
	case r.host == "" && hostRequired:
		return errors.New("Incorrect Usage: the required flag '--hostname' was not specified")
	case len(r.host) > 63:
		return errors.New("Host is too long (maximum is 63 characters)")
	case r.host != "" && r.host != "*" && !hostPattern.MatchString(r.host):
		return fmt.Errorf(`Host '%s' is invalid: it must be either "*" or contain only alphanumeric characters, "_", or "-"`, r.host)
	case r.path == "/":
		return errors.New("Path cannot be exactly /")
	case strings.Contains(r.path, "?"):
		return fmt.Errorf("Path '%s' cannot contain ?", r.path)
	case len(r.path) > 128:
		return errors.New("Path is too long (maximum is 128 characters)")
	}
	for _, c := range r.path {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-._~!$&'()*+,;=:@%/", c)) {
			return fmt.Errorf("Path '%s' is invalid: %q is not allowed in a URL path", r.path, c)
		}
	}
	return nil
}

func createRouteCommand(o Options) *cobra.Command {
	return routeCommand(o, "create-route DOMAIN --hostname HOSTNAME [--path PATH]", "Create a route for later use", 1, false,
		func(ctx context.Context, s *session, r routeSpec, _ []string) error {
			s.say("Creating route %s for %s%s...", r.url(), s.orgSpace(), s.asUser())
			d, err := s.findDomain(ctx, r.domain)
			if err != nil {
				return err
			}
			route, err := s.createRoute(ctx, d.GUID, r)
			var ae *APIError
			if errors.As(err, &ae) && ae.StatusCode == 422 && ae.hasDetail("Route already exists") {
				s.warn(ae.Error())
				s.ok()
				return nil
			}
			if err != nil {
				return err
			}
			s.say("Route %s has been created.", routeURL(route, r))
			s.ok()
			return nil
		})
}

func mapRouteCommand(o Options) *cobra.Command {
	return routeCommand(o, "map-route APP_NAME DOMAIN --hostname HOSTNAME [--path PATH]", "Map a route to an app (creating the route if needed)", 2, true,
		func(ctx context.Context, s *session, r routeSpec, args []string) error {
			appName := args[0]
			s.say("Mapping route %s to app %s in %s%s...", r.url(), appName, s.orgSpace(), s.asUser())
			d, app, route, err := s.findMapping(ctx, appName, r)
			if err != nil {
				return err
			}
			if route == nil {
				if route, err = s.createRoute(ctx, d.GUID, r); err != nil {
					return err
				}
			}
			if webDestination(route, app.GUID) != nil {
				s.say("App '%s' is already mapped to route '%s'. Nothing has been updated.", appName, routeURL(route, r))
				s.ok()
				return nil
			}
			body := map[string]any{"destinations": []map[string]any{{"app": map[string]string{"guid": app.GUID}}}}
			if _, err := s.api.call(ctx, "POST", "/v3/routes/"+route.GUID+"/destinations", body, nil); err != nil {
				return s.appErr(err, appName)
			}
			s.ok()
			return nil
		})
}

// findMapping looks up what map-route and unmap-route work on, in the cf
// CLI's order: the domain, the app, then the route (nil if it does not exist).
func (s *session) findMapping(ctx context.Context, appName string, r routeSpec) (*ccapi.Domain, *ccapi.App, *ccapi.Route, error) {
	d, err := s.findDomain(ctx, r.domain)
	if err != nil {
		return nil, nil, nil, err
	}
	app, err := s.findApp(ctx, appName)
	if err != nil {
		return nil, nil, nil, err
	}
	route, err := s.findRoute(ctx, d.GUID, r)
	if err != nil {
		return nil, nil, nil, err
	}
	return d, app, route, nil
}

// webDestination is the destination of route that sends to app's web
// process, if any.
func webDestination(route *ccapi.Route, appGUID string) *ccapi.Destination {
	for i, dest := range route.Destinations {
		if dest.App.GUID == appGUID && (dest.App.Process == nil || dest.App.Process.Type == "web") {
			return &route.Destinations[i]
		}
	}
	return nil
}

func routeURL(route *ccapi.Route, r routeSpec) string {
	if route != nil && route.URL != "" {
		return route.URL
	}
	return r.url()
}

func unmapRouteCommand(o Options) *cobra.Command {
	return routeCommand(o, "unmap-route APP_NAME DOMAIN --hostname HOSTNAME [--path PATH]", "Remove a route from an app", 2, true,
		func(ctx context.Context, s *session, r routeSpec, args []string) error {
			appName := args[0]
			s.say("Removing route %s from app %s in %s%s...", r.url(), appName, s.orgSpace(), s.asUser())
			_, app, route, err := s.findMapping(ctx, appName, r)
			if err != nil {
				return err
			}
			if route == nil {
				return fmt.Errorf("%s does not exist.", r.describe())
			}
			if dest := webDestination(route, app.GUID); dest != nil {
				if _, err := s.api.call(ctx, "DELETE", "/v3/routes/"+route.GUID+"/destinations/"+dest.GUID, nil, nil); err != nil {
					return err
				}
			} else {
				s.say("Route to be unmapped is not currently mapped to the application.")
			}
			s.ok()
			return nil
		})
}

func deleteRouteCommand(o Options) *cobra.Command {
	var force bool
	cmd := routeCommand(o, "delete-route DOMAIN --hostname HOSTNAME [--path PATH] [-f]", "Delete a route", 1, true,
		func(ctx context.Context, s *session, r routeSpec, _ []string) error {
			if !force && !s.confirm(fmt.Sprintf("Really delete the route %s?", r.url())) {
				s.say("'%s' has not been deleted.", r.url())
				return nil
			}
			s.say("Deleting route %s...", r.url())
			d, err := s.findDomain(ctx, r.domain)
			if err != nil {
				return err
			}
			route, err := s.findRoute(ctx, d.GUID, r)
			if err != nil {
				return err
			}
			if route == nil {
				s.warn("Unable to delete. " + r.describe() + " does not exist.")
			} else if err := s.api.async(ctx, "DELETE", "/v3/routes/"+route.GUID, nil); err != nil {
				return err
			}
			s.ok()
			return nil
		})
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force deletion without confirmation")
	return cmd
}

func routesCommand(o Options) *cobra.Command {
	return &cobra.Command{
		Use:   "routes",
		Short: "List all routes in the target space",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, func(ctx context.Context, s *session) error { return s.routes(ctx) })
		},
	}
}

// routes lists the space's routes as `cf routes`: the routes, then the
// names of the apps their destinations send to.
func (s *session) routes(ctx context.Context) error {
	if err := s.needSpace(); err != nil {
		return err
	}
	s.say("Getting routes for %s%s...", s.orgSpace(), s.asUser())
	s.say("")
	routes, err := getAll[ccapi.Route](ctx, s.api, query("/v3/routes", "space_guids", s.cfg.SpaceGUID, "per_page", "5000"))
	if err != nil {
		return err
	}
	if len(routes) == 0 {
		s.say("No routes found.")
		return nil
	}
	var appGUIDs []string
	seen := map[string]bool{}
	for _, r := range routes {
		for _, d := range r.Destinations {
			if !seen[d.App.GUID] {
				seen[d.App.GUID] = true
				appGUIDs = append(appGUIDs, d.App.GUID)
			}
		}
	}
	names := map[string]string{}
	if len(appGUIDs) > 0 {
		apps, err := getAll[ccapi.App](ctx, s.api, query("/v3/apps", "guids", strings.Join(appGUIDs, ",")))
		if err != nil {
			return err
		}
		for _, a := range apps {
			names[a.GUID] = a.Name
		}
	}
	sort.SliceStable(routes, func(i, j int) bool {
		a, b := routes[i], routes[j]
		if da, db := routeDomain(a), routeDomain(b); da != db {
			return da < db
		}
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		return a.Path < b.Path
	})
	rows := [][]string{{"space", "host", "domain", "port", "path", "protocol", "app-protocol", "app-port", "apps", "options"}}
	for _, r := range routes {
		port := ""
		if r.Port != nil && *r.Port != 0 {
			port = strconv.Itoa(*r.Port)
		}
		var apps, protos, ports []string
		for _, d := range r.Destinations {
			n := names[d.App.GUID]
			if n == "" {
				n = d.App.GUID
			}
			apps = appendUnique(apps, n)
			protos = appendUnique(protos, d.Protocol)
			if d.Port != 0 {
				ports = appendUnique(ports, strconv.Itoa(d.Port))
			}
		}
		var opts []string
		for k, v := range r.Options {
			opts = append(opts, k+"="+v)
		}
		sort.Strings(opts)
		rows = append(rows, []string{s.cfg.SpaceName, r.Host, routeDomain(r), port, r.Path, r.Protocol,
			strings.Join(protos, ", "), strings.Join(ports, ", "), strings.Join(apps, ", "), strings.Join(opts, ", ")})
	}
	writeTable(s.out, rows)
	return nil
}

func appendUnique(list []string, v string) []string {
	if v == "" {
		return list
	}
	for _, x := range list {
		if x == v {
			return list
		}
	}
	return append(list, v)
}

// routeDomain derives the domain from the route's url, as the cf CLI does:
// the url without the host, port and path.
func routeDomain(r ccapi.Route) string {
	u := r.URL
	if r.Path != "" {
		u = strings.TrimSuffix(u, r.Path)
	}
	if r.Port != nil && *r.Port != 0 {
		u = strings.TrimSuffix(u, ":"+strconv.Itoa(*r.Port))
	}
	if r.Host != "" {
		u = strings.TrimPrefix(u, r.Host+".")
	}
	return u
}
