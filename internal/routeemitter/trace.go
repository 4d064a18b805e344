package routeemitter

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/minicf/minicf/internal/mbus"
	"github.com/minicf/minicf/internal/trace"
)

// traceRegistered records flow 1's route-registered step: a registration
// that a change of the routing table caused (a BBS event or a sync), with
// the message exactly as published. Heartbeats and re-emits after a
// router.start repeat what is already registered and are not steps.
func (e *Emitter) traceRegistered(m *mbus.RegistryMessage, data []byte, reason string, at time.Time) {
	if reason != reasonEvent && reason != reasonSync || !trace.Enabled(e.cfg.Trace) {
		return
	}
	tls := "plain HTTP"
	if m.TLS() {
		tls = "TLS, SAN " + m.ServerCertDomainSAN
	}
	for _, uri := range m.URIs {
		trace.Emit(e.cfg.Trace, trace.Event{Time: at, Step: trace.StepRouteRegistered, Route: uri, AppGUID: m.App,
			InstanceGUID: m.PrivateInstanceID, CellID: e.cfg.CellID,
			Detail:   fmt.Sprintf("router.register published on NATS (%s): %s -> %s (%s)", reason, uri, m.Address(), tls),
			Artifact: json.RawMessage(data)})
	}
}
