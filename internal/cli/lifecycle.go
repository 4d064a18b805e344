package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/minicf/minicf/internal/cc/ccapi"
	"github.com/spf13/cobra"
)

// DefaultStartTimeout is how long a verb waits for instances to run (the
// cf CLI's CF_STARTUP_TIMEOUT default).
const DefaultStartTimeout = 5 * time.Minute

// stagingTimeout bounds staging (the cf CLI's CF_STAGING_TIMEOUT default).
const stagingTimeout = 15 * time.Minute

func scaleCommand(o Options) *cobra.Command {
	var instances int
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "scale APP_NAME -i INSTANCES",
		Short: "Change the number of instances of an app's web process",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, func(ctx context.Context, s *session) error {
				if err := s.needSpace(); err != nil {
					return err
				}
				if !cmd.Flags().Changed("instances") {
					return errors.New("Incorrect Usage: scale needs -i INSTANCES")
				}
				if instances < 0 {
					return errors.New("Incorrect Usage: -i must not be negative")
				}
				s.say("Scaling app %s in %s%s...", args[0], s.orgSpace(), s.asUser())
				app, err := s.findApp(ctx, args[0])
				if err != nil {
					return err
				}
				if _, err := s.api.call(ctx, "POST", "/v3/apps/"+app.GUID+"/processes/web/actions/scale", map[string]int{"instances": instances}, nil); err != nil {
					return s.appErr(err, app.Name)
				}
				if app.State != ccapi.AppStarted {
					s.ok()
					return nil
				}
				s.say("")
				_, err = s.waitAndShow(ctx, app, timeout)
				return err
			})
		},
	}
	cmd.Flags().IntVarP(&instances, "instances", "i", 0, "Number of instances")
	cmd.Flags().DurationVar(&timeout, "timeout", DefaultStartTimeout, "How long to wait for the instances to run")
	return cmd
}

func stopCommand(o Options) *cobra.Command {
	return &cobra.Command{
		Use:   "stop APP_NAME",
		Short: "Stop an app",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, func(ctx context.Context, s *session) error {
				if err := s.needSpace(); err != nil {
					return err
				}
				s.say("Stopping app %s in %s%s...", args[0], s.orgSpace(), s.asUser())
				app, err := s.findApp(ctx, args[0])
				if err != nil {
					return err
				}
				if app.State == ccapi.AppStopped {
					s.say("App '%s' is already stopped.", app.Name)
					s.ok()
					return nil
				}
				if err := s.appAction(ctx, app, "stop", nil); err != nil {
					return err
				}
				s.ok()
				return nil
			})
		},
	}
}

func startCommand(o Options) *cobra.Command {
	return startOrRestartCommand(o, "start APP_NAME", "Start an app (staging its newest package first if it has no droplet)", false)
}

func restartCommand(o Options) *cobra.Command {
	return startOrRestartCommand(o, "restart APP_NAME", "Stop all instances of an app, then start them again", true)
}

func startOrRestartCommand(o Options, use, short string, restart bool) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, func(ctx context.Context, s *session) error {
				return s.startApp(ctx, args[0], restart, timeout)
			})
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", DefaultStartTimeout, "How long to wait for the instances to run")
	return cmd
}

// startApp is `cf start` (restart=false) and `cf restart`: stage the
// newest package if it has no staged droplet, stop (restart only), start,
// wait for the instances and show the summary.
func (s *session) startApp(ctx context.Context, name string, restart bool, timeout time.Duration) error {
	if err := s.needSpace(); err != nil {
		return err
	}
	verb := "Starting"
	if restart {
		verb = "Restarting"
	}
	s.say("%s app %s in %s%s...", verb, name, s.orgSpace(), s.asUser())
	app, err := s.findApp(ctx, name)
	if err != nil {
		return err
	}
	if !restart && app.State == ccapi.AppStarted {
		s.say("")
		s.say("App '%s' is already started.", app.Name)
		s.ok()
		return nil
	}
	pkg, err := getFirst[ccapi.Package](ctx, s.api, query("/v3/packages", "app_guids", app.GUID, "order_by", "-created_at", "page", "1", "per_page", "1"))
	if err != nil {
		return err
	}
	if pkg != nil && pkg.State == ccapi.PackageReady {
		d, err := getFirst[ccapi.Droplet](ctx, s.api, query("/v3/packages/"+pkg.GUID+"/droplets", "states", "STAGED", "page", "1", "per_page", "1"))
		if err != nil {
			return err
		}
		if d == nil {
			s.say("")
			droplet, err := s.stage(ctx, app, pkg.GUID)
			if err != nil {
				return err
			}
			if err := s.setDroplet(ctx, app, droplet); err != nil {
				return err
			}
		}
	}
	if restart && app.State == ccapi.AppStarted {
		s.say("")
		s.say("Stopping app...")
		if err := s.appAction(ctx, app, "stop", nil); err != nil {
			return err
		}
	}
	if err := s.appAction(ctx, app, "start", app); err != nil {
		return err
	}
	s.say("")
	s.say("Waiting for app %s to start...", app.Name)
	s.say("")
	_, err = s.waitAndShow(ctx, app, timeout)
	return err
}

// appAction POSTs one of the app's actions (start, stop, restart),
// decoding the answer into into when it is not nil.
func (s *session) appAction(ctx context.Context, app *ccapi.App, action string, into any) error {
	if _, err := s.api.call(ctx, "POST", "/v3/apps/"+app.GUID+"/actions/"+action, nil, into); err != nil {
		return s.appErr(err, app.Name)
	}
	return nil
}

// waitAndShow waits for the app's instances to run, then prints its
// summary and returns its routes.
func (s *session) waitAndShow(ctx context.Context, app *ccapi.App, timeout time.Duration) ([]ccapi.Route, error) {
	if err := s.waitForInstances(ctx, app, timeout); err != nil {
		return nil, err
	}
	s.say("")
	return s.summary(ctx, app)
}

// stage builds a package into a droplet: POST /v3/builds, then GET the
// build every poll interval until STAGED or FAILED, printing the staging
// log lines meanwhile. It returns the droplet's guid.
func (s *session) stage(ctx context.Context, app *ccapi.App, pkgGUID string) (string, error) {
	s.say("Staging app and tracing logs...")
	stop := make(chan struct{})
	logsDone := make(chan struct{})
	logCtx, cancelLogs := context.WithCancel(ctx)
	defer func() {
		cancelLogs()
		<-logsDone
	}()
	start := time.Now()
	go func() {
		defer close(logsDone)
		s.api.stagingLogs(logCtx, app.GUID, start, s.poll, s.out, s.warn, stop)
	}()
	stopLogs := func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-logsDone
		}
	}
	var build ccapi.Build
	if _, err := s.api.call(ctx, "POST", "/v3/builds", map[string]any{"package": map[string]string{"guid": pkgGUID}}, &build); err != nil {
		stopLogs()
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, stagingTimeout)
	defer cancel()
	for build.State != ccapi.BuildStaged && build.State != ccapi.BuildFailed {
		if err := sleep(ctx, s.poll); err != nil {
			stopLogs()
			return "", fmt.Errorf("staging did not finish: %w", err)
		}
		if err := s.api.get(ctx, "/v3/builds/"+build.GUID, &build); err != nil {
			stopLogs()
			return "", err
		}
	}
	stopLogs()
	if build.State == ccapi.BuildFailed {
		msg := "Staging failed"
		if build.Error != nil && *build.Error != "" {
			msg = *build.Error
		}
		return "", fmt.Errorf("%s\n\nTIP: use 'minicf logs %s --recent' for more information", msg, app.Name)
	}
	if build.Droplet == nil || build.Droplet.GUID == "" {
		return "", fmt.Errorf("build %s is STAGED but names no droplet", build.GUID)
	}
	var droplet ccapi.Droplet
	if err := s.api.get(ctx, "/v3/droplets/"+build.Droplet.GUID, &droplet); err != nil {
		return "", err
	}
	return build.Droplet.GUID, nil
}

// setDroplet makes droplet the app's current droplet.
func (s *session) setDroplet(ctx context.Context, app *ccapi.App, droplet string) error {
	_, err := s.api.call(ctx, "PATCH", "/v3/apps/"+app.GUID+"/relationships/current_droplet",
		map[string]any{"data": map[string]string{"guid": droplet}}, nil)
	return s.appErr(err, app.Name)
}

func deleteCommand(o Options) *cobra.Command {
	var force, routes bool
	cmd := &cobra.Command{
		Use:   "delete APP_NAME [-f] [-r]",
		Short: "Delete an app (and, with -r, its routes)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, func(ctx context.Context, s *session) error {
				if err := s.needSpace(); err != nil {
					return err
				}
				name := args[0]
				if !force && !s.confirm(fmt.Sprintf("Really delete the app %s?", name)) {
					s.say("App '%s' has not been deleted.", name)
					return nil
				}
				s.say("Deleting app %s in %s%s...", name, s.orgSpace(), s.asUser())
				app, err := s.findApp(ctx, name)
				var nf *AppNotFoundError
				if errors.As(err, &nf) {
					s.warn(fmt.Sprintf("App '%s' does not exist.", name))
					s.ok()
					return nil
				}
				if err != nil {
					return err
				}
				var appRoutes []ccapi.Route
				if routes {
					if appRoutes, err = getAll[ccapi.Route](ctx, s.api, "/v3/apps/"+app.GUID+"/routes"); err != nil {
						return err
					}
				}
				if err := s.api.async(ctx, "DELETE", "/v3/apps/"+app.GUID, nil); err != nil {
					return s.appErr(err, name)
				}
				for _, r := range appRoutes {
					if err := s.api.async(ctx, "DELETE", "/v3/routes/"+r.GUID, nil); err != nil {
						var ae *APIError
						if errors.As(err, &ae) && ae.StatusCode == 404 {
							continue
						}
						return err
					}
				}
				s.ok()
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force deletion without confirmation")
	cmd.Flags().BoolVarP(&routes, "delete-mapped-routes", "r", false, "Also delete any mapped routes")
	return cmd
}

func logsCommand(o Options) *cobra.Command {
	var recent bool
	cmd := &cobra.Command{
		Use:   "logs APP_NAME [--recent]",
		Short: "Show an app's recent log lines (app output, staging, router) or tail them",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, func(ctx context.Context, s *session) error {
				if err := s.needSpace(); err != nil {
					return err
				}
				s.say("Retrieving logs for app %s in %s%s...", args[0], s.orgSpace(), s.asUser())
				s.say("")
				app, err := s.findApp(ctx, args[0])
				if err != nil {
					return err
				}
				if recent {
					lines, err := s.api.RecentLogs(ctx, app.GUID)
					if err != nil {
						return fmt.Errorf("Failed to retrieve logs from Log Cache: %w", err)
					}
					for _, l := range lines {
						formatLog(s.out, l, s.loc, true)
					}
					return nil
				}
				return s.tailLogs(ctx, app.GUID)
			})
		},
	}
	cmd.Flags().BoolVar(&recent, "recent", false, "Dump recent logs instead of tailing")
	return cmd
}

// tailLogs prints an app's new log lines until interrupted.
func (s *session) tailLogs(ctx context.Context, appGUID string) error {
	next := time.Now().UnixNano()
	for {
		lines, err := s.api.readLogs(ctx, appGUID, "start_time", strconv.FormatInt(next, 10), "envelope_types", "LOG")
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("Failed to retrieve logs from Log Cache: %w", err)
		}
		for _, l := range lines {
			if ns := l.Time.UnixNano(); ns >= next {
				next = ns + 1
				formatLog(s.out, l, s.loc, true)
			}
		}
		if sleep(ctx, s.poll) != nil {
			return nil
		}
	}
}

func targetCommand(o Options) *cobra.Command {
	return &cobra.Command{
		Use:   "target",
		Short: "Show the targeted API endpoint, org and space",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, func(ctx context.Context, s *session) error {
				kv := [][2]string{{"API endpoint", s.cfg.API}}
				if s.user != "" {
					kv = append(kv, [2]string{"user", s.user})
				}
				kv = append(kv, [2]string{"org", s.cfg.OrganizationName}, [2]string{"space", s.cfg.SpaceName})
				if s.cfg.Router != "" {
					kv = append(kv, [2]string{"router", s.cfg.Router})
				}
				writeKeyValues(s.out, kv)
				return nil
			})
		},
	}
}
