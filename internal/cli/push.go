package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minicf/minicf/internal/cc/ccapi"
	"github.com/spf13/cobra"
)

type pushFlags struct {
	path, command, memory, manifest string
	instances                       int
	routes, buildpacks              []string
	noRoute, randomRoute            bool
	noManifest                      bool
	timeout                         time.Duration
}

func pushCommand(o Options) *cobra.Command {
	var f pushFlags
	cmd := &cobra.Command{
		Use:   "push [APP_NAME] [-p DIR] [-c CMD] [-i N] [-m MEM] [--route HOST.DOMAIN[/PATH]]... [--no-route] [--random-route] [-f MANIFEST]",
		Short: "Push a new app or sync changes to an existing app",
		Long: `Push uploads an app's files, stages them into a droplet and starts the app,
as cf push does: apply_manifest, upload the package, build, set the droplet,
restart, and wait until the instances run. Without --route, --no-route or
--random-route the app gets its default route APP.<shared domain>.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, func(ctx context.Context, s *session) error {
				return s.push(ctx, cmd, args, &f)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.path, "path", "p", "", "Path to the app directory or to a .zip/.jar archive (default: the current directory)")
	fl.StringVarP(&f.command, "start-command", "c", "", "Startup command")
	fl.IntVarP(&f.instances, "instances", "i", 1, "Number of instances")
	fl.StringVarP(&f.memory, "memory", "m", "", "Memory limit (e.g. 256M, 1024M, 1G)")
	fl.StringArrayVar(&f.routes, "route", nil, "Route HOST.DOMAIN[/PATH] to map (repeatable; replaces the manifest's routes)")
	fl.BoolVar(&f.noRoute, "no-route", false, "Do not map a route to this app (and remove its routes)")
	fl.BoolVar(&f.randomRoute, "random-route", false, "Create a random route for this app if it has none")
	fl.StringArrayVarP(&f.buildpacks, "buildpack", "b", nil, "Buildpack to use (repeatable)")
	fl.StringVarP(&f.manifest, "manifest", "f", "", "Path to a manifest (default: manifest.yml in the current directory, if any)")
	fl.BoolVar(&f.noManifest, "no-manifest", false, "Ignore manifest.yml in the current directory")
	fl.DurationVar(&f.timeout, "timeout", DefaultStartTimeout, "How long to wait for the instances to run")
	return cmd
}

// pushPlan is one app to push: its manifest entry and its bits.
type pushPlan struct {
	app  Application
	bits *Bits
}

// push is `cf push`.
func (s *session) push(ctx context.Context, cmd *cobra.Command, args []string, f *pushFlags) error {
	if err := s.needSpace(); err != nil {
		return err
	}
	if f.noRoute && (f.randomRoute || len(f.routes) > 0) {
		other := "--random-route"
		if len(f.routes) > 0 {
			other = "--route"
		}
		return fmt.Errorf("Incorrect Usage: The following arguments cannot be used together: --no-route, %s", other)
	}
	if f.noManifest && f.manifest != "" {
		return errors.New("Incorrect Usage: The following arguments cannot be used together: -f, --no-manifest")
	}
	if f.memory != "" && !memoryRE.MatchString(f.memory) {
		return fmt.Errorf("Incorrect Usage: -m %q: memory must be a number with a unit: B, K, KB, M, MB, G, GB, T or TB", f.memory)
	}
	if cmd.Flags().Changed("instances") && f.instances < 0 {
		return errors.New("Incorrect Usage: -i must not be negative")
	}
	for _, r := range f.routes {
		if strings.TrimSpace(r) == "" {
			return errors.New("Incorrect Usage: --route needs HOST.DOMAIN[/PATH]")
		}
	}

	manifestPath, err := s.findManifest(f)
	if err != nil {
		return err
	}
	var m *Manifest
	if manifestPath != "" {
		data, err := readLimited(manifestPath, MaxManifestBytes)
		if err != nil {
			return err
		}
		if m, err = ParseManifest(data); err != nil {
			return fmt.Errorf("%s: %w", manifestPath, err)
		}
	}
	flagsGiven := false
	for _, name := range []string{"path", "start-command", "instances", "memory", "route", "no-route", "random-route", "buildpack"} {
		flagsGiven = flagsGiven || cmd.Flags().Changed(name)
	}

	var apps []Application
	switch {
	case m == nil && len(args) == 0:
		return errors.New("Incorrect Usage: The push command requires an app name. The app name can be supplied as an argument or with a manifest.yml file.")
	case m == nil:
		apps = []Application{{Name: args[0]}}
	case len(args) == 1:
		for _, a := range m.Applications {
			if a.Name == args[0] {
				apps = []Application{a}
			}
		}
		if apps == nil {
			if len(m.Applications) != 1 {
				return fmt.Errorf("Could not find app named '%s' in manifest %s", args[0], manifestPath)
			}
			// A one-app manifest pushed under another name, as cf does.
			apps = []Application{m.Applications[0]}
			apps[0].Name = args[0]
		}
	default:
		apps = m.Applications
		if len(apps) > 1 && flagsGiven {
			return errors.New("Incorrect Usage: Command line flags (except -f and --timeout) cannot be applied when pushing multiple apps from a manifest file.")
		}
	}
	if len(apps) == 1 {
		s.applyFlags(cmd, &apps[0], f)
	}
	baseDir := s.dir
	if manifestPath != "" {
		baseDir = filepath.Dir(manifestPath)
	}
	var plans []pushPlan
	defer func() {
		for _, p := range plans {
			p.bits.Close()
		}
	}()
	for i := range apps {
		a := &apps[i]
		switch {
		case cmd.Flags().Changed("path"):
			a.Path = s.abs(s.dir, f.path)
		case a.Path != "":
			a.Path = s.abs(baseDir, a.Path)
		default:
			a.Path = s.abs(s.dir, ".")
		}
		if !a.NoRoute && !a.RandomRoute {
			a.DefaultRoute = true
		}
		bits, err := GatherBits(a.Path)
		if err != nil {
			return fmt.Errorf("app %s: %w", a.Name, err)
		}
		plans = append(plans, pushPlan{app: *a, bits: bits})
	}

	names := make([]string, len(apps))
	for i, a := range apps {
		names[i] = a.Name
	}
	if len(names) == 1 {
		s.say("Pushing app %s to %s%s...", names[0], s.orgSpace(), s.asUser())
	} else {
		s.say("Pushing apps %s to %s%s...", strings.Join(names, ", "), s.orgSpace(), s.asUser())
	}
	version := 0
	if m != nil {
		version = m.Version
	}
	yml, err := (&Manifest{Version: version, Applications: apps}).Marshal()
	if err != nil {
		return err
	}
	if manifestPath != "" {
		s.say("Applying manifest file %s...", manifestPath)
	}
	if err := s.applyManifest(ctx, yml); err != nil {
		return err
	}
	if manifestPath != "" {
		s.say("Manifest applied")
	}
	for _, p := range plans {
		if err := s.pushApp(ctx, p, f.timeout); err != nil {
			return err
		}
	}
	return nil
}

// applyFlags lays the command line over the app's manifest entry.
func (s *session) applyFlags(cmd *cobra.Command, a *Application, f *pushFlags) {
	fl := cmd.Flags()
	if fl.Changed("start-command") {
		c := f.command
		a.Command = &c
	}
	if fl.Changed("instances") {
		i := f.instances
		a.Instances = &i
	}
	if fl.Changed("memory") {
		a.Memory = f.memory
	}
	if fl.Changed("buildpack") {
		a.Buildpacks = append([]string{}, f.buildpacks...)
	}
	if fl.Changed("route") {
		a.Routes = nil
		for _, r := range f.routes {
			a.Routes = append(a.Routes, ManifestRoute{Route: strings.TrimSpace(r)})
		}
		a.NoRoute = false
	}
	if f.noRoute {
		a.NoRoute, a.RandomRoute, a.Routes = true, false, nil
	}
	if f.randomRoute {
		a.RandomRoute, a.NoRoute = true, false
	}
}

func (s *session) abs(base, p string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	return filepath.Clean(p)
}

// findManifest is -f (a file, or a directory holding manifest.yml), else
// manifest.yml/manifest.yaml in the working directory; "" if none.
func (s *session) findManifest(f *pushFlags) (string, error) {
	if f.noManifest {
		return "", nil
	}
	if f.manifest != "" {
		p := s.abs(s.dir, f.manifest)
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("Incorrect Usage: The specified path '%s' does not exist.", f.manifest)
		}
		if !fi.IsDir() {
			return p, nil
		}
		for _, n := range []string{"manifest.yml", "manifest.yaml"} {
			if _, err := os.Stat(filepath.Join(p, n)); err == nil {
				return filepath.Join(p, n), nil
			}
		}
		return "", fmt.Errorf("Incorrect Usage: %s holds no manifest.yml", f.manifest)
	}
	for _, n := range []string{"manifest.yml", "manifest.yaml"} {
		p := filepath.Join(s.dir, n)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

// applyManifest POSTs the YAML to apply_manifest and waits for its job.
func (s *session) applyManifest(ctx context.Context, yml []byte) error {
	h, _, err := s.api.do(ctx, request{
		method: "POST",
		target: "/v3/spaces/" + s.cfg.SpaceGUID + "/actions/apply_manifest",
		body:   bytes.NewReader(yml),
		ctype:  "application/x-yaml",
		length: int64(len(yml)),
	})
	if err != nil {
		return err
	}
	return s.api.pollJob(ctx, h.Get("Location"))
}

// pushApp uploads, stages and starts one app whose manifest was applied.
func (s *session) pushApp(ctx context.Context, p pushPlan, timeout time.Duration) error {
	app, err := s.findApp(ctx, p.app.Name)
	if err != nil {
		return err
	}
	s.say("")
	s.say("Uploading %s...", app.Name)
	var matched struct {
		Resources []Resource `json:"resources"`
	}
	if _, err := s.api.call(ctx, "POST", "/v3/resource_matches", map[string]any{"resources": p.bits.Matchable()}, &matched); err != nil {
		return err
	}
	var pkg ccapi.Package
	if _, err := s.api.call(ctx, "POST", "/v3/packages", map[string]any{
		"type":          "bits",
		"relationships": map[string]ccapi.Relationship{"app": ccapi.ToOne(app.GUID)},
	}, &pkg); err != nil {
		return s.appErr(err, app.Name)
	}
	files, size, err := s.upload(ctx, &pkg, p.bits, matched.Resources)
	if err != nil {
		return err
	}
	s.say("Uploaded %d files (%s).", files, formatBytes(size))
	if pkg.State != ccapi.PackageReady {
		s.say("Waiting for API to complete processing files...")
		if err := s.waitPackage(ctx, &pkg); err != nil {
			return err
		}
	}
	s.say("")
	droplet, err := s.stage(ctx, app, pkg.GUID)
	if err != nil {
		return err
	}
	if err := s.setDroplet(ctx, app, droplet); err != nil {
		return err
	}
	if err := s.appAction(ctx, app, "restart", app); err != nil {
		return err
	}
	s.say("")
	s.say("Starting app...")
	routes, err := s.waitAndShow(ctx, app, timeout)
	if err != nil {
		return err
	}
	s.curlHints(s.out, routes)
	return nil
}

// upload sends the bits as POST /v3/packages/:guid/upload: multipart with
// the field "resources" (the matched files, JSON) and the file part "bits"
// (package.zip), with a Content-Length. The zip is built in a temporary
// file first, so its size is known and bounded. It returns how many files,
// and how many bytes of them, it sent.
func (s *session) upload(ctx context.Context, pkg *ccapi.Package, bits *Bits, matched []Resource) (files int, sent int64, err error) {
	var size int64
	tmp, err := os.CreateTemp("", "minicf-package-*.zip")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	files, unzipped, err := bits.WriteZip(tmp, matched)
	if err != nil {
		return 0, 0, err
	}
	size, err = tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, 0, err
	}
	if size > MaxPackageBytes {
		return 0, 0, fmt.Errorf("the app's package is larger than %d bytes", MaxPackageBytes)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, 0, err
	}
	if matched == nil {
		matched = []Resource{}
	}
	resJSON, err := json.Marshal(matched)
	if err != nil {
		return 0, 0, err
	}
	var head, tail bytes.Buffer
	sw := &switchWriter{w: &head}
	mw := multipart.NewWriter(sw)
	if err := mw.WriteField("resources", string(resJSON)); err != nil {
		return 0, 0, err
	}
	var body io.Reader
	length := int64(0)
	if hasEntries(bits, matched) {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="bits"; filename="package.zip"`)
		h.Set("Content-Type", "application/zip")
		if _, err := mw.CreatePart(h); err != nil {
			return 0, 0, err
		}
		sw.w = &tail
		if err := mw.Close(); err != nil {
			return 0, 0, err
		}
		// The part's body (the zip) goes between head and the closing boundary.
		tailBytes := tail.Bytes() // "\r\n--boundary--\r\n"
		body = io.MultiReader(bytes.NewReader(head.Bytes()), io.LimitReader(tmp, size), bytes.NewReader(tailBytes))
		length = int64(head.Len()) + size + int64(len(tailBytes))
	} else {
		if err := mw.Close(); err != nil {
			return 0, 0, err
		}
		body = bytes.NewReader(head.Bytes())
		length = int64(head.Len())
	}
	_, respBody, err := s.api.do(ctx, request{
		method:  "POST",
		target:  "/v3/packages/" + pkg.GUID + "/upload",
		body:    body,
		ctype:   mw.FormDataContentType(),
		length:  length,
		timeout: uploadTimeout,
	})
	if err != nil {
		return 0, 0, err
	}
	if err := decode("POST", "/v3/packages/"+pkg.GUID+"/upload", respBody, pkg); err != nil {
		return 0, 0, err
	}
	return files, unzipped, nil
}

// hasEntries reports whether anything is left to zip once the matched
// files are left out.
func hasEntries(b *Bits, matched []Resource) bool {
	skip := map[string]string{}
	for _, m := range matched {
		skip[m.Path] = m.Checksum.Value
	}
	for _, r := range b.Resources {
		if sum, ok := skip[r.Path]; ok && r.mode.IsRegular() && sum == r.Checksum.Value {
			continue
		}
		if r.mode.IsRegular() || r.mode.IsDir() || r.mode&fs.ModeSymlink != 0 {
			return true
		}
	}
	return false
}

// switchWriter lets the multipart writer's output be split in two.
type switchWriter struct{ w io.Writer }

func (s *switchWriter) Write(p []byte) (int, error) { return s.w.Write(p) }

// packageWait bounds waiting for an uploaded package to be processed.
const packageWait = 10 * time.Minute

// waitPackage polls GET /v3/packages/:guid until READY (FAILED or EXPIRED
// fail), as the cf CLI does when the upload did not answer READY.
func (s *session) waitPackage(ctx context.Context, pkg *ccapi.Package) error {
	ctx, cancel := context.WithTimeout(ctx, packageWait)
	defer cancel()
	for {
		switch pkg.State {
		case ccapi.PackageReady:
			return nil
		case ccapi.PackageFailed, ccapi.PackageExpired:
			return fmt.Errorf("Package %s is %s: the upload was not accepted", pkg.GUID, pkg.State)
		}
		if err := sleep(ctx, s.poll); err != nil {
			return fmt.Errorf("package %s was not processed: %w", pkg.GUID, err)
		}
		if err := s.api.get(ctx, "/v3/packages/"+pkg.GUID, pkg); err != nil {
			return err
		}
	}
}
