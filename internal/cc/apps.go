package cc

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/cc/ccapi"
)

// Apps, their processes, start/stop/restart, scale, the current droplet
// and environment variables.

var processTypePattern = regexp.MustCompile(`^[A-Za-z0-9_\-]{1,255}$`)

func validProcessType(t string) error {
	if !processTypePattern.MatchString(t) {
		return unprocessable("Process type %q may hold only letters, digits, '_' and '-' (at most 255)", t)
	}
	return nil
}

// newProcess makes a process with CC's defaults: web gets one instance and
// a port health check, others none and a process health check.
func (c *CC) newProcess(appGUID, ptype string) *processRec {
	now := c.now()
	p := &processRec{GUID: newGUID(), AppGUID: appGUID, Type: ptype, MemoryMB: c.cfg.DefaultAppMemoryMB,
		DiskMB: c.cfg.DefaultAppDiskMB, LogRateLimit: -1, HealthCheckType: hcProcess, Version: newGUID(),
		CreatedAt: now, UpdatedAt: now}
	if ptype == defaultProcessType {
		p.Instances = 1
		p.HealthCheckType = hcPort
	}
	return p
}

func getApp(tx *stx, guid string) (*appRec, error) {
	a, err := getRec[appRec](tx, tApps, guid)
	if errors.Is(err, errNotFound) {
		return nil, notFound("App not found")
	}
	return a, err
}

// appNameTaken is CC's text for a second app of one name in a space.
func appNameTaken(name string) *apiError {
	return unprocessable("App with the name '%s' already exists.", name)
}

func (c *CC) listApps(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	p, err := parseList(q, "created_at", "updated_at", "name", "state")
	if err != nil {
		return err
	}
	names, guids, spaces, orgs := queryFilter(q, "names"), queryFilter(q, "guids"), queryFilter(q, "space_guids"), queryFilter(q, "organization_guids")
	var out []*appRec
	err = c.store.read(r.Context(), func(tx *stx) error {
		var all []*appRec
		var err error
		if spaces.present && len(spaces.set) <= 100 {
			all, err = listIn[appRec](tx, tApps, "space_guid", spaces.values())
		} else {
			all, err = listRecs[appRec](tx, tApps, "")
		}
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
		for _, a := range all {
			if names.match(a.Name) && guids.match(a.GUID) && spaces.match(a.SpaceGUID) && orgs.match(spaceOrg[a.SpaceGUID]) {
				out = append(out, a)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if strings.TrimPrefix(p.orderBy, "-") == "state" {
		p.orderBy = strings.Replace(p.orderBy, "state", "name", 1)
	}
	sortItems(out, p.orderBy, func(a *appRec) sortKeys { return sortKeys{a.Name, a.CreatedAt, a.UpdatedAt, a.GUID} })
	base := c.base(r)
	res := make([]ccapi.App, len(out))
	for i, a := range out {
		res[i] = presentApp(base, a)
	}
	return writeJSON(w, http.StatusOK, paginate(base, r, p, res))
}

// readApp loads the app of the path's guid (a 404 if there is none).
func (c *CC) readApp(r *http.Request) (a *appRec, err error) {
	err = c.store.read(r.Context(), func(tx *stx) (err error) {
		a, err = getApp(tx, r.PathValue("guid"))
		return err
	})
	return a, err
}

func (c *CC) getApp(w http.ResponseWriter, r *http.Request) error {
	a, err := c.readApp(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, presentApp(c.base(r), a))
}

type lifecycleBody struct {
	Type string `json:"type"`
	Data struct {
		Buildpacks buildpackChoice `json:"buildpacks"`
		Stack      *string         `json:"stack"`
	} `json:"data"`
}

// applyLifecycle applies a request's lifecycle to a: the stack, then the
// buildpacks, which must be admin buildpacks for that stack
// (buildpacks.go); given as null, none or only "default", the app is
// auto-detected again.
func applyLifecycle(a *appRec, l *lifecycleBody) error {
	if l == nil {
		return nil
	}
	if l.Type != "" && l.Type != "buildpack" {
		return unprocessable("Lifecycle type must be 'buildpack': minicf stages buildpack apps only")
	}
	if l.Data.Stack != nil {
		if *l.Data.Stack != "" && *l.Data.Stack != DefaultStack {
			return unprocessable("Stack must be an existing stack: minicf has only '%s'", DefaultStack)
		}
		a.Stack = *l.Data.Stack
	}
	if l.Data.Buildpacks.set {
		for _, b := range l.Data.Buildpacks.names {
			if !storable(b) || len(b) > 255 {
				return unprocessable("Buildpack %q is invalid", b)
			}
		}
		bps := chosenBuildpacks(l.Data.Buildpacks.names)
		if detail := checkBuildpacks(bps, a.Stack); detail != "" {
			return unprocessable("%s", detail)
		}
		a.Buildpacks = bps
	}
	return nil
}

func validEnv(env map[string]*string) error {
	for k := range env {
		switch {
		case k == "":
			return unprocessable("Environment variable names must not be empty")
		case strings.HasPrefix(k, "VCAP_"):
			return unprocessable("Environment variable names cannot start with VCAP_")
		case k == "PORT":
			return unprocessable("Environment variable names cannot be PORT")
		case !storable(k) || strings.ContainsAny(k, "="):
			return unprocessable("Environment variable name %q is invalid", k)
		}
	}
	return nil
}

func mergeEnv(a *appRec, env map[string]*string) {
	for k, v := range env {
		if v == nil {
			delete(a.Env, k)
			continue
		}
		if a.Env == nil {
			a.Env = map[string]string{}
		}
		a.Env[k] = *v
	}
	if len(a.Env) == 0 {
		a.Env = nil
	}
}

func (c *CC) createApp(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name          string                        `json:"name"`
		Relationships map[string]ccapi.Relationship `json:"relationships"`
		Lifecycle     *lifecycleBody                `json:"lifecycle"`
		Env           map[string]*string            `json:"environment_variables"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	if err := validName("Name", body.Name); err != nil {
		return err
	}
	if err := validEnv(body.Env); err != nil {
		return err
	}
	var a *appRec
	err := c.store.write(r.Context(), func(tx *stx) (err error) {
		a, err = c.createAppTx(tx, body.Name, relGUID(body.Relationships, "space"))
		if err != nil {
			return err
		}
		if err := applyLifecycle(a, body.Lifecycle); err != nil {
			return err
		}
		mergeEnv(a, body.Env)
		return updateRec(tx, tApps, a)
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, presentApp(c.base(r), a))
}

// createAppTx makes a STOPPED app with a web process in a space.
func (c *CC) createAppTx(tx *stx, name, spaceGUID string) (*appRec, error) {
	if _, err := getRec[spaceRec](tx, tSpaces, spaceGUID); errors.Is(err, errNotFound) {
		return nil, unprocessable("Invalid space. Ensure that the space exists and you have access to it.")
	} else if err != nil {
		return nil, err
	}
	taken, err := listRecs[appRec](tx, tApps, "space_guid = ? AND name = ?", spaceGUID, name)
	if err != nil {
		return nil, err
	}
	if len(taken) > 0 {
		return nil, appNameTaken(name)
	}
	now := c.now()
	a := &appRec{GUID: newGUID(), Name: name, SpaceGUID: spaceGUID, State: ccapi.AppStopped, CreatedAt: now, UpdatedAt: now}
	if err := insertRec(tx, tApps, a); err != nil {
		if errors.Is(err, errUnique) {
			return nil, appNameTaken(name)
		}
		return nil, err
	}
	if err := insertRec(tx, tProcesses, c.newProcess(a.GUID, defaultProcessType)); err != nil {
		return nil, err
	}
	return a, nil
}

func (c *CC) updateApp(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name      *string        `json:"name"`
		Lifecycle *lifecycleBody `json:"lifecycle"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	var a *appRec
	fx := newEffects()
	err := c.store.write(r.Context(), func(tx *stx) (err error) {
		if a, err = getApp(tx, r.PathValue("guid")); err != nil {
			return err
		}
		if body.Name != nil && *body.Name != a.Name {
			if err := validName("Name", *body.Name); err != nil {
				return err
			}
			a.Name = *body.Name
			fx.app(a.GUID) // the app name is in the LRP's metric tags
		}
		if err := applyLifecycle(a, body.Lifecycle); err != nil {
			return err
		}
		a.UpdatedAt = c.now()
		if err := updateRec(tx, tApps, a); err != nil {
			if errors.Is(err, errUnique) {
				return appNameTaken(a.Name)
			}
			return err
		}
		return c.touchProcesses(tx, fx)
	})
	if err != nil {
		return err
	}
	c.applyEffects(r, fx)
	return writeJSON(w, http.StatusOK, presentApp(c.base(r), a))
}

func (c *CC) deleteApp(w http.ResponseWriter, r *http.Request) error {
	fx := newEffects()
	err := c.store.write(r.Context(), func(tx *stx) error {
		a, err := getApp(tx, r.PathValue("guid"))
		if err != nil {
			return err
		}
		return c.deleteAppTx(tx, a, fx)
	})
	if err != nil {
		return err
	}
	c.applyEffects(r, fx)
	return c.job(w, r, "app.delete", nil)
}

// deleteAppTx removes an app with its processes (and their LRPs, after
// the commit), route mappings, packages, builds and droplets (and files).
func (c *CC) deleteAppTx(tx *stx, a *appRec, fx *effects) error {
	err := deleteOfApp(tx, tProcesses, a.GUID, func(p *processRec) {
		if a.State == ccapi.AppStarted {
			fx.remove = append(fx.remove, p.lrpGUID())
		}
	})
	if err == nil {
		err = deleteOfApp(tx, tDestinations, a.GUID, func(*destRec) {})
	}
	if err == nil {
		err = deleteOfApp(tx, tPackages, a.GUID, func(p *packageRec) {
			if p.File != "" {
				fx.files = append(fx.files, c.packagePath(p.File))
			}
		})
	}
	if err == nil {
		err = deleteOfApp(tx, tDroplets, a.GUID, func(d *dropletRec) {
			if d.File != "" {
				fx.files = append(fx.files, c.dropletPath(d.File))
			}
		})
	}
	if err == nil {
		err = deleteOfApp(tx, tBuilds, a.GUID, func(*buildRec) {})
	}
	if err != nil {
		return err
	}
	return deleteRec(tx, tApps, a.GUID)
}

// deleteOfApp deletes tb's records of an app, calling each on every one
// before it goes.
func deleteOfApp[T any, P recPtr[T]](tx *stx, tb table, appGUID string, each func(P)) error {
	recs, err := listRecs[T, P](tx, tb, "app_guid = ?", appGUID)
	if err != nil {
		return err
	}
	for _, x := range recs {
		each(x)
		if err := deleteRec(tx, tb, x.key()); err != nil {
			return err
		}
	}
	return nil
}

// appAction runs f on the app in a write transaction, then the effects,
// and answers the app.
func (c *CC) appAction(w http.ResponseWriter, r *http.Request, f func(tx *stx, a *appRec, fx *effects) error) error {
	fx := newEffects()
	var a *appRec
	err := c.store.write(r.Context(), func(tx *stx) (err error) {
		if a, err = getApp(tx, r.PathValue("guid")); err != nil {
			return err
		}
		return f(tx, a, fx)
	})
	if err != nil {
		return err
	}
	c.applyEffects(r, fx)
	return writeJSON(w, http.StatusOK, presentApp(c.base(r), a))
}

func (c *CC) startApp(w http.ResponseWriter, r *http.Request) error {
	return c.appAction(w, r, func(tx *stx, a *appRec, fx *effects) error { return c.startTx(tx, a, fx, false) })
}

func (c *CC) restartApp(w http.ResponseWriter, r *http.Request) error {
	return c.appAction(w, r, func(tx *stx, a *appRec, fx *effects) error { return c.startTx(tx, a, fx, true) })
}

func (c *CC) stopApp(w http.ResponseWriter, r *http.Request) error {
	return c.appAction(w, r, c.stopTx)
}

// startTx starts a stopped app (a no-op for a started one, unless
// restart): each process gets a new version, so a new LRP; a restart
// removes the old ones.
func (c *CC) startTx(tx *stx, a *appRec, fx *effects, restart bool) error {
	if a.DropletGUID == "" {
		return unprocessable("Assign a droplet before starting this app.")
	}
	if a.State == ccapi.AppStarted && !restart {
		return nil
	}
	procs, err := listRecs[processRec](tx, tProcesses, "app_guid = ?", a.GUID)
	if err != nil {
		return err
	}
	dests, err := listRecs[destRec](tx, tDestinations, "app_guid = ?", a.GUID)
	if err != nil {
		return err
	}
	now := c.now()
	for _, p := range procs {
		if a.State == ccapi.AppStarted {
			fx.remove = append(fx.remove, p.lrpGUID())
		}
		p.Version = newGUID()
		p.Ports = processPorts(dests, p.Type)
		p.UpdatedAt = now
		if err := updateRec(tx, tProcesses, p); err != nil {
			return err
		}
	}
	a.State = ccapi.AppStarted
	a.UpdatedAt = now
	fx.app(a.GUID)
	return updateRec(tx, tApps, a)
}

// stopTx stops a started app: its LRPs go after the commit.
func (c *CC) stopTx(tx *stx, a *appRec, fx *effects) error {
	if a.State == ccapi.AppStopped {
		return nil
	}
	procs, err := listRecs[processRec](tx, tProcesses, "app_guid = ?", a.GUID)
	if err != nil {
		return err
	}
	for _, p := range procs {
		fx.remove = append(fx.remove, p.lrpGUID())
	}
	a.State = ccapi.AppStopped
	a.UpdatedAt = c.now()
	return updateRec(tx, tApps, a)
}

// Processes.

// processView is a process with what presenting it needs.
type processView struct {
	p       *processRec
	droplet *dropletRec
	space   string
	started bool // the app is STARTED (with a droplet)
}

func (c *CC) presentProcesses(r *http.Request, views []processView) ([]ccapi.Process, error) {
	base := c.base(r)
	embed := r.URL.Query().Get("embed") == "process_instances"
	out := make([]ccapi.Process, len(views))
	for i, v := range views {
		out[i] = presentProcess(base, v.p, v.droplet)
		if embed {
			stats, err := c.stats(r.Context(), v)
			if err != nil {
				return nil, err
			}
			out[i].ProcessInstances = []ccapi.ProcessInstance{}
			now := c.now().Unix()
			for _, s := range stats {
				out[i].ProcessInstances = append(out[i].ProcessInstances, ccapi.ProcessInstance{Index: s.Index, State: s.State, Since: now - s.Uptime})
			}
		}
	}
	return out, nil
}

// processViews loads the droplets of the processes' apps.
func processViews(tx *stx, procs []*processRec) ([]processView, error) {
	var appGUIDs []string
	for _, p := range procs {
		appGUIDs = append(appGUIDs, p.AppGUID)
	}
	apps, err := listIn[appRec](tx, tApps, "guid", appGUIDs)
	if err != nil {
		return nil, err
	}
	appBy := map[string]*appRec{}
	var dropletGUIDs []string
	for _, a := range apps {
		appBy[a.GUID] = a
		if a.DropletGUID != "" {
			dropletGUIDs = append(dropletGUIDs, a.DropletGUID)
		}
	}
	droplets, err := listIn[dropletRec](tx, tDroplets, "guid", dropletGUIDs)
	if err != nil {
		return nil, err
	}
	dropletBy := map[string]*dropletRec{}
	for _, d := range droplets {
		dropletBy[d.GUID] = d
	}
	out := make([]processView, len(procs))
	for i, p := range procs {
		out[i] = processView{p: p}
		if a := appBy[p.AppGUID]; a != nil {
			out[i].droplet = dropletBy[a.DropletGUID]
			out[i].space = a.SpaceGUID
			out[i].started = a.State == ccapi.AppStarted && a.DropletGUID != ""
		}
	}
	return out, nil
}

func (c *CC) listProcesses(w http.ResponseWriter, r *http.Request) error {
	return c.listProcessesWhere(w, r, "")
}

func (c *CC) listAppProcesses(w http.ResponseWriter, r *http.Request) error {
	return c.listProcessesWhere(w, r, r.PathValue("guid"))
}

func (c *CC) listProcessesWhere(w http.ResponseWriter, r *http.Request, appGUID string) error {
	q := r.URL.Query()
	p, err := parseList(q, "created_at", "updated_at")
	if err != nil {
		return err
	}
	apps, spaces, guids, types := queryFilter(q, "app_guids"), queryFilter(q, "space_guids"), queryFilter(q, "guids"), queryFilter(q, "types")
	var views []processView
	err = c.store.read(r.Context(), func(tx *stx) error {
		var all []*processRec
		var err error
		switch {
		case appGUID != "":
			if _, err := getApp(tx, appGUID); err != nil {
				return err
			}
			all, err = listRecs[processRec](tx, tProcesses, "app_guid = ?", appGUID)
		case apps.present && len(apps.set) <= 500:
			all, err = listIn[processRec](tx, tProcesses, "app_guid", apps.values())
		default:
			all, err = listRecs[processRec](tx, tProcesses, "")
		}
		if err != nil {
			return err
		}
		vs, err := processViews(tx, all)
		for _, v := range vs {
			if apps.match(v.p.AppGUID) && spaces.match(v.space) && guids.match(v.p.GUID) && types.match(v.p.Type) {
				views = append(views, v)
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	sortItems(views, p.orderBy, func(v processView) sortKeys { return sortKeys{"", v.p.CreatedAt, v.p.UpdatedAt, v.p.GUID} })
	list := paginate(c.base(r), r, p, views)
	res, err := c.presentProcesses(r, list.Resources)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, ccapi.List[ccapi.Process]{Pagination: list.Pagination, Resources: res})
}

// loadProcess finds a process by guid, or by app guid and type.
func (c *CC) loadProcess(r *http.Request, tx *stx) (processView, error) {
	var p *processRec
	var err error
	if t := r.PathValue("type"); t != "" {
		if _, err := getApp(tx, r.PathValue("guid")); err != nil {
			return processView{}, err
		}
		var ps []*processRec
		ps, err = listRecs[processRec](tx, tProcesses, "app_guid = ? AND type = ?", r.PathValue("guid"), t)
		if err == nil && len(ps) == 0 {
			err = errNotFound
		}
		if err == nil {
			p = ps[0]
		}
	} else {
		p, err = getRec[processRec](tx, tProcesses, r.PathValue("guid"))
	}
	if errors.Is(err, errNotFound) {
		return processView{}, notFound("Process not found")
	} else if err != nil {
		return processView{}, err
	}
	vs, err := processViews(tx, []*processRec{p})
	if err != nil {
		return processView{}, err
	}
	return vs[0], nil
}

func (c *CC) getProcess(w http.ResponseWriter, r *http.Request) error {
	var v processView
	err := c.store.read(r.Context(), func(tx *stx) (err error) {
		v, err = c.loadProcess(r, tx)
		return err
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, presentProcess(c.base(r), v.p, v.droplet))
}

func (c *CC) getAppProcess(w http.ResponseWriter, r *http.Request) error { return c.getProcess(w, r) }

// healthCheckBody is a process's health_check in PATCH /v3/processes/:guid.
type healthCheckBody struct {
	Type *string `json:"type"`
	Data *struct {
		Timeout           *int    `json:"timeout"`
		InvocationTimeout *int    `json:"invocation_timeout"`
		Endpoint          *string `json:"endpoint"`
	} `json:"data"`
}

// setHealthCheck validates and applies a health check change.
func setHealthCheck(p *processRec, typ *string, endpoint *string, timeout, invocation *int) error {
	if typ != nil {
		t := *typ
		if t == "none" {
			t = hcProcess
		}
		if t != hcPort && t != hcHTTP && t != hcProcess {
			return unprocessable(`Health check type must be "port", "process", or "http"`)
		}
		p.HealthCheckType = t
		if t != hcHTTP {
			p.HealthCheckEndpoint = ""
		}
	}
	if endpoint != nil {
		if p.HealthCheckType != hcHTTP {
			return unprocessable(`Health check type must be "http" to set a health check HTTP endpoint`)
		}
		if !strings.HasPrefix(*endpoint, "/") || validPath(*endpoint) != nil && *endpoint != "/" {
			return unprocessable("Health check endpoint must be a valid URI path")
		}
		p.HealthCheckEndpoint = *endpoint
	}
	if timeout != nil {
		if *timeout < 1 {
			return unprocessable("Health check timeout must be greater than or equal to 1")
		}
		p.HealthCheckTimeout = timeout
	}
	if invocation != nil {
		if *invocation < 1 {
			return unprocessable("Health check invocation timeout must be greater than or equal to 1")
		}
		p.InvocationTimeout = invocation
	}
	return nil
}

const maxCommandLen = 4096

func setCommand(p *processRec, raw json.RawMessage) error {
	if string(raw) == "null" {
		p.Command = nil
		return nil
	}
	var cmd string
	if err := json.Unmarshal(raw, &cmd); err != nil {
		return unprocessable("Command must be a string")
	}
	if len(cmd) > maxCommandLen || !storable(cmd) {
		return unprocessable("Command must be between 1 and %d characters", maxCommandLen)
	}
	if cmd == "" {
		p.Command = nil
	} else {
		p.Command = &cmd
	}
	return nil
}

func (c *CC) updateProcess(w http.ResponseWriter, r *http.Request) error {
	var body map[string]json.RawMessage
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	var v processView
	err := c.store.write(r.Context(), func(tx *stx) (err error) {
		if v, err = c.loadProcess(r, tx); err != nil {
			return err
		}
		if raw, ok := body["command"]; ok {
			if err := setCommand(v.p, raw); err != nil {
				return err
			}
		}
		if raw, ok := body["health_check"]; ok {
			var hc healthCheckBody
			if err := json.Unmarshal(raw, &hc); err != nil {
				return unprocessable("Health check must be an object")
			}
			var endpoint *string
			var timeout, invocation *int
			if hc.Data != nil {
				endpoint, timeout, invocation = hc.Data.Endpoint, hc.Data.Timeout, hc.Data.InvocationTimeout
			}
			if err := setHealthCheck(v.p, hc.Type, endpoint, timeout, invocation); err != nil {
				return err
			}
		}
		v.p.UpdatedAt = c.now()
		return updateRec(tx, tProcesses, v.p)
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, presentProcess(c.base(r), v.p, v.droplet))
}

type scaleBody struct {
	Instances    *int   `json:"instances"`
	MemoryInMB   *int   `json:"memory_in_mb"`
	DiskInMB     *int   `json:"disk_in_mb"`
	LogRateLimit *int64 `json:"log_rate_limit_in_bytes_per_second"`
}

// scale validates and applies a scale; it reports whether the instance
// count changed.
func scale(p *processRec, instances, memoryMB, diskMB *int, logRate *int64) (bool, error) {
	if instances != nil && (*instances < 0 || *instances > bbs.MaxInstances) {
		return false, unprocessable("Instances must be between 0 and %d", bbs.MaxInstances)
	}
	if memoryMB != nil && *memoryMB < 1 {
		return false, unprocessable("Memory in mb must be greater than 0")
	}
	if diskMB != nil && *diskMB < 1 {
		return false, unprocessable("Disk in mb must be greater than 0")
	}
	if logRate != nil && *logRate < -1 {
		return false, unprocessable("Log rate limit in bytes per second must be greater than or equal to -1")
	}
	changed := instances != nil && *instances != p.Instances
	if instances != nil {
		p.Instances = *instances
	}
	if memoryMB != nil {
		p.MemoryMB = *memoryMB
	}
	if diskMB != nil {
		p.DiskMB = *diskMB
	}
	if logRate != nil {
		p.LogRateLimit = *logRate
	}
	return changed, nil
}

// scaleProcess is POST /v3/processes/:guid/actions/scale and
// /v3/apps/:guid/processes/:type/actions/scale: instances reach a started
// app's LRP at once; memory and disk at the next start.
func (c *CC) scaleProcess(w http.ResponseWriter, r *http.Request) error {
	var body scaleBody
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	fx := newEffects()
	var v processView
	err := c.store.write(r.Context(), func(tx *stx) (err error) {
		if v, err = c.loadProcess(r, tx); err != nil {
			return err
		}
		changed, err := scale(v.p, body.Instances, body.MemoryInMB, body.DiskInMB, body.LogRateLimit)
		if err != nil {
			return err
		}
		v.p.UpdatedAt = c.now()
		if changed {
			fx.app(v.p.AppGUID)
		}
		return updateRec(tx, tProcesses, v.p)
	})
	if err != nil {
		return err
	}
	c.applyEffects(r, fx)
	return writeJSON(w, http.StatusAccepted, presentProcess(c.base(r), v.p, v.droplet))
}

func (c *CC) scaleAppProcess(w http.ResponseWriter, r *http.Request) error {
	return c.scaleProcess(w, r)
}

// Current droplet.

func (c *CC) getCurrentDroplet(w http.ResponseWriter, r *http.Request) error {
	var d *dropletRec
	err := c.store.read(r.Context(), func(tx *stx) error {
		a, err := getApp(tx, r.PathValue("guid"))
		if err != nil {
			return err
		}
		if d, err = getRec[dropletRec](tx, tDroplets, a.DropletGUID); errors.Is(err, errNotFound) {
			return notFound("Droplet not found")
		}
		return err
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, presentDroplet(c.base(r), d))
}

func (c *CC) currentDropletResponse(w http.ResponseWriter, r *http.Request, a *appRec) error {
	base := c.base(r)
	out := ccapi.CurrentDroplet{Links: ccapi.Links{
		"self":    link(base + "/v3/apps/" + a.GUID + "/relationships/current_droplet"),
		"related": link(base + "/v3/apps/" + a.GUID + "/droplets/current"),
	}}
	if a.DropletGUID != "" {
		out.Data = &ccapi.Ref{GUID: a.DropletGUID}
	}
	return writeJSON(w, http.StatusOK, out)
}

func (c *CC) getCurrentDropletRelationship(w http.ResponseWriter, r *http.Request) error {
	a, err := c.readApp(r)
	if err != nil {
		return err
	}
	return c.currentDropletResponse(w, r, a)
}

// setCurrentDroplet assigns a staged droplet of the app and makes a
// process for each of its process types the app lacks. A started app
// keeps running its old droplet until it restarts, as on CC.
func (c *CC) setCurrentDroplet(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Data *ccapi.Ref `json:"data"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	var a *appRec
	err := c.store.write(r.Context(), func(tx *stx) (err error) {
		if a, err = getApp(tx, r.PathValue("guid")); err != nil {
			return err
		}
		if body.Data == nil || body.Data.GUID == "" {
			return unprocessable("Current droplet cannot be removed. Replace it with a preferable droplet.")
		}
		d, err := getRec[dropletRec](tx, tDroplets, body.Data.GUID)
		if errors.Is(err, errNotFound) || (err == nil && (d.AppGUID != a.GUID || d.State != ccapi.BuildStaged)) {
			return unprocessable("Unable to assign current droplet. Ensure the droplet exists and belongs to this app.")
		} else if err != nil {
			return err
		}
		procs, err := listRecs[processRec](tx, tProcesses, "app_guid = ?", a.GUID)
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for _, p := range procs {
			have[p.Type] = true
		}
		for _, t := range sortedKeys(d.ProcessTypes) {
			if !have[t] && validProcessType(t) == nil {
				if err := insertRec(tx, tProcesses, c.newProcess(a.GUID, t)); err != nil {
					return err
				}
			}
		}
		a.DropletGUID = d.GUID
		a.UpdatedAt = c.now()
		return updateRec(tx, tApps, a)
	})
	if err != nil {
		return err
	}
	return c.currentDropletResponse(w, r, a)
}

// Environment variables.

func (c *CC) envResponse(w http.ResponseWriter, r *http.Request, a *appRec) error {
	base := c.base(r)
	vars := map[string]string{}
	for k, v := range a.Env {
		vars[k] = v
	}
	return writeJSON(w, http.StatusOK, map[string]any{"var": vars, "links": ccapi.Links{
		"self": link(base + "/v3/apps/" + a.GUID + "/environment_variables"), "app": link(base + "/v3/apps/" + a.GUID)}})
}

func (c *CC) getAppEnv(w http.ResponseWriter, r *http.Request) error {
	a, err := c.readApp(r)
	if err != nil {
		return err
	}
	return c.envResponse(w, r, a)
}

// updateAppEnv merges variables (null removes one); they reach the app at
// its next start.
func (c *CC) updateAppEnv(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Var map[string]*string `json:"var"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	if err := validEnv(body.Var); err != nil {
		return err
	}
	var a *appRec
	err := c.store.write(r.Context(), func(tx *stx) (err error) {
		if a, err = getApp(tx, r.PathValue("guid")); err != nil {
			return err
		}
		mergeEnv(a, body.Var)
		a.UpdatedAt = c.now()
		return updateRec(tx, tApps, a)
	})
	if err != nil {
		return err
	}
	return c.envResponse(w, r, a)
}
