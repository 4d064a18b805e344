// Package demo is `minicf demo`: the whole foundation up, the example app
// pushed with two instances and a route, and requests curled through the
// router so you can see both instances answer. It is the shortest way to
// watch route propagation happen for real.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/minicf/minicf/internal/cli"
	"github.com/minicf/minicf/internal/foundation"
)

// Options configure a demo run.
type Options struct {
	Foundation foundation.Config
	AppDir     string // the example app; "" = examples/hello found near the working directory or the binary
	AppName    string
	Instances  int
	Curls      int
	Out        io.Writer
	// Exit stops the foundation after the curls; otherwise Run waits for ctx.
	Exit bool
}

// FindExampleApp looks for examples/hello in the working directory and its
// parents, then beside the executable.
func FindExampleApp() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, s := range starts {
		for dir := s; ; dir = filepath.Dir(dir) {
			p := filepath.Join(dir, "examples", "hello")
			if _, err := os.Stat(filepath.Join(p, "main.go")); err == nil {
				return p, nil
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	return "", errors.New("the example app (examples/hello) is not here: run `minicf demo` from the minicf checkout, or give --app DIR")
}

// Run brings the foundation up, pushes the example app, curls it, and then
// keeps everything running until ctx ends (or stops at once with Exit).
func Run(ctx context.Context, o Options) error {
	step := func(format string, args ...any) { fmt.Fprintf(o.Out, "==> "+format+"\n", args...) }
	if o.AppDir == "" {
		dir, err := FindExampleApp()
		if err != nil {
			return err
		}
		o.AppDir = dir
	}
	if o.AppName == "" {
		o.AppName = "hello"
	}
	if o.Instances <= 0 {
		o.Instances = 2
	}
	if o.Curls <= 0 {
		o.Curls = 4
	}
	step("starting the foundation in %s", o.Foundation.Home)
	f, err := foundation.New(o.Foundation)
	if err != nil {
		return err
	}
	if err := f.Start(ctx, func(s string) { step("%s", s) }); err != nil {
		return err
	}
	defer func() {
		step("stopping the foundation")
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		f.Stop(sctx)
	}()
	info := f.Info()
	PrintInfo(o.Out, info)

	step("minicf push %s -p %s -i %d", o.AppName, o.AppDir, o.Instances)
	failed := false
	cmds := cli.Commands(cli.Options{Home: o.Foundation.Home, Exit: func(int) { failed = true }})
	var push *cobra.Command
	for _, c := range cmds {
		if c.Name() == "push" {
			push = c
		}
	}
	push.SetArgs([]string{o.AppName, "-p", o.AppDir, "-i", fmt.Sprint(o.Instances)})
	push.SetOut(o.Out)
	push.SetErr(o.Out)
	push.SetContext(ctx)
	if err := push.Execute(); err != nil || failed {
		return fmt.Errorf("pushing the example app failed: %v", err)
	}

	route := o.AppName + "." + info.Domain
	client := &http.Client{Timeout: 5 * time.Second}
	seen := map[string]bool{}
	for i := 0; i < o.Curls; i++ {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+info.Router+"/", nil)
		req.Host = route
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("curl through the router: %w", err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		var a struct {
			InstanceIndex string `json:"instance_index"`
			InstanceGUID  string `json:"instance_guid"`
			CellIP        string `json:"cell_ip"`
			InstanceIP    string `json:"instance_ip"`
		}
		json.Unmarshal(body, &a)
		seen[a.InstanceGUID] = true
		step("curl -H 'Host: %s' http://%s/  ->  %d from instance %s (%s) on cell %s, container %s",
			route, info.Router, resp.StatusCode, a.InstanceIndex, a.InstanceGUID, a.CellIP, a.InstanceIP)
	}
	step("%d requests reached %d different instances", o.Curls, len(seen))
	step("try it yourself:  curl http://%s:%s/", route, portOf(info.Router))
	if o.Exit {
		return nil
	}
	step("the foundation keeps running; Ctrl-C stops it")
	<-ctx.Done()
	return nil
}

// PrintInfo shows how to reach a running foundation.
func PrintInfo(w io.Writer, info foundation.Info) {
	fmt.Fprintf(w, `
  API:        %s   (minicf apps, minicf push ..., token in %s/config.json)
  router:     http://%s   (status and /routes: http://%s/routes)
  domain:     %s   (*.localhost resolves to loopback: curl http://APP.%s:%s/)
  NATS:       %s   user %s password %s   (nats sub 'router.*')
  mode:       %s, cells %v

`, info.API, info.Home, info.Router, info.RouterStatus, info.Domain, info.Domain, portOf(info.Router),
		info.NATSURL, info.NATSUser, info.NATSPassword, info.Mode, info.Cells)
	fmt.Fprintf(w, "  cf CLI:     cf api %s && cf auth %s %s   (kept in %s/%s)\n\n", info.API, info.AdminUser, info.AdminPassword, info.Home, foundation.AdminPasswordFile)
	if info.Trace != "" {
		fmt.Fprintf(w, "  flow page:  %s/   (open it in a browser and push an app: each step of the route's journey lights up)\n", info.Trace)
		fmt.Fprintf(w, "  trace:      %s   (minicf trace ROUTE; API: /api/events?route=ROUTE, /api/stream, /api/state)\n\n", info.Trace)
	}
}

func portOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i+1:]
		}
	}
	return addr
}
