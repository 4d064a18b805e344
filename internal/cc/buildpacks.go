package cc

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/minicf/minicf/internal/cc/ccapi"
	"github.com/minicf/minicf/internal/lifecycle"
)

// Admin buildpacks. CC keeps them in a table that operators fill (cf
// create-buildpack) and cells download from; minicf's builder carries its
// buildpacks itself, so the Cloud Controller lists lifecycle's
// (lifecycle.AdminBuildpacks) instead: what an app may choose is then
// exactly what the builder can run, and there is nothing to create,
// upload or lose. They are READY, enabled, unlocked, for the one stack,
// with guids derived from their names and one fixed creation time, so
// that lists are stable across restarts and databases.
//
// An app's lifecycle.data.buildpacks (POST/PATCH /v3/apps, POST
// /v3/builds, apply_manifest) must each be one of them, as CC's
// BuildpackLifecycleDataValidator requires, else 422 (on apply_manifest:
// the job fails) with CC's detail, `Buildpack "NAME" for stack "STACK"
// must be an existing admin buildpack or a valid git URI`. CC would also
// take a URL and let the cell fetch it; minicf cannot, so a URL is
// refused at once, naming it, rather than failing later while staging.
// "default", "null" and null mean auto-detect, as the cf CLI and CC's
// manifests mean them: they are dropped, and an app with no buildpacks
// left is detected at staging (staging.go).

// buildpacksCreated is the admin buildpacks' created_at and updated_at.
var buildpacksCreated = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)

// buildpackFilename is what `cf buildpacks` shows as their file: there is
// none, they are part of minicf's builder.
const buildpackFilename = "built into minicf"

// buildpackGUIDSpace namespaces the admin buildpacks' name-derived guids.
var buildpackGUIDSpace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/minicf/minicf/buildpacks"))

func buildpackGUID(name string) string {
	return uuid.NewSHA1(buildpackGUIDSpace, []byte(name)).String()
}

func presentBuildpack(base, name string, position int) ccapi.Buildpack {
	self := base + "/v3/buildpacks/" + buildpackGUID(name)
	stack, file := DefaultStack, buildpackFilename
	return ccapi.Buildpack{
		Resource:  resource(buildpackGUID(name), buildpacksCreated, buildpacksCreated, ccapi.Links{"self": link(self), "upload": linkM(self+"/upload", "POST")}),
		Name:      name,
		Stack:     &stack,
		Position:  position,
		Enabled:   true,
		Locked:    false,
		State:     ccapi.BuildpackReady,
		Filename:  &file,
		Lifecycle: ccapi.LifecycleBuildpack,
	}
}

// adminBuildpackList is the admin buildpacks in position order.
func adminBuildpackList(base string) []ccapi.Buildpack {
	names := lifecycle.AdminBuildpacks()
	out := make([]ccapi.Buildpack, len(names))
	for i, n := range names {
		out[i] = presentBuildpack(base, n, i+1)
	}
	return out
}

// listBuildpacks is GET /v3/buildpacks: names, stacks, lifecycle and
// label_selector filters (the cf CLI sends order_by=position and, for
// --labels and --lifecycle, the last two), ordered by position by default.
func (c *CC) listBuildpacks(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	p, err := parseList(q, "created_at", "updated_at", "position")
	if err != nil {
		return err
	}
	sel, err := parseLabelSelector(q.Get("label_selector"))
	if err != nil {
		return err
	}
	names, stacks, lifecycles := queryFilter(q, "names"), queryFilter(q, "stacks"), queryFilter(q, "lifecycle")
	var out []ccapi.Buildpack
	for _, bp := range adminBuildpackList(c.base(r)) {
		if names.match(bp.Name) && stacks.match(*bp.Stack) && lifecycles.match(bp.Lifecycle) && sel.matchesNoLabels() {
			out = append(out, bp)
		}
	}
	// They share their times, so every order is position order, but for
	// a descending one.
	if strings.HasPrefix(p.orderBy, "-") {
		slices.Reverse(out)
	}
	return writeJSON(w, http.StatusOK, paginate(c.base(r), r, p, out))
}

func (c *CC) getBuildpack(w http.ResponseWriter, r *http.Request) error {
	for _, bp := range adminBuildpackList(c.base(r)) {
		if bp.GUID == r.PathValue("guid") {
			return writeJSON(w, http.StatusOK, bp)
		}
	}
	return notFound("Buildpack not found")
}

// labelSelector is a parsed label_selector: its requirements, each
// "key", "!key", "key=v", "key==v", "key!=v", "key in (v,...)" or
// "key notin (v,...)".
type labelSelector []string

func parseLabelSelector(s string) (labelSelector, error) {
	var reqs labelSelector
	depth, start := 0, 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			switch s[i] {
			case '(':
				depth++
				continue
			case ')':
				depth--
				continue
			case ',':
				if depth > 0 {
					continue
				}
			default:
				continue
			}
		}
		req := strings.TrimSpace(s[start:i])
		start = i + 1
		if req == "" {
			if i < len(s) || len(reqs) > 0 {
				return nil, badQuery("Label selector '%s' is invalid", s)
			}
			continue
		}
		reqs = append(reqs, req)
	}
	if depth != 0 {
		return nil, badQuery("Label selector '%s' is invalid", s)
	}
	return reqs, nil
}

// matchesNoLabels reports whether a resource without labels passes: only
// requirements that a missing key meets ("!key", "key!=v", "key notin
// (...)") do.
func (sel labelSelector) matchesNoLabels() bool {
	for _, req := range sel {
		if !strings.HasPrefix(req, "!") && !strings.Contains(req, "!=") && !strings.Contains(req, " notin ") {
			return false
		}
	}
	return true
}

// Buildpack choice.

// buildpackChoice is lifecycle.data.buildpacks in a request: set when the
// key was given (null included, which resets to auto-detect).
type buildpackChoice struct {
	set   bool
	names []string
}

func (b *buildpackChoice) UnmarshalJSON(data []byte) error {
	b.set = true
	var list []*string
	if err := json.Unmarshal(data, &list); err != nil {
		return errors.New("buildpacks must be a list of strings")
	}
	b.names = nil
	for _, n := range list {
		if n == nil {
			b.names = append(b.names, "null")
		} else {
			b.names = append(b.names, *n)
		}
	}
	return nil
}

// autoDetect reports whether a requested buildpack name means "detect".
func autoDetect(name string) bool { return name == "" || name == "default" || name == "null" }

// chosenBuildpacks drops the names that mean auto-detect; nil is auto-detect.
func chosenBuildpacks(names []string) []string {
	var out []string
	for _, n := range names {
		if !autoDetect(n) {
			out = append(out, n)
		}
	}
	return out
}

// isURL reports whether a buildpack is given by URL (CC: BuildpackInfo's
// URI match), not by name.
func isURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && (u.Host != "" || u.Opaque != "")
}

// checkBuildpacks returns the detail of CC's 422 when a chosen buildpack
// is not an admin buildpack (all of them, comma-joined, as CC joins its
// validation errors), "" when all are.
func checkBuildpacks(names []string, stack string) string {
	if stack == "" {
		stack = DefaultStack
	}
	admin := lifecycle.AdminBuildpacks()
	var errs []string
	for _, n := range names {
		switch {
		case slices.Contains(admin, n):
		case isURL(n):
			errs = append(errs, fmt.Sprintf(`Buildpack "%s" is a URL: minicf cannot fetch buildpacks, use an admin buildpack (%s)`, n, strings.Join(admin, ", ")))
		default:
			errs = append(errs, fmt.Sprintf(`Buildpack "%s" for stack "%s" must be an existing admin buildpack or a valid git URI`, n, stack))
		}
	}
	return strings.Join(errs, ", ")
}
