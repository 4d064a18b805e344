package cc

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"

	"github.com/minicf/minicf/internal/cc/ccapi"
)

// Routes and their destinations (route mappings), with Cloud Controller's
// validation and texts. A destination change on a started app updates its
// LRPs right after the commit (effects), as CC's ProcessRouteHandler does.

// Route and destination limits, as CC's.
const (
	maxHostLen            = 63
	maxPathLen            = 128
	maxURLLen             = 253
	maxRouteDestinations  = 100
	defaultAppPort        = 8080
	protocolHTTP1         = "http1"
	protocolHTTP2         = "http2"
	defaultProcessType    = "web"
	maxDestinationsPerReq = 100
)

var hostPattern = regexp.MustCompile(`^[\w\-]+$`)

// validHost checks a route host with CC's rules: "*" or letters, digits,
// '_' and '-', at most 63 characters; shared domains need one and take no
// wildcard.
func validHost(host string, shared bool) error {
	switch {
	case host == "" && shared:
		return unprocessable("Missing host. Routes in shared domains must have a host defined.")
	case host == "":
		return nil
	case host == "*" && shared:
		return unprocessable("Wildcard hosts are not supported for shared domains.")
	case host == "*":
		return nil
	case len(host) > maxHostLen:
		return unprocessable("Host is too long (maximum is %d characters)", maxHostLen)
	case !hostPattern.MatchString(host):
		return unprocessable(`Host must be either "*" or contain only alphanumeric characters, "_", or "-"`)
	}
	return nil
}

// validPath checks a route path: empty, or /... without '?', not exactly
// "/", at most 128 characters, only URI path characters.
func validPath(path string) error {
	switch {
	case path == "":
		return nil
	case !strings.HasPrefix(path, "/"):
		return unprocessable("Path must begin with /")
	case path == "/":
		return unprocessable("Path cannot be exactly /")
	case strings.Contains(path, "?"):
		return unprocessable("Path cannot contain ?")
	case len(path) > maxPathLen:
		return unprocessable("Path is too long (maximum is %d characters)", maxPathLen)
	}
	for i := 0; i < len(path); i++ {
		b := path[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("-._~!$&'()*+,;=:@%/", b) >= 0) {
			return unprocessable("Path is invalid: %q is not allowed in a URL path", string(rune(b)))
		}
	}
	return nil
}

// validDomainName checks a domain name: dot-separated labels of letters,
// digits and '-', not starting or ending with '-', at most 253 characters.
func validDomainName(name string) error {
	if name == "" || len(name) > maxURLLen {
		return errors.New("must be 1 to 253 characters")
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("label %q must be 1 to 63 characters, not starting or ending with '-'", l)
		}
		for i := 0; i < len(l); i++ {
			b := l[i]
			if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-') {
				return fmt.Errorf("label %q may hold only lower-case letters, digits and '-'", l)
			}
		}
	}
	return nil
}

func validURLLength(host, domain string) error {
	if len(host)+1+len(domain) > maxURLLen {
		return unprocessable("Host combined with domain name must be no more than %d characters.", maxURLLen)
	}
	return nil
}

func routeExists(host, path, domain string) *apiError {
	switch {
	case host == "" && path == "":
		return unprocessable("Route already exists for domain '%s'.", domain)
	case path == "":
		return unprocessable("Route already exists with host '%s' for domain '%s'.", host, domain)
	default:
		return unprocessable("Route already exists with host '%s' and path '%s' for domain '%s'.", host, path, domain)
	}
}

var loadBalancings = []string{"round-robin", "least-connection", "hash"}

func validRouteOptions(opts map[string]string) error {
	for k, v := range opts {
		switch k {
		case "loadbalancing":
			ok := false
			for _, lb := range loadBalancings {
				ok = ok || v == lb
			}
			if !ok {
				return unprocessable("Loadbalancing must be one of '%s' if present", strings.Join(loadBalancings, ", "))
			}
		case "hash_header", "hash_balance":
			if !storable(v) || len(v) > 255 {
				return unprocessable("Options %s is invalid", k)
			}
		default:
			return unprocessable("Options Unknown field(s): '%s'", k)
		}
	}
	return nil
}

// newRoute validates and inserts a route in tx.
func (c *CC) newRoute(tx *stx, host, path, spaceGUID, domainGUID string, opts map[string]string) (*routeRec, *domainRec, error) {
	space, err := getRec[spaceRec](tx, tSpaces, spaceGUID)
	if errors.Is(err, errNotFound) {
		return nil, nil, unprocessable("Invalid space. Ensure that the space exists and you have access to it.")
	} else if err != nil {
		return nil, nil, err
	}
	dom, err := getRec[domainRec](tx, tDomains, domainGUID)
	if errors.Is(err, errNotFound) {
		return nil, nil, unprocessable("Invalid domain. Ensure that the domain exists and you have access to it.")
	} else if err != nil {
		return nil, nil, err
	}
	if err := validHost(host, dom.OrgGUID == ""); err != nil {
		return nil, nil, err
	}
	if err := validPath(path); err != nil {
		return nil, nil, err
	}
	if err := validURLLength(host, dom.Name); err != nil {
		return nil, nil, err
	}
	if err := validRouteOptions(opts); err != nil {
		return nil, nil, err
	}
	// Host names are case-insensitive (the router lowercases them), so
	// H1 and h1 are one route.
	host = strings.ToLower(host)
	existing, err := listRecs[routeRec](tx, tRoutes, "domain_guid = ? AND host = ? AND path = ?", dom.GUID, host, path)
	if err != nil {
		return nil, nil, err
	}
	if len(existing) > 0 {
		return nil, nil, routeExists(host, path, dom.Name)
	}
	now := c.now()
	rt := &routeRec{GUID: newGUID(), Host: host, Path: path, DomainGUID: dom.GUID, SpaceGUID: space.GUID, CreatedAt: now, UpdatedAt: now}
	if len(opts) > 0 {
		rt.Options = opts
	}
	if err := insertRec(tx, tRoutes, rt); err != nil {
		if errors.Is(err, errUnique) {
			return nil, nil, routeExists(host, path, dom.Name)
		}
		return nil, nil, err
	}
	return rt, dom, nil
}

func (c *CC) createRoute(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Host          string                        `json:"host"`
		Path          string                        `json:"path"`
		Port          *int                          `json:"port"`
		Relationships map[string]ccapi.Relationship `json:"relationships"`
		Options       map[string]string             `json:"options"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	if body.Port != nil {
		return unprocessable("Routes with a port need a TCP domain; minicf's domains are HTTP domains.")
	}
	var rt *routeRec
	var dom *domainRec
	err := c.store.write(r.Context(), func(tx *stx) (err error) {
		rt, dom, err = c.newRoute(tx, body.Host, body.Path, relGUID(body.Relationships, "space"), relGUID(body.Relationships, "domain"), body.Options)
		return err
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, presentRoute(c.base(r), rt, dom.Name, nil))
}

// routeContext is what presenting routes needs: domains and destinations.
type routeContext struct {
	domains map[string]*domainRec
	dests   map[string][]*destRec // by route guid
}

func loadRouteContext(tx *stx, routes []*routeRec) (*routeContext, error) {
	rc := &routeContext{domains: map[string]*domainRec{}, dests: map[string][]*destRec{}}
	doms, err := listRecs[domainRec](tx, tDomains, "")
	if err != nil {
		return nil, err
	}
	for _, d := range doms {
		rc.domains[d.GUID] = d
	}
	guids := make([]string, len(routes))
	for i, rt := range routes {
		guids[i] = rt.GUID
	}
	dests, err := listIn[destRec](tx, tDestinations, "route_guid", guids)
	if err != nil {
		return nil, err
	}
	for _, d := range dests {
		rc.dests[d.RouteGUID] = append(rc.dests[d.RouteGUID], d)
	}
	return rc, nil
}

func (rc *routeContext) domainName(rt *routeRec) string {
	if d := rc.domains[rt.DomainGUID]; d != nil {
		return d.Name
	}
	return ""
}

func (rc *routeContext) present(base string, rt *routeRec) ccapi.Route {
	return presentRoute(base, rt, rc.domainName(rt), rc.dests[rt.GUID])
}

func (c *CC) listRoutes(w http.ResponseWriter, r *http.Request) error {
	return c.listRoutesWhere(w, r, "")
}

func (c *CC) listAppRoutes(w http.ResponseWriter, r *http.Request) error {
	appGUID := r.PathValue("guid")
	err := c.store.read(r.Context(), func(tx *stx) error {
		_, err := getRec[appRec](tx, tApps, appGUID)
		return err
	})
	if errors.Is(err, errNotFound) {
		return notFound("App not found")
	}
	if err != nil {
		return err
	}
	return c.listRoutesWhere(w, r, appGUID)
}

// listRoutesWhere lists routes with the query's filters; appGUID, when
// set, keeps the routes with a destination to that app.
func (c *CC) listRoutesWhere(w http.ResponseWriter, r *http.Request, appGUID string) error {
	q := r.URL.Query()
	p, err := parseList(q, "created_at", "updated_at")
	if err != nil {
		return err
	}
	spaces, orgs, apps := queryFilter(q, "space_guids"), queryFilter(q, "organization_guids"), queryFilter(q, "app_guids")
	domains, hosts, paths := queryFilter(q, "domain_guids"), lowerFilter(queryFilter(q, "hosts")), queryFilter(q, "paths")
	guids, ports := queryFilter(q, "guids"), queryFilter(q, "ports")
	base := c.base(r)
	var out []ccapi.Route
	var keep []*routeRec
	err = c.store.read(r.Context(), func(tx *stx) error {
		all, err := listRecs[routeRec](tx, tRoutes, "")
		if err != nil {
			return err
		}
		spaceOrg := map[string]string{}
		if orgs.present {
			sps, err := listRecs[spaceRec](tx, tSpaces, "")
			if err != nil {
				return err
			}
			for _, s := range sps {
				spaceOrg[s.GUID] = s.OrgGUID
			}
		}
		rc, err := loadRouteContext(tx, all)
		if err != nil {
			return err
		}
		for _, rt := range all {
			if !(spaces.match(rt.SpaceGUID) && domains.match(rt.DomainGUID) && hosts.match(rt.Host) &&
				paths.match(rt.Path) && guids.match(rt.GUID) && orgs.match(spaceOrg[rt.SpaceGUID]) && ports.match("")) {
				continue
			}
			if apps.present || appGUID != "" {
				found := false
				for _, d := range rc.dests[rt.GUID] {
					found = found || (apps.match(d.AppGUID) && (appGUID == "" || d.AppGUID == appGUID))
				}
				if !found {
					continue
				}
			}
			keep = append(keep, rt)
		}
		sortItems(keep, p.orderBy, func(rt *routeRec) sortKeys { return sortKeys{"", rt.CreatedAt, rt.UpdatedAt, rt.GUID} })
		for _, rt := range keep {
			out = append(out, rc.present(base, rt))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, paginate(base, r, p, out))
}

// loadRoute reads one route and what presenting it needs.
func loadRoute(tx *stx, guid string) (*routeRec, *routeContext, error) {
	rt, err := getRec[routeRec](tx, tRoutes, guid)
	if errors.Is(err, errNotFound) {
		return nil, nil, notFound("Route not found")
	} else if err != nil {
		return nil, nil, err
	}
	rc, err := loadRouteContext(tx, []*routeRec{rt})
	return rt, rc, err
}

func (c *CC) getRoute(w http.ResponseWriter, r *http.Request) error {
	var out ccapi.Route
	err := c.store.read(r.Context(), func(tx *stx) error {
		rt, rc, err := loadRoute(tx, r.PathValue("guid"))
		if err == nil {
			out = rc.present(c.base(r), rt)
		}
		return err
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (c *CC) updateRoute(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Options map[string]*string `json:"options"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	var out ccapi.Route
	fx := newEffects()
	err := c.store.write(r.Context(), func(tx *stx) error {
		rt, rc, err := loadRoute(tx, r.PathValue("guid"))
		if err != nil {
			return err
		}
		if body.Options != nil {
			opts := map[string]string{}
			for k, v := range rt.Options {
				opts[k] = v
			}
			for k, v := range body.Options {
				if v == nil {
					delete(opts, k)
				} else {
					opts[k] = *v
				}
			}
			if err := validRouteOptions(opts); err != nil {
				return err
			}
			rt.Options = opts
			if len(opts) == 0 {
				rt.Options = nil
			}
			rt.UpdatedAt = c.now()
			if err := updateRec(tx, tRoutes, rt); err != nil {
				return err
			}
			for _, d := range rc.dests[rt.GUID] {
				fx.app(d.AppGUID)
			}
		}
		out = rc.present(c.base(r), rt)
		return c.touchProcesses(tx, fx)
	})
	if err != nil {
		return err
	}
	c.applyEffects(r, fx)
	return writeJSON(w, http.StatusOK, out)
}

func (c *CC) deleteRoute(w http.ResponseWriter, r *http.Request) error {
	fx := newEffects()
	err := c.store.write(r.Context(), func(tx *stx) error {
		rt, err := getRec[routeRec](tx, tRoutes, r.PathValue("guid"))
		if errors.Is(err, errNotFound) {
			return notFound("Route not found")
		} else if err != nil {
			return err
		}
		if err := c.deleteRouteTx(tx, rt, fx); err != nil {
			return err
		}
		return c.touchProcesses(tx, fx)
	})
	if err != nil {
		return err
	}
	c.applyEffects(r, fx)
	return c.job(w, r, "route.delete", nil)
}

// deleteRouteTx removes a route and its destinations.
func (c *CC) deleteRouteTx(tx *stx, rt *routeRec, fx *effects) error {
	dests, err := listRecs[destRec](tx, tDestinations, "route_guid = ?", rt.GUID)
	if err != nil {
		return err
	}
	for _, d := range dests {
		fx.app(d.AppGUID)
		if err := deleteRec(tx, tDestinations, d.GUID); err != nil {
			return err
		}
	}
	return deleteRec(tx, tRoutes, rt.GUID)
}

// deleteUnmappedRoutes is DELETE /v3/spaces/:guid/routes?unmapped=true.
func (c *CC) deleteUnmappedRoutes(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Query().Get("unmapped") != "true" {
		return badRequest("Mass delete not supported for routes. Use 'unmapped' parameter to delete all unmapped routes.")
	}
	err := c.store.write(r.Context(), func(tx *stx) error {
		if _, err := getRec[spaceRec](tx, tSpaces, r.PathValue("guid")); errors.Is(err, errNotFound) {
			return notFound("Space not found")
		} else if err != nil {
			return err
		}
		routes, err := listRecs[routeRec](tx, tRoutes, "space_guid = ?", r.PathValue("guid"))
		if err != nil {
			return err
		}
		for _, rt := range routes {
			ds, err := listRecs[destRec](tx, tDestinations, "route_guid = ?", rt.GUID)
			if err != nil {
				return err
			}
			if len(ds) == 0 {
				if err := deleteRec(tx, tRoutes, rt.GUID); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.job(w, r, "space.delete_unmapped_routes", nil)
}

// Destinations.

type destinationBody struct {
	App struct {
		GUID    string `json:"guid"`
		Process *struct {
			Type string `json:"type"`
		} `json:"process"`
	} `json:"app"`
	Weight   *int    `json:"weight"`
	Port     *int    `json:"port"`
	Protocol *string `json:"protocol"`
}

type destinationsBody struct {
	Destinations []destinationBody `json:"destinations"`
}

func destKey(d *destRec) string {
	return fmt.Sprintf("%s/%s/%d", d.AppGUID, d.ProcessType, d.Port)
}

// parseDestinations validates a destinations body against the route
// (apps exist, in the route's space) and returns new records.
func (c *CC) parseDestinations(tx *stx, rt *routeRec, body []destinationBody) ([]*destRec, error) {
	if len(body) > maxDestinationsPerReq {
		return nil, unprocessable("Destinations must have at most %d entries", maxDestinationsPerReq)
	}
	now := c.now()
	var out []*destRec
	var missing []string
	for i, b := range body {
		if b.App.GUID == "" {
			return nil, unprocessable("Destinations[%d]: app guid is required", i)
		}
		if b.Weight != nil {
			return nil, unprocessable("Destinations[%d]: weighted destinations are not supported", i)
		}
		d := &destRec{GUID: newGUID(), RouteGUID: rt.GUID, AppGUID: b.App.GUID, ProcessType: defaultProcessType,
			Port: defaultAppPort, Protocol: protocolHTTP1, CreatedAt: now, UpdatedAt: now}
		if b.App.Process != nil && b.App.Process.Type != "" {
			if err := validProcessType(b.App.Process.Type); err != nil {
				return nil, err
			}
			d.ProcessType = b.App.Process.Type
		}
		if b.Port != nil {
			if *b.Port < 1 || *b.Port > 65535 {
				return nil, unprocessable("Destinations[%d]: port must be between 1 and 65535", i)
			}
			d.Port = *b.Port
		}
		if b.Protocol != nil {
			if *b.Protocol != protocolHTTP1 && *b.Protocol != protocolHTTP2 {
				return nil, unprocessable("Destination protocol must be 'http1' or 'http2' if route protocol is 'http'")
			}
			d.Protocol = *b.Protocol
		}
		app, err := getRec[appRec](tx, tApps, b.App.GUID)
		if errors.Is(err, errNotFound) {
			missing = append(missing, b.App.GUID)
			continue
		} else if err != nil {
			return nil, err
		}
		if app.SpaceGUID != rt.SpaceGUID {
			return nil, unprocessable("Routes destinations must be in either the route's space or the route's shared spaces")
		}
		out = append(out, d)
	}
	if len(missing) > 0 {
		return nil, unprocessable("App(s) with guid(s) %q do not exist or you do not have access.", strings.Join(missing, `", "`))
	}
	return out, nil
}

// setDestinations makes the route's destinations existing+add (replace
// false) or exactly add (replace true), keeping matching ones.
func (c *CC) setDestinations(tx *stx, rt *routeRec, add []*destRec, replace bool, fx *effects) ([]*destRec, error) {
	existing, err := listRecs[destRec](tx, tDestinations, "route_guid = ?", rt.GUID)
	if err != nil {
		return nil, err
	}
	have := map[string]*destRec{}
	for _, d := range existing {
		have[destKey(d)] = d
	}
	want := map[string]bool{}
	final := []*destRec{}
	if !replace {
		final = append(final, existing...)
	}
	for _, d := range add {
		k := destKey(d)
		if want[k] {
			continue
		}
		want[k] = true
		if old, ok := have[k]; ok {
			if replace {
				final = append(final, old)
			}
			continue
		}
		if err := insertRec(tx, tDestinations, d); err != nil {
			return nil, err
		}
		fx.app(d.AppGUID)
		c.traceMapped(tx, fx, rt, nil, d)
		final = append(final, d)
	}
	if replace {
		for _, d := range existing {
			if !want[destKey(d)] {
				fx.app(d.AppGUID)
				if err := deleteRec(tx, tDestinations, d.GUID); err != nil {
					return nil, err
				}
			}
		}
	}
	if len(final) > maxRouteDestinations {
		return nil, unprocessable("Routes can be mapped to at most %d destinations.", maxRouteDestinations)
	}
	return final, nil
}

func (c *CC) destinationsResponse(w http.ResponseWriter, r *http.Request, rt *routeRec, dests []*destRec) error {
	base := c.base(r)
	sortDests(dests)
	out := ccapi.RouteDestinations{Destinations: []ccapi.Destination{}, Links: ccapi.Links{
		"self": link(base + "/v3/routes/" + rt.GUID + "/destinations"), "route": link(base + "/v3/routes/" + rt.GUID)}}
	for _, d := range dests {
		out.Destinations = append(out.Destinations, presentDestination(d))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (c *CC) listDestinations(w http.ResponseWriter, r *http.Request) error {
	var rt *routeRec
	var dests []*destRec
	err := c.store.read(r.Context(), func(tx *stx) (err error) {
		var rc *routeContext
		if rt, rc, err = loadRoute(tx, r.PathValue("guid")); err == nil {
			dests = rc.dests[rt.GUID]
		}
		return err
	})
	if err != nil {
		return err
	}
	q := r.URL.Query()
	guids, apps := queryFilter(q, "guids"), queryFilter(q, "app_guids")
	var keep []*destRec
	for _, d := range dests {
		if guids.match(d.GUID) && apps.match(d.AppGUID) {
			keep = append(keep, d)
		}
	}
	return c.destinationsResponse(w, r, rt, keep)
}

func (c *CC) insertDestinations(w http.ResponseWriter, r *http.Request) error {
	return c.changeDestinations(w, r, false)
}

func (c *CC) replaceDestinations(w http.ResponseWriter, r *http.Request) error {
	return c.changeDestinations(w, r, true)
}

func (c *CC) changeDestinations(w http.ResponseWriter, r *http.Request, replace bool) error {
	var body destinationsBody
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	if body.Destinations == nil {
		return unprocessable("Destinations must be an array")
	}
	fx := newEffects()
	var rt *routeRec
	var final []*destRec
	err := c.store.write(r.Context(), func(tx *stx) (err error) {
		if rt, err = getRec[routeRec](tx, tRoutes, r.PathValue("guid")); errors.Is(err, errNotFound) {
			return notFound("Route not found")
		} else if err != nil {
			return err
		}
		add, err := c.parseDestinations(tx, rt, body.Destinations)
		if err != nil {
			return err
		}
		if final, err = c.setDestinations(tx, rt, add, replace, fx); err != nil {
			return err
		}
		return c.touchProcesses(tx, fx)
	})
	if err != nil {
		return err
	}
	c.applyEffects(r, fx)
	return c.destinationsResponse(w, r, rt, final)
}

func (c *CC) updateDestination(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Protocol *string `json:"protocol"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	if body.Protocol != nil && *body.Protocol != protocolHTTP1 && *body.Protocol != protocolHTTP2 {
		return unprocessable("Destination protocol must be 'http1' or 'http2' if route protocol is 'http'")
	}
	fx := newEffects()
	var d *destRec
	err := c.store.write(r.Context(), func(tx *stx) (err error) {
		if _, err = getRec[routeRec](tx, tRoutes, r.PathValue("guid")); errors.Is(err, errNotFound) {
			return notFound("Route not found")
		} else if err != nil {
			return err
		}
		d, err = getRec[destRec](tx, tDestinations, r.PathValue("dguid"))
		if errors.Is(err, errNotFound) || (err == nil && d.RouteGUID != r.PathValue("guid")) {
			return notFound("Destination not found")
		} else if err != nil {
			return err
		}
		if body.Protocol != nil && *body.Protocol != d.Protocol {
			d.Protocol = *body.Protocol
			d.UpdatedAt = c.now()
			if err := updateRec(tx, tDestinations, d); err != nil {
				return err
			}
			fx.app(d.AppGUID)
		}
		return c.touchProcesses(tx, fx)
	})
	if err != nil {
		return err
	}
	c.applyEffects(r, fx)
	return writeJSON(w, http.StatusOK, presentDestination(d))
}

func (c *CC) deleteDestination(w http.ResponseWriter, r *http.Request) error {
	fx := newEffects()
	err := c.store.write(r.Context(), func(tx *stx) error {
		if _, err := getRec[routeRec](tx, tRoutes, r.PathValue("guid")); errors.Is(err, errNotFound) {
			return notFound("Route not found")
		} else if err != nil {
			return err
		}
		d, err := getRec[destRec](tx, tDestinations, r.PathValue("dguid"))
		if errors.Is(err, errNotFound) || (err == nil && d.RouteGUID != r.PathValue("guid")) {
			return unprocessable("Unable to unmap route from destination. Ensure the route has a destination with this guid.")
		} else if err != nil {
			return err
		}
		if err := deleteRec(tx, tDestinations, d.GUID); err != nil {
			return err
		}
		fx.app(d.AppGUID)
		return c.touchProcesses(tx, fx)
	})
	if err != nil {
		return err
	}
	c.applyEffects(r, fx)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// lowerFilter lower-cases a filter's values (host names).
func lowerFilter(f filter) filter {
	if !f.present {
		return f
	}
	out := filter{set: map[string]bool{}, present: true}
	for v := range f.set {
		out.set[strings.ToLower(v)] = true
	}
	return out
}
