// Package supervisor runs several components in one process, as ifrit's
// ordered grouper runs gorouter's and Diego's members: each is started only
// after the one before it is ready, and they stop in reverse order. A
// component that fails to start stops the ones already running.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Component is one member: Start returns once it is ready (or failed), Stop
// returns once nothing of it runs any more.
type Component interface {
	Name() string
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// Func adapts two functions into a Component.
func Func(name string, start func(context.Context) error, stop func(context.Context) error) Component {
	return funcComponent{name: name, start: start, stop: stop}
}

type funcComponent struct {
	name  string
	start func(context.Context) error
	stop  func(context.Context) error
}

func (f funcComponent) Name() string { return f.name }
func (f funcComponent) Start(ctx context.Context) error {
	if f.start == nil {
		return nil
	}
	return f.start(ctx)
}
func (f funcComponent) Stop(ctx context.Context) error {
	if f.stop == nil {
		return nil
	}
	return f.stop(ctx)
}

// Group runs components in order.
type Group struct {
	log     *slog.Logger
	members []Component
	started []Component
}

// New makes a group of members, started in the order given.
func New(logger *slog.Logger, members ...Component) *Group {
	if logger == nil {
		logger = slog.Default()
	}
	return &Group{log: logger, members: members}
}

// Add appends members.
func (g *Group) Add(members ...Component) { g.members = append(g.members, members...) }

// Start starts every member in order. If one fails, those already started
// are stopped in reverse and the error names the member.
func (g *Group) Start(ctx context.Context, progress func(name string, took time.Duration)) error {
	for _, m := range g.members {
		t0 := time.Now()
		if err := m.Start(ctx); err != nil {
			g.log.Error("component-start-failed", "component", m.Name(), "error", err.Error())
			stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			g.Stop(stopCtx)
			cancel()
			return fmt.Errorf("%s did not start: %w", m.Name(), err)
		}
		g.started = append(g.started, m)
		took := time.Since(t0)
		g.log.Info("component-started", "component", m.Name(), "took_ms", took.Milliseconds())
		if progress != nil {
			progress(m.Name(), took)
		}
	}
	return nil
}

// Stop stops the started members in reverse order and joins their errors.
func (g *Group) Stop(ctx context.Context) error {
	var errs []error
	for i := len(g.started) - 1; i >= 0; i-- {
		m := g.started[i]
		if err := m.Stop(ctx); err != nil {
			g.log.Warn("component-stop-failed", "component", m.Name(), "error", err.Error())
			errs = append(errs, fmt.Errorf("%s: %w", m.Name(), err))
		} else {
			g.log.Info("component-stopped", "component", m.Name())
		}
	}
	g.started = nil
	return errors.Join(errs...)
}
