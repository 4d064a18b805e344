package foundation

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/mbus"
	"github.com/minicf/minicf/internal/supervisor"
	"github.com/minicf/minicf/internal/trace"
	"github.com/minicf/minicf/internal/trace/page"
)

// TraceOff as Config.TraceListen runs no trace recorder and no trace API.
const TraceOff = "off"

// The propagation timeline (internal/trace): every component gets an
// Emitter of its own from one NATS emitter; a Recorder subscribed to
// minicf.trace.> keeps the events, and the trace API serves them.
//
// The emitters exist before the bus they publish on (the cells are built
// before anything starts), so they publish through traceBus, which
// connects at the end of the NATS step.

// traceBus is the emitters' way onto NATS once it is connected.
type traceBus struct{ c atomic.Pointer[mbus.Client] }

func (b *traceBus) Publish(subject string, data []byte) error {
	c := b.c.Load()
	if c == nil {
		return errors.New("the trace bus is not connected")
	}
	return c.Publish(subject, data)
}

func (b *traceBus) Connected() bool {
	c := b.c.Load()
	return c != nil && c.Connected()
}

type tracing struct {
	bus      traceBus
	emitters *trace.NATS
	recorder *trace.Recorder
	sub      mbus.Subscription
	server   *trace.Server
}

func (f *Foundation) tracingOn() bool { return f.cfg.TraceListen != TraceOff }

// tracer is component's Emitter, nil when tracing is off.
func (f *Foundation) tracer(component string) trace.Emitter {
	if f.trace == nil {
		return nil
	}
	return f.trace.emitters.For(component)
}

// connectTrace, at the end of the NATS step, connects the emitters' bus
// and subscribes the Recorder.
func (f *Foundation) connectTrace() error {
	t := f.trace
	if t == nil {
		return nil
	}
	bus, err := f.bus("trace")
	if err != nil {
		return err
	}
	if t.sub, err = bus.Subscribe(trace.SubjectAll, func(m mbus.Msg) { t.recorder.HandleMessage(m.Data) }); err != nil {
		return err
	}
	t.bus.c.Store(bus)
	return nil
}

// disconnectTrace, first thing when NATS stops, ends the emitters (the
// components are all stopped by then) and the subscription.
func (f *Foundation) disconnectTrace() {
	t := f.trace
	if t == nil {
		return
	}
	t.bus.c.Store(nil)
	t.emitters.Close()
	if t.sub != nil {
		t.sub.Unsubscribe()
		t.sub = nil
	}
}

// traceAPI is the step after the router: the HTTP API, whose /api/state
// reads the router and the BBS.
func (f *Foundation) traceAPI() supervisor.Component {
	return supervisor.Func("trace API", func(context.Context) error {
		t := f.trace
		t.server = trace.NewServer(trace.ServerConfig{Listen: f.cfg.TraceListen, Recorder: t.recorder, State: f.traceState,
			Dropped: t.emitters.Dropped, Page: page.Handler(), Logger: f.log.With("component", "trace")})
		if err := t.server.Start(); err != nil {
			return err
		}
		f.info.Trace = t.server.URL()
		return nil
	}, func(ctx context.Context) error {
		if f.trace.server == nil {
			return nil
		}
		return f.trace.server.Stop(ctx)
	})
}

// traceState is what a flow page draws: the router's /routes, the BBS's
// cells, DesiredLRP routes and ActualLRPs.
func (f *Foundation) traceState(ctx context.Context) (map[string]any, error) {
	out := map[string]any{}
	if f.router != nil {
		out["routes"] = f.router.RoutesSnapshot()
	}
	if f.bbsSvc == nil {
		return out, nil
	}
	out["cells"] = f.bbsSvc.Cells()
	var errs []error
	if lrps, err := f.bbsSvc.ActualLRPs(ctx, bbs.ActualLRPsRequest{}); err != nil {
		errs = append(errs, err)
	} else {
		out["actual_lrps"] = lrps
	}
	if desired, err := f.bbsSvc.RoutingInfos(ctx, bbs.DesiredLRPsRequest{}); err != nil {
		errs = append(errs, err)
	} else {
		out["desired_lrps"] = desired
	}
	return out, errors.Join(errs...)
}
