package cc

import (
	"fmt"

	"github.com/minicf/minicf/internal/trace"
)

// traceMapped queues flow 1's route-mapped step for a new destination; it
// is emitted after the commit (runEffects), before the BBS hears of it.
// dom may be nil: it is then read in tx.
func (c *CC) traceMapped(tx *stx, fx *effects, rt *routeRec, dom *domainRec, d *destRec) {
	if !trace.Enabled(c.cfg.Trace) {
		return
	}
	if dom == nil {
		var err error
		if dom, err = getRec[domainRec](tx, tDomains, rt.DomainGUID); err != nil {
			return
		}
	}
	route := routeURL(rt, dom.Name)
	fx.traces = append(fx.traces, trace.Event{Step: trace.StepRouteMapped, Route: route, AppGUID: d.AppGUID,
		Detail: fmt.Sprintf("route %s mapped to app %s: process type %s, port %d, %s", route, d.AppGUID, d.ProcessType, d.Port, d.Protocol),
		Artifact: trace.Artifact(map[string]any{"route": route, "route_guid": rt.GUID, "destination_guid": d.GUID,
			"app_guid": d.AppGUID, "process_type": d.ProcessType, "port": d.Port, "protocol": d.Protocol})})
}

func (c *CC) emitTraces(fx *effects) {
	for _, e := range fx.traces {
		trace.Emit(c.cfg.Trace, e)
	}
	fx.traces = nil
}
