package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// Options configure the verbs. The zero value is what the minicf binary
// needs, except Exit.
type Options struct {
	// Home is the state directory holding config.json ("" = $MINICF_HOME,
	// else ~/.minicf).
	Home string
	// HTTPClient talks to the Cloud Controller (nil = one with timeouts).
	HTTPClient *http.Client
	// Exit, if set, is called with 1 after a verb printed FAILED, so the
	// error is not printed a second time by the caller. Nil: the verb
	// returns ErrFailed.
	Exit func(code int)
	// Stdin answers confirmation prompts (nil = os.Stdin).
	Stdin io.Reader
	// Dir is the working directory for relative paths and manifest.yml
	// ("" = the process's).
	Dir string
	// Now and Location render times (nil = time.Now and time.Local).
	Now      func() time.Time
	Location *time.Location
	// PollInterval is how often jobs, builds and instance stats are polled
	// (0 = 250ms).
	PollInterval time.Duration
}

// ErrFailed is returned by a verb that failed after printing FAILED and
// the reason, when Options.Exit is nil.
var ErrFailed = errors.New("FAILED")

// Commands returns the cf-like verbs, ready to add to a root command.
func Commands(opts Options) []*cobra.Command {
	return []*cobra.Command{
		pushCommand(opts),
		appsCommand(opts),
		appCommand(opts),
		routesCommand(opts),
		createRouteCommand(opts),
		mapRouteCommand(opts),
		unmapRouteCommand(opts),
		deleteRouteCommand(opts),
		scaleCommand(opts),
		startCommand(opts),
		stopCommand(opts),
		restartCommand(opts),
		deleteCommand(opts),
		logsCommand(opts),
		targetCommand(opts),
	}
}

// session is one verb's run: its config, API client and output.
type session struct {
	opts Options
	home string
	cfg  *Config
	api  *Client
	out  io.Writer
	errw io.Writer
	in   *bufio.Reader
	dir  string
	now  func() time.Time
	loc  *time.Location
	user string
	poll time.Duration
}

// run wraps a verb: it loads the config, builds the client, runs f under a
// context cancelled by SIGINT/SIGTERM and renders a failure as the cf CLI
// does (the reason on stderr, FAILED on stdout).
func (o Options) run(cmd *cobra.Command, f func(ctx context.Context, s *session) error) error {
	s := o.newSession(cmd)
	err := s.load()
	if err == nil {
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		err = f(ctx, s)
		stop()
	}
	if err == nil {
		return nil
	}
	fmt.Fprintln(s.errw, err.Error())
	fmt.Fprintln(s.out, "FAILED")
	if o.Exit != nil {
		o.Exit(1)
	}
	return ErrFailed
}

func (o Options) newSession(cmd *cobra.Command) *session {
	mu := &sync.Mutex{}
	s := &session{
		opts: o,
		home: o.Home,
		out:  lockedWriter{mu: mu, w: cmd.OutOrStdout()},
		errw: lockedWriter{mu: mu, w: cmd.ErrOrStderr()},
		dir:  o.Dir,
		now:  o.Now,
		loc:  o.Location,
		poll: o.PollInterval,
	}
	in := o.Stdin
	if in == nil {
		in = cmd.InOrStdin()
	}
	s.in = bufio.NewReader(in)
	if s.home == "" {
		s.home = DefaultHome()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.loc == nil {
		s.loc = time.Local
	}
	if s.poll <= 0 {
		s.poll = 250 * time.Millisecond
	}
	if s.dir == "" {
		if wd, err := os.Getwd(); err == nil {
			s.dir = wd
		}
	}
	return s
}

func (s *session) load() error {
	cfg, err := LoadConfig(s.home)
	if err != nil {
		return err
	}
	api, err := NewClient(cfg, s.opts.HTTPClient, s.home)
	if err != nil {
		return err
	}
	api.PollInterval = s.poll
	api.Warn = s.warn
	s.cfg, s.api = cfg, api
	s.user = tokenUser(cfg.AccessToken)
	return nil
}

// warn prints a warning on stderr.
func (s *session) warn(msg string) { fmt.Fprintln(s.errw, msg) }

func (s *session) say(format string, args ...any) { fmt.Fprintf(s.out, format+"\n", args...) }

func (s *session) ok() { fmt.Fprintln(s.out, "OK") }

// needSpace checks that a space is targeted.
func (s *session) needSpace() error {
	if s.cfg.SpaceGUID == "" || s.cfg.OrganizationGUID == "" {
		return fmt.Errorf("No org and space targeted: %s/%s has no organization_guid and space_guid; run `minicf up` again", s.home, ConfigFile)
	}
	return nil
}

// asUser is " as admin" (or "" when the token names nobody).
func (s *session) asUser() string {
	if s.user == "" {
		return ""
	}
	return " as " + s.user
}

// orgSpace is "org myorg / space dev".
func (s *session) orgSpace() string {
	org, space := s.cfg.OrganizationName, s.cfg.SpaceName
	if org == "" {
		org = s.cfg.OrganizationGUID
	}
	if space == "" {
		space = s.cfg.SpaceGUID
	}
	return fmt.Sprintf("org %s / space %s", org, space)
}

// confirm asks a yes/no question; anything but y or yes (or no answer) is no.
func (s *session) confirm(question string) bool {
	fmt.Fprintf(s.out, "%s> ", question)
	line, _ := s.in.ReadString('\n')
	fmt.Fprintln(s.out)
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}
