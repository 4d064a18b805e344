package cc

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/cc/ccapi"
	"github.com/minicf/minicf/internal/lifecycle"
)

// Staging runs as a Diego Task, as CC's stager does.
//
// POST /v3/builds makes a build (STAGING) and a droplet (STAGING) and
// desires the Task below. The cell runs it; the BBS posts the completed
// Task to the completion callback, which marks the build and droplet
// STAGED (with the droplet's process types) or FAILED (with the reason).
//
// The staging Task (domain cf-tasks, task guid = build guid):
//
//	setup:  download https://<internal>/internal/v4/packages/<package>/download
//	        (the package zip) into /home/vcap/app
//	action: /tmp/lifecycle/builder (bbs.LifecycleBuilder), user vcap, args
//	          --app-dir /home/vcap/app
//	          --output-droplet /tmp/droplet.tgz
//	          --result /tmp/result.json
//	          [--command CMD]      the web process's command, when it has one
//	          --buildpack-order B1,B2,... [--skip-detect]
//	                               the build's buildpacks with --skip-detect
//	                               when the app chose some; else all admin
//	                               buildpacks in position order, to detect
//	        env: the app's environment variables, then
//	          GOCACHE=<state>/staging/gocache GOMODCACHE=<state>/staging/gomodcache
//	          GOPROXY=off GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
//	          PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
//	upload: /tmp/droplet.tgz → HTTP PUT https://<internal>/internal/v4/droplets/<droplet>/upload
//	result_file: /tmp/result.json
//	completion_callback_url: https://<internal>/internal/v4/tasks/<build>/completed
//	log_guid: the app guid, log_source: STG (each line reaches the log cache
//	          on minicf.logs.<app guid> as the cell publishes it)
//	memory_mb, disk_mb: the web process's; max_duration_ms: 15 min
//
// The builder contract (the `builder` lifecycle verb implements it;
// internal/lifecycle/builder.go has the details):
//
//   - /home/vcap/app holds the package's files.
//   - Buildpacks are CC's -buildpackOrder/-skipDetect contract with Diego's
//     builder. An app that chose buildpacks (push -b; lifecycle.data.
//     buildpacks, admin buildpacks only, buildpacks.go) is staged by
//     exactly those, in that order, with no detection: choosing is how a
//     user says "not what detection would pick", e.g. a prebuilt binary
//     pushed with its go.mod and -b binary_buildpack must not be rebuilt,
//     and a buildpack that cannot stage the app fails staging with what it
//     needs instead of silently handing over to another. An app that chose
//     none is detected from all admin buildpacks, in position order, as
//     before buildpacks could be chosen. The CC passes names only; the
//     builder carries the buildpacks (the CC lists its names from there),
//     so a name it does not know fails staging.
//   - go_buildpack runs `go build` (with the env above: offline, modules
//     from GOMODCACHE); the start command is --command, else the
//     Procfile's web: line, else the built binary. binary_buildpack compiles nothing; the start
//     command is --command, else the `web:` line of the app's Procfile. No
//     start command at all fails staging with a message saying so.
//   - It writes the droplet to --output-droplet: a gzip'd tar whose root
//     is the app directory's content (what goes back to /home/vcap/app when
//     an instance starts), file modes kept.
//   - It writes --result, JSON:
//     {"process_types":{"web":"<start command>"},"lifecycle_type":"buildpack",
//     "execution_metadata":"","detected_buildpack":"go|binary|procfile",
//     "lifecycle_metadata":{"buildpack_key":"<admin buildpack>",
//     "detected_buildpack":"...","buildpacks":[{"key":"<admin buildpack>",
//     "name":"go|binary"},...]}} (other Procfile lines may add process
//     types). lifecycle_metadata (Diego's builder's) names the buildpacks
//     that ran, the last one having staged the app; the droplet's
//     buildpacks[] come from it ({name: key, buildpack_name: name,
//     detect_output on the last}), so `cf app` shows the buildpack that
//     was used, detected or chosen.
//   - It prints progress on stdout/stderr (these are the STG lines the user
//     sees) and exits non-zero on failure; the Task then fails with the
//     reason the cell reports.
//
// An instance then runs /tmp/lifecycle/launcher (bbs.LifecycleLauncher)
// with args ["/home/vcap/app", "<start command>", ""]: the process's
// command if it has one, else the droplet's process_types entry.
const (
	stagingDropletPath = "/tmp/droplet.tgz"
	stagingResultPath  = "/tmp/result.json"
	stagingLogSource   = "STG"
	minStagingMemoryMB = 1024
	minStagingDiskMB   = 4096
	stagingPATH        = "/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// maxTaskCallbackBody bounds a completed Task posted to the callback.
	maxTaskCallbackBody = 256 << 10
)

// stagingResult is what the builder writes to --result.
type stagingResult struct {
	ProcessTypes      map[string]string `json:"process_types"`
	LifecycleType     string            `json:"lifecycle_type"`
	ExecutionMetadata string            `json:"execution_metadata"`
	DetectedBuildpack string            `json:"detected_buildpack"`
	LifecycleMetadata struct {
		BuildpackKey      string `json:"buildpack_key"`
		DetectedBuildpack string `json:"detected_buildpack"`
		Buildpacks        []struct {
			Key     string `json:"key"`
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"buildpacks"`
	} `json:"lifecycle_metadata"`
}

// maxStagedBuildpacks bounds the buildpacks a result may name.
const maxStagedBuildpacks = 16

// stagedBuildpacks are the droplet's buildpacks from a staging result:
// the ones that ran, the detect output on the one that staged.
func (res *stagingResult) stagedBuildpacks() []stagedBuildpack {
	var out []stagedBuildpack
	for _, bp := range res.LifecycleMetadata.Buildpacks {
		sb := stagedBuildpack{Key: bp.Key, Name: bp.Name, Version: bp.Version}
		if bp.Key == res.LifecycleMetadata.BuildpackKey {
			sb.DetectOutput = res.DetectedBuildpack
		}
		out = append(out, sb)
	}
	return out
}

func (c *CC) goCache() string {
	if c.cfg.GoCache != "" {
		return c.cfg.GoCache
	}
	return c.stagingDir("gocache")
}

func (c *CC) stagingDir(name string) string {
	return filepath.Join(c.cfg.StateDir, "staging", name)
}

// stagingTask is the Task definition that stages a build.
func (c *CC) stagingTask(b *buildRec, a *appRec, web *processRec) *bbs.TaskDefinition {
	iu := c.InternalURL()
	args := []string{"--app-dir", containerAppDir, "--output-droplet", stagingDropletPath, "--result", stagingResultPath}
	mem, disk := c.cfg.DefaultAppMemoryMB, c.cfg.DefaultAppDiskMB
	if web != nil {
		if web.Command != nil && *web.Command != "" {
			args = append(args, "--command", *web.Command)
		}
		mem, disk = web.MemoryMB, web.DiskMB
	}
	if len(b.Buildpacks) > 0 {
		args = append(args, "--buildpack-order", strings.Join(b.Buildpacks, ","), "--skip-detect")
	} else {
		args = append(args, "--buildpack-order", strings.Join(lifecycle.AdminBuildpacks(), ","))
	}
	// Staging compiles: like CC (staging.minimum_staging_memory_mb and
	// minimum_staging_disk_mb), it gets at least 1 GiB and 4 GiB whatever
	// the app itself needs, or a cold `go build` is killed by its cgroup.
	mem, disk = max(mem, minStagingMemoryMB), max(disk, minStagingDiskMB)
	var env []bbs.EnvironmentVariable
	for _, k := range sortedKeys(a.Env) {
		env = append(env, bbs.EnvironmentVariable{Name: k, Value: a.Env[k]})
	}
	env = append(env,
		bbs.EnvironmentVariable{Name: "GOCACHE", Value: c.goCache()},
		bbs.EnvironmentVariable{Name: "GOMODCACHE", Value: c.stagingDir("gomodcache")},
		bbs.EnvironmentVariable{Name: "GOPROXY", Value: "off"},
		bbs.EnvironmentVariable{Name: "GOFLAGS", Value: "-mod=mod"},
		bbs.EnvironmentVariable{Name: "CGO_ENABLED", Value: "0"},
		bbs.EnvironmentVariable{Name: "GOTOOLCHAIN", Value: "local"},
		bbs.EnvironmentVariable{Name: "PATH", Value: stagingPATH},
	)
	return &bbs.TaskDefinition{
		RootFS:                rootFS,
		Setup:                 &bbs.DownloadAction{From: iu + "/internal/v4/packages/" + b.PackageGUID + "/download", To: containerAppDir},
		Action:                &bbs.RunAction{Path: bbs.LifecycleBuilder, Args: args, Env: env, User: "vcap"},
		MemoryMB:              int32(mem),
		DiskMB:                int32(disk),
		Upload:                &bbs.UploadAction{From: stagingDropletPath, To: iu + "/internal/v4/droplets/" + b.DropletGUID + "/upload"},
		ResultFile:            stagingResultPath,
		CompletionCallbackURL: iu + "/internal/v4/tasks/" + b.GUID + "/completed",
		LogGUID:               a.GUID,
		LogSource:             stagingLogSource,
		MaxDurationMs:         c.cfg.StagingTimeout.Milliseconds(),
	}
}

func (c *CC) createBuild(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Package   *ccapi.Ref     `json:"package"`
		Lifecycle *lifecycleBody `json:"lifecycle"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	if body.Package == nil || body.Package.GUID == "" {
		return unprocessable("Package guid is required")
	}
	claims := claimsOf(r)
	var b *buildRec
	var app *appRec
	var web *processRec
	err := c.store.write(r.Context(), func(tx *stx) error {
		pkg, err := getRec[packageRec](tx, tPackages, body.Package.GUID)
		if errors.Is(err, errNotFound) {
			return unprocessable("Unable to use package. Ensure that the package exists and you have access to it.")
		} else if err != nil {
			return err
		}
		if pkg.State != ccapi.PackageReady {
			return badRequest("Bad request: Cannot stage package whose state is not ready.")
		}
		if app, err = getRec[appRec](tx, tApps, pkg.AppGUID); err != nil {
			return err
		}
		lc := *app
		if err := applyLifecycle(&lc, body.Lifecycle); err != nil {
			return err
		}
		// The app's own may predate the admin buildpacks' check.
		if detail := checkBuildpacks(lc.Buildpacks, lc.Stack); detail != "" {
			return unprocessable("%s", detail)
		}
		webs, err := listRecs[processRec](tx, tProcesses, "app_guid = ? AND type = ?", app.GUID, defaultProcessType)
		if err != nil {
			return err
		}
		if len(webs) > 0 {
			web = webs[0]
		}
		now := c.now()
		stack := lc.Stack
		if stack == "" {
			stack = DefaultStack
		}
		b = &buildRec{GUID: newGUID(), AppGUID: app.GUID, PackageGUID: pkg.GUID, DropletGUID: newGUID(),
			State: ccapi.BuildStaging, Buildpacks: lc.Buildpacks, Stack: stack,
			CreatedByName: claims.UserName, CreatedByGUID: claims.UserID, CreatedAt: now, UpdatedAt: now}
		d := &dropletRec{GUID: b.DropletGUID, AppGUID: app.GUID, PackageGUID: pkg.GUID, BuildGUID: b.GUID,
			State: ccapi.BuildStaging, Buildpacks: lc.Buildpacks, Stack: stack, CreatedAt: now, UpdatedAt: now}
		if err := insertRec(tx, tBuilds, b); err != nil {
			return err
		}
		return insertRec(tx, tDroplets, d)
	})
	if err != nil {
		return err
	}
	var desireErr error
	if c.bbs == nil {
		desireErr = errors.New("no BBS is configured")
	} else {
		ctx, cancel := effectContext(r)
		desireErr = c.bbs.DesireTask(ctx, b.GUID, bbs.DomainCFTasks, c.stagingTask(b, app, web))
		cancel()
	}
	if desireErr != nil {
		c.log.Warn("cc-staging-task-not-desired", "build_guid", b.GUID, "error", desireErr.Error())
		if err := c.failBuild(r, b.GUID, "cannot start staging: "+desireErr.Error()); err != nil {
			return err
		}
		b.State, b.Error = ccapi.BuildFailed, stagingError("cannot start staging: "+desireErr.Error())
	} else {
		c.log.Info("cc-staging-task-desired", "build_guid", b.GUID, "app_guid", b.AppGUID, "package_guid", b.PackageGUID)
	}
	return writeJSON(w, http.StatusCreated, presentBuild(c.base(r), b))
}

func stagingError(reason string) string { return "StagingError - Staging error: " + reason }

func (c *CC) failBuild(r *http.Request, buildGUID, reason string) error {
	return c.store.write(r.Context(), func(tx *stx) error {
		b, err := getRec[buildRec](tx, tBuilds, buildGUID)
		if err != nil {
			return err
		}
		return c.finishBuildTx(tx, b, nil, reason)
	})
}

// finishBuildTx marks a STAGING build STAGED (res set) or FAILED (reason);
// a build already done stays as it is (the callback may come twice).
func (c *CC) finishBuildTx(tx *stx, b *buildRec, res *stagingResult, reason string) error {
	if b.State != ccapi.BuildStaging {
		return nil
	}
	d, err := getRec[dropletRec](tx, tDroplets, b.DropletGUID)
	if errors.Is(err, errNotFound) {
		d = nil
	} else if err != nil {
		return err
	}
	now := c.now()
	if res != nil && (d == nil || d.File == "") {
		res, reason = nil, "the droplet was not uploaded"
	}
	if res == nil {
		if reason == "" {
			reason = "staging failed"
		}
		b.State, b.Error, b.UpdatedAt = ccapi.BuildFailed, stagingError(reason), now
		if d != nil {
			d.State, d.Error, d.UpdatedAt = ccapi.BuildFailed, b.Error, now
		}
	} else {
		b.State, b.UpdatedAt = ccapi.BuildStaged, now
		d.State, d.UpdatedAt = ccapi.BuildStaged, now
		d.ProcessTypes, d.ExecutionMetadata, d.DetectedBuildpack = res.ProcessTypes, res.ExecutionMetadata, res.DetectedBuildpack
		d.StagedBuildpacks = res.stagedBuildpacks()
	}
	if err := updateRec(tx, tBuilds, b); err != nil {
		return err
	}
	if d != nil {
		return updateRec(tx, tDroplets, d)
	}
	return nil
}

// parseStagingResult reads the builder's result, or says what is wrong.
func parseStagingResult(s string) (*stagingResult, error) {
	var res stagingResult
	dec := json.NewDecoder(strings.NewReader(s))
	if err := dec.Decode(&res); err != nil {
		return nil, fmt.Errorf("the builder's result is not the expected JSON: %v", err)
	}
	if len(res.ProcessTypes) > 64 {
		return nil, errors.New("the builder's result has more than 64 process types")
	}
	for t, cmd := range res.ProcessTypes {
		if validProcessType(t) != nil || len(cmd) > maxCommandLen || !storable(cmd) {
			return nil, fmt.Errorf("the builder's result has an invalid process type %q", t)
		}
	}
	if !storable(res.ExecutionMetadata) || !storable(res.DetectedBuildpack) || len(res.DetectedBuildpack) > 255 {
		return nil, errors.New("the builder's result has invalid metadata")
	}
	lm := &res.LifecycleMetadata
	if len(lm.Buildpacks) > maxStagedBuildpacks {
		return nil, fmt.Errorf("the builder's result names more than %d buildpacks", maxStagedBuildpacks)
	}
	for _, bp := range lm.Buildpacks {
		for _, v := range []string{bp.Key, bp.Name, bp.Version} {
			if !storable(v) || len(v) > 255 {
				return nil, errors.New("the builder's result has invalid buildpack metadata")
			}
		}
	}
	if res.ProcessTypes == nil {
		res.ProcessTypes = map[string]string{}
	}
	return &res, nil
}

// taskCompleted is the staging Task's completion callback (internal API):
// the BBS posts the completed bbs.Task. Idempotent; a build that is gone
// (its app was deleted) is answered 200 so the BBS lets the Task go.
func (c *CC) taskCompleted(w http.ResponseWriter, r *http.Request) error {
	guid := r.PathValue("guid")
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTaskCallbackBody))
	rc.SetReadDeadline(time.Time{})
	if err != nil {
		return errf(http.StatusRequestEntityTooLarge, ccapi.ErrRequestTooLarge, "The completed task is larger than %d bytes or unreadable: %v", maxTaskCallbackBody, err)
	}
	var task bbs.Task
	if err := json.Unmarshal(data, &task); err != nil {
		return errf(http.StatusBadRequest, ccapi.ErrMessageParseError, "Request invalid due to parse error: the body is not a Task: %v", err)
	}
	if task.TaskGUID != "" && task.TaskGUID != guid {
		return badRequest("The task guid %q in the body is not %q", task.TaskGUID, guid)
	}
	var res *stagingResult
	reason := ""
	if task.Failed {
		reason = task.FailureReason
	} else if res, err = parseStagingResult(task.Result); err != nil {
		reason = err.Error()
	}
	var b *buildRec
	err = c.store.write(r.Context(), func(tx *stx) (err error) {
		b, err = getRec[buildRec](tx, tBuilds, guid)
		if err != nil {
			return err
		}
		return c.finishBuildTx(tx, b, res, reason)
	})
	if errors.Is(err, errNotFound) {
		c.log.Info("cc-staging-callback-unknown-build", "build_guid", guid)
		return writeJSON(w, http.StatusOK, struct{}{})
	}
	if err != nil {
		return err
	}
	c.log.Info("cc-staging-completed", "build_guid", guid, "state", b.State, "error", b.Error)
	return writeJSON(w, http.StatusOK, struct{}{})
}

// uploadDroplet is PUT /internal/v4/droplets/:guid/upload: the cell sends
// the staged droplet (a .tgz), bounded by MaxDropletBytes.
func (c *CC) uploadDroplet(w http.ResponseWriter, r *http.Request) error {
	guid := r.PathValue("guid")
	var d *dropletRec
	if err := c.store.read(r.Context(), func(tx *stx) (err error) {
		d, err = getRec[dropletRec](tx, tDroplets, guid)
		return err
	}); errors.Is(err, errNotFound) {
		return notFound("Droplet not found")
	} else if err != nil {
		return err
	}
	if d.State != ccapi.BuildStaging {
		return unprocessable("The droplet is %s; only a STAGING droplet takes an upload", d.State)
	}
	max := c.cfg.MaxDropletBytes
	if r.ContentLength > max {
		return errf(http.StatusRequestEntityTooLarge, ccapi.ErrRequestTooLarge, "The droplet is larger than the %d bytes allowed.", max)
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(uploadTimeout))
	defer rc.SetReadDeadline(time.Time{})
	file := guid + "-" + randomSuffix() + ".tgz"
	final := c.dropletPath(file)
	f, err := os.OpenFile(final, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			os.Remove(final)
		}
	}()
	h := sha256.New()
	var head bytes.Buffer
	n, err := io.Copy(io.MultiWriter(f, h, &limitedBuffer{buf: &head, max: 2}), io.LimitReader(r.Body, max+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return badRequest("Cannot read the droplet: %v", err)
	}
	if n > max {
		return errf(http.StatusRequestEntityTooLarge, ccapi.ErrRequestTooLarge, "The droplet is larger than the %d bytes allowed.", max)
	}
	if !bytes.HasPrefix(head.Bytes(), []byte{0x1f, 0x8b}) {
		return unprocessable("The droplet is not a gzip'd tar (.tgz)")
	}
	sum := hex.EncodeToString(h.Sum(nil))
	var old string
	err = c.store.write(r.Context(), func(tx *stx) (err error) {
		if d, err = getRec[dropletRec](tx, tDroplets, guid); err != nil {
			return err
		}
		if d.State != ccapi.BuildStaging {
			return unprocessable("The droplet is %s; only a STAGING droplet takes an upload", d.State)
		}
		old = d.File
		d.File, d.SHA256, d.UpdatedAt = file, sum, c.now()
		return updateRec(tx, tDroplets, d)
	})
	if errors.Is(err, errNotFound) {
		return notFound("Droplet not found")
	}
	if err != nil {
		return err
	}
	keep = true
	if old != "" {
		os.Remove(c.dropletPath(old))
	}
	c.log.Info("cc-droplet-uploaded", "droplet_guid", guid, "bytes", n, "sha256", sum)
	return writeJSON(w, http.StatusCreated, struct{}{})
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if left := l.max - l.buf.Len(); left > 0 {
		l.buf.Write(p[:min(left, len(p))])
	}
	return len(p), nil
}

// downloadDroplet serves a staged droplet's .tgz.
func (c *CC) downloadDroplet(w http.ResponseWriter, r *http.Request) error {
	var d *dropletRec
	if err := c.store.read(r.Context(), func(tx *stx) (err error) {
		d, err = getRec[dropletRec](tx, tDroplets, r.PathValue("guid"))
		return err
	}); errors.Is(err, errNotFound) {
		return notFound("Droplet not found")
	} else if err != nil {
		return err
	}
	if d.File == "" {
		return notFound("Droplet not found")
	}
	return serveFile(w, r, c.dropletPath(d.File), "application/gzip", "Droplet")
}

// InternalHandler is the internal API (served with mutual TLS): package
// and droplet downloads for cells, droplet uploads from staging, and the
// staging Task's completion callback.
func (c *CC) InternalHandler() http.Handler {
	mux := http.NewServeMux()
	h := func(p string, f handlerFunc) { mux.Handle(p, c.wrap(f, false)) }
	h("GET /internal/v4/packages/{guid}/download", c.downloadPackage)
	h("GET /internal/v4/droplets/{guid}/download", c.downloadDroplet)
	h("PUT /internal/v4/droplets/{guid}/upload", c.uploadDroplet)
	h("POST /internal/v4/tasks/{guid}/completed", c.taskCompleted)
	h("/", func(w http.ResponseWriter, r *http.Request) error { return notFound("Unknown request") })
	return mux
}

// Builds and droplets.

func (c *CC) getBuild(w http.ResponseWriter, r *http.Request) error {
	var b *buildRec
	err := c.store.read(r.Context(), func(tx *stx) (err error) {
		b, err = getRec[buildRec](tx, tBuilds, r.PathValue("guid"))
		return err
	})
	if errors.Is(err, errNotFound) {
		return notFound("Build not found")
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, presentBuild(c.base(r), b))
}

func (c *CC) listBuilds(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	p, err := parseList(q, "created_at", "updated_at")
	if err != nil {
		return err
	}
	apps, pkgs, states, guids := queryFilter(q, "app_guids"), queryFilter(q, "package_guids"), queryFilter(q, "states"), queryFilter(q, "guids")
	var out []*buildRec
	err = c.store.read(r.Context(), func(tx *stx) error {
		all, err := listRecs[buildRec](tx, tBuilds, "")
		for _, b := range all {
			if apps.match(b.AppGUID) && pkgs.match(b.PackageGUID) && states.match(b.State) && guids.match(b.GUID) {
				out = append(out, b)
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	sortItems(out, p.orderBy, func(b *buildRec) sortKeys { return sortKeys{"", b.CreatedAt, b.UpdatedAt, b.GUID} })
	base := c.base(r)
	res := make([]ccapi.Build, len(out))
	for i, b := range out {
		res[i] = presentBuild(base, b)
	}
	return writeJSON(w, http.StatusOK, paginate(base, r, p, res))
}

func (c *CC) getDroplet(w http.ResponseWriter, r *http.Request) error {
	var d *dropletRec
	err := c.store.read(r.Context(), func(tx *stx) (err error) {
		d, err = getRec[dropletRec](tx, tDroplets, r.PathValue("guid"))
		return err
	})
	if errors.Is(err, errNotFound) {
		return notFound("Droplet not found")
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, presentDroplet(c.base(r), d))
}

func (c *CC) listDroplets(w http.ResponseWriter, r *http.Request) error {
	return c.listDropletsWhere(w, r, "", "")
}

func (c *CC) listAppDroplets(w http.ResponseWriter, r *http.Request) error {
	return c.listDropletsWhere(w, r, r.PathValue("guid"), "")
}

func (c *CC) listPackageDroplets(w http.ResponseWriter, r *http.Request) error {
	return c.listDropletsWhere(w, r, "", r.PathValue("guid"))
}

func (c *CC) listDropletsWhere(w http.ResponseWriter, r *http.Request, appGUID, pkgGUID string) error {
	q := r.URL.Query()
	p, err := parseList(q, "created_at", "updated_at")
	if err != nil {
		return err
	}
	apps, pkgs, states, guids := queryFilter(q, "app_guids"), queryFilter(q, "package_guids"), queryFilter(q, "states"), queryFilter(q, "guids")
	current := q.Get("current") == "true"
	var out []*dropletRec
	err = c.store.read(r.Context(), func(tx *stx) error {
		var all []*dropletRec
		var err error
		currentGUID := ""
		switch {
		case appGUID != "":
			a, err := getApp(tx, appGUID)
			if err != nil {
				return err
			}
			currentGUID = a.DropletGUID
			all, err = listRecs[dropletRec](tx, tDroplets, "app_guid = ?", appGUID)
			if err != nil {
				return err
			}
		case pkgGUID != "":
			if _, err := getPackage(tx, pkgGUID); err != nil {
				return err
			}
			all, err = listRecs[dropletRec](tx, tDroplets, "package_guid = ?", pkgGUID)
		default:
			all, err = listRecs[dropletRec](tx, tDroplets, "")
		}
		for _, d := range all {
			if apps.match(d.AppGUID) && pkgs.match(d.PackageGUID) && states.match(d.State) && guids.match(d.GUID) &&
				(!current || d.GUID == currentGUID) {
				out = append(out, d)
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	sortItems(out, p.orderBy, func(d *dropletRec) sortKeys { return sortKeys{"", d.CreatedAt, d.UpdatedAt, d.GUID} })
	base := c.base(r)
	res := make([]ccapi.Droplet, len(out))
	for i, d := range out {
		res[i] = presentDroplet(base, d)
	}
	return writeJSON(w, http.StatusOK, paginate(base, r, p, res))
}
