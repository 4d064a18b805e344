package cc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/minicf/minicf/internal/cc/ccapi"
)

// Bounds of the API.
const (
	maxJSONBody     = 1 << 20 // a JSON request body
	maxManifestBody = 1 << 20 // an apply_manifest YAML body
	bodyTimeout     = 30 * time.Second
	uploadTimeout   = 30 * time.Minute // a package or droplet body
	maxPerPage      = 5000
	defaultPerPage  = 50
	// effectTimeout bounds the BBS calls that follow a commit.
	effectTimeout = 30 * time.Second
)

// apiError is an error with its HTTP status and CC error body.
type apiError struct {
	status int
	err    ccapi.APIError
}

func (e *apiError) Error() string { return e.err.Error() }

func errf(status int, base ccapi.APIError, format string, args ...any) *apiError {
	return &apiError{status: status, err: base.With(format, args...)}
}

func notFound(detail string) *apiError {
	return &apiError{status: http.StatusNotFound, err: ccapi.ErrNotFound.With("%s", detail)}
}

func unprocessable(format string, args ...any) *apiError {
	return errf(http.StatusUnprocessableEntity, ccapi.ErrUnprocessable, format, args...)
}

func badRequest(format string, args ...any) *apiError {
	return errf(http.StatusBadRequest, ccapi.ErrBadRequest, format, args...)
}

func badQuery(format string, args ...any) *apiError {
	return errf(http.StatusBadRequest, ccapi.ErrBadQueryParameter, "The query parameter is invalid: "+format, args...)
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

type ctxKey int

const claimsKey ctxKey = 1

func claimsOf(r *http.Request) *Claims {
	c, _ := r.Context().Value(claimsKey).(*Claims)
	if c == nil {
		return &Claims{}
	}
	return c
}

// wrap turns a handlerFunc into a handler: the bearer token check when
// authed, panics and errors as CC error bodies.
func (c *CC) wrap(h handlerFunc, authed bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				c.log.Error("cc-handler-panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p))
				writeError(w, &apiError{status: 500, err: ccapi.ErrUnknown.With("An unknown error occurred.")})
			}
		}()
		if authed {
			claims, aerr := c.authenticate(r)
			if aerr != nil {
				writeError(w, aerr)
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), claimsKey, claims))
		}
		if err := h(w, r); err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				switch {
				case errors.Is(err, errNotFound):
					ae = notFound("Unknown request")
				case errors.Is(err, errBadValue):
					ae = unprocessable("%v", err)
				default:
					c.log.Error("cc-request-failed", "method", r.Method, "path", r.URL.Path, "error", err.Error())
					ae = &apiError{status: 500, err: ccapi.ErrUnknown.With("An unknown error occurred: %v", err)}
				}
			}
			writeError(w, ae)
		}
	})
}

func (c *CC) authenticate(r *http.Request) (*Claims, *apiError) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, errf(http.StatusUnauthorized, ccapi.ErrNotAuthenticated, "Authentication error: no bearer token (send Authorization: bearer <token>)")
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return nil, errf(http.StatusUnauthorized, ccapi.ErrInvalidAuthToken, "Invalid Auth Token: the Authorization header must be 'bearer <token>'")
	}
	claims, err := c.auth.verify(strings.TrimSpace(tok))
	if err != nil {
		return nil, errf(http.StatusUnauthorized, ccapi.ErrInvalidAuthToken, "Invalid Auth Token: %v", err)
	}
	return claims, nil
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(ccapi.Errors{Errors: []ccapi.APIError{e.err}})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return ignoreWriteErr(enc.Encode(v))
}

// ignoreWriteErr: once the status is written, a failed write (the client
// left) is nothing to answer.
func ignoreWriteErr(error) error { return nil }

// base is the absolute URL links start with: ExternalURL, else the
// request's scheme and Host (a Host that is not a plain host[:port] falls
// back to the bound address, so a request cannot put anything in a link).
func (c *CC) base(r *http.Request) string {
	if c.cfg.ExternalURL != "" {
		return c.cfg.ExternalURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if host == "" || !plainHost(host) {
		host = c.Addr()
	}
	return scheme + "://" + host
}

func plainHost(h string) bool {
	if len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		b := h[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '-' || b == ':' || b == '[' || b == ']' || b == '_') {
			return false
		}
	}
	return true
}

// decodeJSON reads a bounded JSON body into v (an empty body is {}).
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	rc.SetReadDeadline(time.Time{})
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errf(http.StatusRequestEntityTooLarge, ccapi.ErrRequestTooLarge, "The request body is larger than the %d bytes allowed.", maxJSONBody)
		}
		return errf(http.StatusBadRequest, ccapi.ErrMessageParseError, "Request invalid due to parse error: cannot read the body: %v", err)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errf(http.StatusBadRequest, ccapi.ErrMessageParseError, "Request invalid due to parse error: invalid request body: %v", err)
	}
	return nil
}

// filter is a comma-joined query filter. Present but empty ("paths=")
// matches the empty value.
type filter struct {
	set     map[string]bool
	present bool
}

func queryFilter(q url.Values, key string) filter {
	vals, ok := q[key]
	if !ok {
		return filter{}
	}
	f := filter{set: map[string]bool{}, present: true}
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			f.set[p] = true
		}
	}
	return f
}

// match reports whether v passes (always, when the filter is absent).
func (f filter) match(v string) bool { return !f.present || f.set[v] }

func (f filter) values() []string {
	out := make([]string, 0, len(f.set))
	for v := range f.set {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// listParams are page, per_page and order_by.
type listParams struct {
	page, perPage int
	orderBy       string
}

func parseList(q url.Values, orderable ...string) (listParams, error) {
	p := listParams{page: 1, perPage: defaultPerPage}
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return p, badQuery("Page must be greater than 0")
		}
		p.page = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPerPage {
			return p, badQuery("Per page must be between 1 and %d", maxPerPage)
		}
		p.perPage = n
	}
	if v := q.Get("order_by"); v != "" {
		field := strings.TrimPrefix(strings.TrimPrefix(v, "-"), "+")
		ok := false
		for _, o := range orderable {
			ok = ok || o == field
		}
		if !ok {
			quoted := make([]string, len(orderable))
			for i, o := range orderable {
				quoted[i] = "'" + o + "'"
			}
			return p, badQuery("Order by can only be: %s", strings.Join(quoted, ", "))
		}
		p.orderBy = v
	}
	return p, nil
}

// sortKeys gives sortItems what to order by.
type sortKeys struct {
	name             string
	created, updated time.Time
	guid             string
}

// sortItems orders items by order_by (default: creation).
func sortItems[T any](items []T, orderBy string, keys func(T) sortKeys) {
	desc := strings.HasPrefix(orderBy, "-")
	field := strings.TrimPrefix(strings.TrimPrefix(orderBy, "-"), "+")
	sort.SliceStable(items, func(i, j int) bool {
		a, b := keys(items[i]), keys(items[j])
		if desc {
			a, b = b, a
		}
		switch field {
		case "name":
			if a.name != b.name {
				return a.name < b.name
			}
		case "updated_at":
			if !a.updated.Equal(b.updated) {
				return a.updated.Before(b.updated)
			}
		}
		if !a.created.Equal(b.created) {
			return a.created.Before(b.created)
		}
		return a.guid < b.guid
	})
}

// paginate cuts one page out of items, with absolute links.
func paginate[T any](base string, r *http.Request, p listParams, items []T) ccapi.List[T] {
	total := len(items)
	pages := (total + p.perPage - 1) / p.perPage
	if pages == 0 {
		pages = 1
	}
	href := func(page int) string {
		q := r.URL.Query()
		q.Set("page", strconv.Itoa(page))
		q.Set("per_page", strconv.Itoa(p.perPage))
		return base + r.URL.EscapedPath() + "?" + q.Encode()
	}
	out := ccapi.List[T]{Pagination: ccapi.Pagination{
		TotalResults: total, TotalPages: pages,
		First: ccapi.Link{Href: href(1)}, Last: ccapi.Link{Href: href(pages)},
	}, Resources: []T{}}
	if p.page < pages {
		out.Pagination.Next = &ccapi.Link{Href: href(p.page + 1)}
	}
	if p.page > 1 {
		out.Pagination.Previous = &ccapi.Link{Href: href(min(p.page-1, pages))}
	}
	start := (p.page - 1) * p.perPage
	if start < total {
		out.Resources = items[start:min(start+p.perPage, total)]
	}
	return out
}

// emptyList answers an always-empty list (service_route_bindings,
// sidecars, deployments).
func (c *CC) emptyList(w http.ResponseWriter, r *http.Request) error {
	p, err := parseList(r.URL.Query(), "created_at", "updated_at", "name")
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, paginate(c.base(r), r, p, []struct{}{}))
}

// effectContext is for BBS calls after a commit: not cut short when the
// client goes away, bounded.
func effectContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), effectTimeout)
}

// APIHandler is the public API: GET /, the token endpoint (uaa.go) and
// GET /login open, the rest behind a bearer token.
func (c *CC) APIHandler() http.Handler {
	mux := http.NewServeMux()
	open := func(p string, h handlerFunc) { mux.Handle(p, c.wrap(h, false)) }
	auth := func(p string, h handlerFunc) { mux.Handle(p, c.wrap(h, true)) }

	open("GET /{$}", c.getRoot)
	open("POST /oauth/token", c.oauthToken)
	open("GET /login", c.loginInfo)
	open("/", func(w http.ResponseWriter, r *http.Request) error { return notFound("Unknown request") })

	auth("GET /v3/organizations", c.listOrgs)
	auth("POST /v3/organizations", c.createOrg)
	auth("GET /v3/organizations/{guid}", c.getOrg)
	auth("GET /v3/organizations/{guid}/domains", c.listOrgDomains)
	auth("GET /v3/organizations/{guid}/domains/default", c.getOrgDefaultDomain)
	auth("GET /v3/spaces", c.listSpaces)
	auth("POST /v3/spaces", c.createSpace)
	auth("GET /v3/spaces/{guid}", c.getSpace)
	auth("POST /v3/spaces/{guid}/actions/apply_manifest", c.applyManifest)
	auth("POST /v3/spaces/{guid}/manifest_diff", c.manifestDiff)
	auth("DELETE /v3/spaces/{guid}/routes", c.deleteUnmappedRoutes)
	auth("GET /v3/domains", c.listDomains)
	auth("GET /v3/domains/{guid}", c.getDomain)
	auth("GET /v3/domains/{guid}/route_reservations", c.routeReservations)

	auth("GET /v3/routes", c.listRoutes)
	auth("POST /v3/routes", c.createRoute)
	auth("GET /v3/routes/{guid}", c.getRoute)
	auth("PATCH /v3/routes/{guid}", c.updateRoute)
	auth("DELETE /v3/routes/{guid}", c.deleteRoute)
	auth("GET /v3/routes/{guid}/destinations", c.listDestinations)
	auth("POST /v3/routes/{guid}/destinations", c.insertDestinations)
	auth("PATCH /v3/routes/{guid}/destinations", c.replaceDestinations)
	auth("PATCH /v3/routes/{guid}/destinations/{dguid}", c.updateDestination)
	auth("DELETE /v3/routes/{guid}/destinations/{dguid}", c.deleteDestination)
	auth("GET /v3/service_route_bindings", c.emptyList)

	auth("GET /v3/apps", c.listApps)
	auth("POST /v3/apps", c.createApp)
	auth("GET /v3/apps/{guid}", c.getApp)
	auth("PATCH /v3/apps/{guid}", c.updateApp)
	auth("DELETE /v3/apps/{guid}", c.deleteApp)
	auth("POST /v3/apps/{guid}/actions/start", c.startApp)
	auth("POST /v3/apps/{guid}/actions/stop", c.stopApp)
	auth("POST /v3/apps/{guid}/actions/restart", c.restartApp)
	auth("GET /v3/apps/{guid}/processes", c.listAppProcesses)
	auth("GET /v3/apps/{guid}/processes/{type}", c.getAppProcess)
	auth("POST /v3/apps/{guid}/processes/{type}/actions/scale", c.scaleAppProcess)
	auth("GET /v3/apps/{guid}/processes/{type}/stats", c.appProcessStats)
	auth("GET /v3/apps/{guid}/routes", c.listAppRoutes)
	auth("GET /v3/apps/{guid}/packages", c.listAppPackages)
	auth("GET /v3/apps/{guid}/droplets", c.listAppDroplets)
	auth("GET /v3/apps/{guid}/droplets/current", c.getCurrentDroplet)
	auth("GET /v3/apps/{guid}/relationships/current_droplet", c.getCurrentDropletRelationship)
	auth("PATCH /v3/apps/{guid}/relationships/current_droplet", c.setCurrentDroplet)
	auth("GET /v3/apps/{guid}/environment_variables", c.getAppEnv)
	auth("PATCH /v3/apps/{guid}/environment_variables", c.updateAppEnv)

	auth("GET /v3/processes", c.listProcesses)
	auth("GET /v3/processes/{guid}", c.getProcess)
	auth("PATCH /v3/processes/{guid}", c.updateProcess)
	auth("POST /v3/processes/{guid}/actions/scale", c.scaleProcess)
	auth("GET /v3/processes/{guid}/stats", c.processStats)
	auth("GET /v3/processes/{guid}/sidecars", c.emptyList)
	auth("GET /v3/deployments", c.emptyList)

	auth("POST /v3/resource_matches", c.resourceMatches)
	auth("GET /v3/packages", c.listPackages)
	auth("POST /v3/packages", c.createPackage)
	auth("GET /v3/packages/{guid}", c.getPackage)
	auth("POST /v3/packages/{guid}/upload", c.uploadPackage)
	auth("GET /v3/packages/{guid}/droplets", c.listPackageDroplets)
	auth("GET /v3/packages/{guid}/download", c.downloadPackage)
	auth("GET /v3/builds", c.listBuilds)
	auth("POST /v3/builds", c.createBuild)
	auth("GET /v3/builds/{guid}", c.getBuild)
	auth("GET /v3/droplets", c.listDroplets)
	auth("GET /v3/droplets/{guid}", c.getDroplet)
	auth("GET /v3/droplets/{guid}/download", c.downloadDroplet)
	auth("GET /v3/jobs/{guid}", c.getJob)
	auth("GET /v3/buildpacks", c.listBuildpacks)
	auth("GET /v3/buildpacks/{guid}", c.getBuildpack)

	auth("GET /api/v1/info", c.logCacheInfo)
	auth("GET /api/v1/read/{source_id}", c.logCacheRead)
	return mux
}

// getRoot is GET /: the root document (cf-cli-v8.md §3.1); the CC, the
// token endpoint (login, uaa) and the log cache are this one server.
func (c *CC) getRoot(w http.ResponseWriter, r *http.Request) error {
	base := c.base(r)
	return writeJSON(w, http.StatusOK, ccapi.Root{Links: map[string]*ccapi.RootLink{
		"self":                {Href: base},
		"cloud_controller_v2": nil,
		"cloud_controller_v3": {Href: base + "/v3", Meta: map[string]any{"version": ccapi.APIVersion}},
		"login":               {Href: base},
		"uaa":                 {Href: base},
		"log_cache":           {Href: base},
		"routing":             nil,
		"network_policy_v1":   nil,
		"logging":             nil,
		"app_ssh":             nil,
	}})
}

// job records a finished asynchronous operation and answers 202 with its
// absolute Location.
func (c *CC) job(w http.ResponseWriter, r *http.Request, op string, opErr *apiError) error {
	now := c.now()
	j := &jobRec{GUID: newGUID(), Operation: op, State: ccapi.JobComplete, CreatedAt: now, UpdatedAt: now}
	if opErr != nil {
		j.State = ccapi.JobFailed
		j.Errors = []ccapi.APIError{opErr.err}
	}
	if err := c.store.write(r.Context(), func(tx *stx) error { return insertRec(tx, tJobs, j) }); err != nil {
		return err
	}
	w.Header().Set("Location", c.base(r)+"/v3/jobs/"+j.GUID)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (c *CC) getJob(w http.ResponseWriter, r *http.Request) error {
	var j *jobRec
	err := c.store.read(r.Context(), func(tx *stx) (err error) {
		j, err = getRec[jobRec](tx, tJobs, r.PathValue("guid"))
		return err
	})
	if errors.Is(err, errNotFound) {
		return notFound("Job not found")
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, presentJob(c.base(r), j))
}
