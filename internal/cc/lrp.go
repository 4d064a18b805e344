package cc

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/cc/ccapi"
	"github.com/minicf/minicf/internal/trace"
)

// CC → Diego: the DesiredLRP of a process (AppRecipeBuilder), the updates
// that follow a commit (ProcessRouteHandler, scale, start, stop) and the
// periodic ProcessesSync.

// Paths inside the container, as the buildpack lifecycle uses them.
const (
	containerAppDir = "/home/vcap/app"
	rootFS          = "preloaded:" + DefaultStack
)

// effects are what a request does on the BBS (and the disk) after its
// database commit: LRPs to remove, apps whose LRPs to bring up to date,
// files to delete.
type effects struct {
	apps   map[string]bool
	remove []string
	files  []string
	traces []trace.Event // route-mapped steps (trace.go)
}

func newEffects() *effects { return &effects{apps: map[string]bool{}} }

func (e *effects) app(guid string) { e.apps[guid] = true }

// applyEffects runs fx after the commit, with a context the client's
// leaving does not cut short.
func (c *CC) applyEffects(r *http.Request, fx *effects) {
	ctx, cancel := effectContext(r)
	defer cancel()
	c.runEffects(ctx, fx)
}

// runEffects removes LRPs, then updates (or desires) the LRPs of each app
// from what the database now says. Errors are logged: the sync repairs
// them, as CC's are.
func (c *CC) runEffects(ctx context.Context, fx *effects) {
	c.emitTraces(fx)
	for _, f := range fx.files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("cc-file-remove-failed", "file", f, "error", err.Error())
		}
	}
	if c.bbs == nil || (len(fx.remove) == 0 && len(fx.apps) == 0) {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, c.lockWait)
	locked := c.lockLRPs(lctx)
	cancel()
	if !locked {
		c.log.Warn("cc-lrp-update-deferred", "reason", "a sync pass holds the BBS; the next sync applies the change",
			"apps", len(fx.apps), "removals", len(fx.remove))
		return
	}
	defer c.unlockLRPs()
	for _, g := range fx.remove {
		if err := c.bbs.RemoveDesiredLRP(ctx, g); err != nil && !errors.Is(err, bbs.ErrResourceNotFound) {
			c.log.Warn("cc-remove-lrp-failed", "process_guid", g, "error", err.Error())
		} else if err == nil {
			c.log.Info("cc-lrp-removed", "process_guid", g)
		}
	}
	if len(fx.apps) == 0 {
		return
	}
	var lrps []*bbs.DesiredLRP
	err := c.store.read(ctx, func(tx *stx) error {
		bundles, err := c.loadBundles(tx, sortedKeys(fx.apps))
		for _, b := range bundles {
			lrps = append(lrps, c.bundleLRPs(b)...)
		}
		return err
	})
	if err != nil {
		c.log.Warn("cc-lrp-update-skipped", "error", err.Error())
		return
	}
	for _, d := range lrps {
		c.updateOrDesire(ctx, d)
	}
}

// updateOrDesire brings the BBS's LRP to d: an update of instances,
// routes, annotation and metric tags, or a desire if there is none.
func (c *CC) updateOrDesire(ctx context.Context, d *bbs.DesiredLRP) {
	err := c.bbs.UpdateDesiredLRP(ctx, d.ProcessGUID, lrpUpdate(d))
	if errors.Is(err, bbs.ErrResourceNotFound) {
		err = c.bbs.DesireLRP(ctx, d)
		if err == nil {
			c.log.Info("cc-lrp-desired", "process_guid", d.ProcessGUID, "instances", d.Instances)
			return
		}
	}
	if err != nil {
		c.log.Warn("cc-lrp-update-failed", "process_guid", d.ProcessGUID, "error", err.Error())
		return
	}
	c.log.Info("cc-lrp-updated", "process_guid", d.ProcessGUID, "instances", d.Instances)
}

func lrpUpdate(d *bbs.DesiredLRP) *bbs.DesiredLRPUpdate {
	inst, routes, ann := d.Instances, d.Routes, d.Annotation
	return &bbs.DesiredLRPUpdate{Instances: &inst, Routes: &routes, Annotation: &ann, MetricTags: d.MetricTags}
}

// annotation is CC's process.updated_at.to_f.to_s: seconds with the
// fraction, as a Ruby float prints.
func annotation(t time.Time) string {
	s := strconv.FormatFloat(float64(t.UnixMicro())/1e6, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// appBundle is everything the LRPs of one app are made of.
type appBundle struct {
	app     *appRec
	space   *spaceRec
	org     *orgRec
	droplet *dropletRec
	procs   []*processRec
	dests   []*destRec
	routes  map[string]*routeRec
	domains map[string]*domainRec
}

// running reports whether the app's processes should have LRPs.
func (b *appBundle) running() bool {
	return b.app.State == ccapi.AppStarted && b.droplet != nil
}

// loadBundles reads the bundles of the given apps (every app if nil).
func (c *CC) loadBundles(tx *stx, appGUIDs []string) ([]*appBundle, error) {
	var apps []*appRec
	var err error
	if appGUIDs == nil {
		apps, err = listRecs[appRec](tx, tApps, "")
	} else {
		apps, err = listIn[appRec](tx, tApps, "guid", appGUIDs)
	}
	if err != nil || len(apps) == 0 {
		return nil, err
	}
	guids := make([]string, len(apps))
	for i, a := range apps {
		guids[i] = a.GUID
	}
	spaces, err := mapBy[spaceRec](tx, tSpaces)
	if err != nil {
		return nil, err
	}
	orgs, err := mapBy[orgRec](tx, tOrgs)
	if err != nil {
		return nil, err
	}
	domains, err := mapBy[domainRec](tx, tDomains)
	if err != nil {
		return nil, err
	}
	procs, err := listIn[processRec](tx, tProcesses, "app_guid", guids)
	if err != nil {
		return nil, err
	}
	dests, err := listIn[destRec](tx, tDestinations, "app_guid", guids)
	if err != nil {
		return nil, err
	}
	var routeGUIDs, dropletGUIDs []string
	for _, d := range dests {
		routeGUIDs = append(routeGUIDs, d.RouteGUID)
	}
	for _, a := range apps {
		if a.DropletGUID != "" {
			dropletGUIDs = append(dropletGUIDs, a.DropletGUID)
		}
	}
	routes, err := listIn[routeRec](tx, tRoutes, "guid", routeGUIDs)
	if err != nil {
		return nil, err
	}
	droplets, err := listIn[dropletRec](tx, tDroplets, "guid", dropletGUIDs)
	if err != nil {
		return nil, err
	}
	routeBy := map[string]*routeRec{}
	for _, r := range routes {
		routeBy[r.GUID] = r
	}
	dropletBy := map[string]*dropletRec{}
	for _, d := range droplets {
		dropletBy[d.GUID] = d
	}
	byApp := map[string]*appBundle{}
	var out []*appBundle
	for _, a := range apps {
		b := &appBundle{app: a, space: spaces[a.SpaceGUID], routes: routeBy, domains: domains}
		if b.space == nil {
			b.space = &spaceRec{GUID: a.SpaceGUID}
		}
		b.org = orgs[b.space.OrgGUID]
		if b.org == nil {
			b.org = &orgRec{GUID: b.space.OrgGUID}
		}
		if d := dropletBy[a.DropletGUID]; d != nil && d.State == ccapi.BuildStaged {
			b.droplet = d
		}
		byApp[a.GUID] = b
		out = append(out, b)
	}
	for _, p := range procs {
		if b := byApp[p.AppGUID]; b != nil {
			b.procs = append(b.procs, p)
		}
	}
	for _, d := range dests {
		if b := byApp[d.AppGUID]; b != nil {
			b.dests = append(b.dests, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].app.GUID < out[j].app.GUID })
	return out, nil
}

func mapBy[T any, P recPtr[T]](tx *stx, tb table) (map[string]P, error) {
	all, err := listRecs[T, P](tx, tb, "")
	m := make(map[string]P, len(all))
	for _, r := range all {
		m[r.key()] = r
	}
	return m, err
}

// processPorts are the container ports of a process's LRP: 8080 first,
// then each other port a destination of the process sends to.
func processPorts(dests []*destRec, ptype string) []uint32 {
	ports := []uint32{defaultAppPort}
	for _, d := range dests {
		if d.ProcessType == ptype && !slices.Contains(ports, uint32(d.Port)) {
			ports = append(ports, uint32(d.Port))
		}
	}
	slices.Sort(ports[1:])
	return ports
}

// cfRoutes is routes["cf-router"] of a process: one entry per mapping.
func (b *appBundle) cfRoutes(ptype string) []bbs.CFRoute {
	out := []bbs.CFRoute{}
	for _, d := range b.dests {
		rt := b.routes[d.RouteGUID]
		if d.ProcessType != ptype || rt == nil {
			continue
		}
		dom := b.domains[rt.DomainGUID]
		if dom == nil {
			continue
		}
		e := bbs.CFRoute{Hostnames: []string{routeURL(rt, dom.Name)}, Port: uint32(d.Port), Protocol: d.Protocol}
		if len(rt.Options) > 0 {
			e.Options = map[string]string{}
			for k, v := range rt.Options {
				e.Options[k] = v
			}
		}
		out = append(out, e)
	}
	sortCFRoutes(out)
	return out
}

func sortCFRoutes(rs []bbs.CFRoute) {
	sort.SliceStable(rs, func(i, j int) bool {
		a, b := strings.Join(rs[i].Hostnames, ","), strings.Join(rs[j].Hostnames, ",")
		if a != b {
			return a < b
		}
		if rs[i].Port != rs[j].Port {
			return rs[i].Port < rs[j].Port
		}
		return rs[i].Protocol < rs[j].Protocol
	})
}

// lrpRoutes is the whole routes map, with CC's three router keys.
func lrpRoutes(cf []bbs.CFRoute) bbs.Routes {
	r := bbs.Routes{}.SetCFRoutes(cf)
	r[bbs.RouterKeyTCP] = json.RawMessage(`[]`)
	r[bbs.RouterKeyInternal] = json.RawMessage(`[]`)
	return r
}

// startCommand is the command given to the process, else the droplet's.
func startCommand(p *processRec, d *dropletRec) string {
	if p.Command != nil && *p.Command != "" {
		return *p.Command
	}
	if d != nil {
		return d.ProcessTypes[p.Type]
	}
	return ""
}

func (b *appBundle) uris() []string {
	out := []string{}
	for _, r := range b.cfRoutes(defaultProcessType) {
		out = append(out, r.Hostnames...)
	}
	return out
}

// bundleLRPs are the DesiredLRPs of a running app (none otherwise).
func (c *CC) bundleLRPs(b *appBundle) []*bbs.DesiredLRP {
	if !b.running() {
		return nil
	}
	out := make([]*bbs.DesiredLRP, 0, len(b.procs))
	for _, p := range b.procs {
		out = append(out, c.desiredLRP(b, p))
	}
	return out
}

// desiredLRP is CC's AppRecipeBuilder for one process.
func (c *CC) desiredLRP(b *appBundle, p *processRec) *bbs.DesiredLRP {
	a := b.app
	ports := p.Ports
	if len(ports) == 0 {
		ports = processPorts(b.dests, p.Type)
	}
	uris := b.uris()
	vcap := map[string]any{
		"application_id": a.GUID, "application_name": a.Name, "application_uris": uris,
		"application_version": p.Version, "cf_api": c.apiURL(),
		"limits": map[string]int{"fds": 16384, "mem": p.MemoryMB, "disk": p.DiskMB},
		"name":   a.Name, "organization_id": b.org.GUID, "organization_name": b.org.Name,
		"process_id": p.GUID, "process_type": p.Type, "space_id": b.space.GUID, "space_name": b.space.Name,
		"uris": uris, "users": nil, "version": p.Version,
	}
	vcapJSON, _ := json.Marshal(vcap)
	env := []bbs.EnvironmentVariable{
		{Name: "VCAP_APPLICATION", Value: string(vcapJSON)},
		{Name: "MEMORY_LIMIT", Value: strconv.Itoa(p.MemoryMB) + "m"},
		{Name: "VCAP_SERVICES", Value: "{}"},
	}
	for _, k := range sortedKeys(a.Env) {
		env = append(env, bbs.EnvironmentVariable{Name: k, Value: a.Env[k]})
	}
	timeout := DefaultHealthTimeoutSec
	if p.HealthCheckTimeout != nil && *p.HealthCheckTimeout > 0 {
		timeout = *p.HealthCheckTimeout
	}
	d := &bbs.DesiredLRP{
		ProcessGUID: p.lrpGUID(),
		Domain:      bbs.DomainCFApps,
		Instances:   int32(p.Instances),
		Ports:       ports,
		Routes:      lrpRoutes(b.cfRoutes(p.Type)),
		LogGUID:     a.GUID,
		MetricTags: map[string]bbs.MetricTagValue{
			"source_id": {Static: a.GUID}, "process_id": {Static: p.GUID}, "process_type": {Static: p.Type},
			"app_id": {Static: a.GUID}, "app_name": {Static: a.Name},
			"space_id": {Static: b.space.GUID}, "space_name": {Static: b.space.Name},
			"organization_id": {Static: b.org.GUID}, "organization_name": {Static: b.org.Name},
			"process_instance_id": {Dynamic: "INSTANCE_GUID"}, "instance_id": {Dynamic: "INDEX"},
		},
		Annotation: annotation(p.UpdatedAt),
		MemoryMB:   int32(p.MemoryMB),
		DiskMB:     int32(p.DiskMB),
		RootFS:     rootFS,
		Setup:      &bbs.DownloadAction{From: c.InternalURL() + "/internal/v4/droplets/" + b.droplet.GUID + "/download", To: containerAppDir},
		Action: &bbs.RunAction{Path: bbs.LifecycleLauncher, Args: []string{containerAppDir, startCommand(p, b.droplet), ""},
			Env: env, User: "vcap"},
		CheckDefinition:       checkDefinition(p, ports[0]),
		StartTimeoutMs:        int64(timeout) * 1000,
		CertificateProperties: &bbs.CertificateProperties{OrganizationalUnit: []string{"organization:" + b.org.GUID, "space:" + b.space.GUID, "app:" + a.GUID}},
	}
	return d
}

// checkDefinition is the health check: port → TCP, http → GET endpoint,
// process → none (running once the process started).
func checkDefinition(p *processRec, port uint32) *bbs.CheckDefinition {
	var invocationMs uint64
	if p.InvocationTimeout != nil && *p.InvocationTimeout > 0 {
		invocationMs = uint64(*p.InvocationTimeout) * 1000
	}
	switch p.HealthCheckType {
	case hcPort:
		return &bbs.CheckDefinition{Checks: []bbs.Check{{TCPCheck: &bbs.TCPCheck{Port: port, ConnectTimeoutMs: invocationMs}}}}
	case hcHTTP:
		path := p.HealthCheckEndpoint
		if path == "" {
			path = "/"
		}
		return &bbs.CheckDefinition{Checks: []bbs.Check{{HTTPCheck: &bbs.HTTPCheck{Port: port, Path: path, RequestTimeoutMs: invocationMs}}}}
	}
	return nil
}

// apiURL is the API as apps see it in VCAP_APPLICATION.cf_api.
func (c *CC) apiURL() string { return c.URL() }

// touchProcesses bumps updated_at of the processes of fx's apps (their
// LRP annotation changes, as CC's ProcessRouteHandler does) and, for a
// started app whose port set changed, makes a new version: ports cannot
// change on a DesiredLRP, so the old LRP goes and a new one comes.
func (c *CC) touchProcesses(tx *stx, fx *effects) error {
	if len(fx.apps) == 0 {
		return nil
	}
	now := c.now()
	for _, appGUID := range sortedKeys(fx.apps) {
		app, err := getRec[appRec](tx, tApps, appGUID)
		if errors.Is(err, errNotFound) {
			continue
		} else if err != nil {
			return err
		}
		procs, err := listRecs[processRec](tx, tProcesses, "app_guid = ?", appGUID)
		if err != nil {
			return err
		}
		dests, err := listRecs[destRec](tx, tDestinations, "app_guid = ?", appGUID)
		if err != nil {
			return err
		}
		for _, p := range procs {
			p.UpdatedAt = now
			ports := processPorts(dests, p.Type)
			if !slices.Equal(ports, p.Ports) {
				if app.State == ccapi.AppStarted && len(p.Ports) > 0 {
					fx.remove = append(fx.remove, p.lrpGUID())
					p.Version = newGUID()
				}
				p.Ports = ports
			}
			if err := updateRec(tx, tProcesses, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// Sync is one ProcessesSync pass: every started process with a droplet
// gets its LRP (desired if missing, updated if its annotation, routes or
// instances differ, replaced if its ports differ), every other LRP in the
// cf-apps domain is removed, and if all that worked the cf-apps domain is
// marked fresh for 120 s.
func (c *CC) Sync(ctx context.Context) error {
	if c.bbs == nil {
		return errors.New("cc: no BBS to sync with")
	}
	if !c.lockLRPs(ctx) {
		return ctx.Err()
	}
	defer c.unlockLRPs()
	start := time.Now()
	// A process whose destinations changed its ports without a new version
	// (it should not happen; repaired here) gets one.
	fx := newEffects()
	if err := c.store.write(ctx, func(tx *stx) error {
		bundles, err := c.loadBundles(tx, nil)
		for _, b := range bundles {
			for _, p := range b.procs {
				if b.running() && !slices.Equal(processPorts(b.dests, p.Type), p.Ports) {
					fx.app(b.app.GUID)
				}
			}
		}
		if err != nil {
			return err
		}
		return c.touchProcesses(tx, fx)
	}); err != nil {
		return err
	}
	desired := map[string]*bbs.DesiredLRP{}
	if err := c.store.read(ctx, func(tx *stx) error {
		bundles, err := c.loadBundles(tx, nil)
		for _, b := range bundles {
			for _, d := range c.bundleLRPs(b) {
				desired[d.ProcessGUID] = d
			}
		}
		return err
	}); err != nil {
		return err
	}
	existing, err := c.bbs.DesiredLRPs(ctx, bbs.DesiredLRPsRequest{Domain: bbs.DomainCFApps})
	if err != nil {
		return err
	}
	have := map[string]*bbs.DesiredLRP{}
	for _, e := range existing {
		have[e.ProcessGUID] = e
	}
	var errs []error
	var created, updated, removed int
	for _, g := range sortedKeys(desired) {
		d, e := desired[g], have[g]
		switch {
		case e == nil:
			if err := c.bbs.DesireLRP(ctx, d); err != nil {
				errs = append(errs, err)
				continue
			}
			created++
		case !slices.Equal(e.Ports, d.Ports):
			if err := c.bbs.RemoveDesiredLRP(ctx, g); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := c.bbs.DesireLRP(ctx, d); err != nil {
				errs = append(errs, err)
				continue
			}
			updated++
		case e.Annotation != d.Annotation || e.Instances != d.Instances || !sameCFRoutes(e.Routes, d.Routes):
			if err := c.bbs.UpdateDesiredLRP(ctx, g, lrpUpdate(d)); err != nil {
				errs = append(errs, err)
				continue
			}
			updated++
		}
	}
	for _, e := range existing {
		if desired[e.ProcessGUID] == nil {
			if err := c.bbs.RemoveDesiredLRP(ctx, e.ProcessGUID); err != nil && !errors.Is(err, bbs.ErrResourceNotFound) {
				errs = append(errs, err)
				continue
			}
			removed++
		}
	}
	if len(errs) == 0 {
		if err := c.bbs.UpsertDomain(ctx, bbs.DomainCFApps, DomainFreshnessTTL); err != nil {
			errs = append(errs, err)
		}
	}
	level := c.log.Debug
	if created+updated+removed > 0 || len(errs) > 0 {
		level = c.log.Info
	}
	level("cc-sync", "desired", len(desired), "created", created, "updated", updated, "removed", removed,
		"errors", len(errs), "took_ms", time.Since(start).Milliseconds())
	return errors.Join(errs...)
}

// sameCFRoutes compares the cf-router routes of two LRPs, in any order.
func sameCFRoutes(a, b bbs.Routes) bool {
	ra, errA := a.CFRoutes()
	rb, errB := b.CFRoutes()
	if errA != nil || errB != nil || len(ra) != len(rb) {
		return errA == nil && errB == nil && len(ra) == len(rb)
	}
	sortCFRoutes(ra)
	sortCFRoutes(rb)
	ja, _ := json.Marshal(ra)
	jb, _ := json.Marshal(rb)
	return string(ja) == string(jb)
}

func (c *CC) syncLoop(ctx context.Context) {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.SyncInterval)
	defer t.Stop()
	for {
		pass, cancel := context.WithTimeout(ctx, 10*time.Minute) // CC's diego_sync job timeout
		if err := c.Sync(pass); err != nil && ctx.Err() == nil {
			c.log.Warn("cc-sync-failed", "error", err.Error())
		}
		if err := c.pruneJobs(pass); err != nil && ctx.Err() == nil {
			c.log.Warn("cc-job-prune-failed", "error", err.Error())
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.syncKick:
		}
	}
}

// jobTTL is how long a finished job can still be read.
const jobTTL = 24 * time.Hour

// pruneJobs forgets jobs older than jobTTL.
func (c *CC) pruneJobs(ctx context.Context) error {
	return c.store.write(ctx, func(tx *stx) error {
		_, err := tx.exec("DELETE FROM jobs WHERE created_at < ?", c.now().Add(-jobTTL).UnixNano())
		return err
	})
}
