package bbs

import (
	"fmt"
	"slices"
	"strings"

	"github.com/minicf/minicf/internal/trace"
)

// Trace events of flow 1 (see internal/trace): the BBS records
// lrp-desired, lrp-updated and actual-lrp-running once the write that
// makes them has committed.

// traceLRP is the artifact of lrp-desired and lrp-updated: the DesiredLRP
// as stored, routes as `minicf cfdot desired-lrps` shows them.
type traceLRP struct {
	ProcessGUID string   `json:"process_guid"`
	Domain      string   `json:"domain"`
	LogGUID     string   `json:"log_guid,omitempty"`
	Instances   int32    `json:"instances"`
	Ports       []uint32 `json:"ports,omitempty"`
	Routes      Routes   `json:"routes,omitempty"`
	Changed     []string `json:"changed,omitempty"`
}

func (o *outbox) traceDesired(s *Service, d *DesiredLRP) {
	if trace.Enabled(s.cfg.Trace) {
		o.traces = append(o.traces, trace.Event{Step: trace.StepLRPDesired, ProcessGUID: d.ProcessGUID, AppGUID: d.LogGUID,
			Detail: fmt.Sprintf("DesiredLRP stored: %d instance(s), ports %v, routes %s", d.Instances, d.Ports, hostnames(d.Routes)),
			Artifact: trace.Artifact(traceLRP{ProcessGUID: d.ProcessGUID, Domain: d.Domain, LogGUID: d.LogGUID,
				Instances: d.Instances, Ports: d.Ports, Routes: d.Routes})})
	}
}

// traceUpdated records an update that changed the instances or the
// routes; the Cloud Controller's updates that change neither are not steps.
func (o *outbox) traceUpdated(s *Service, before, after *DesiredLRP) {
	if !trace.Enabled(s.cfg.Trace) {
		return
	}
	var changed []string
	if before.Instances != after.Instances {
		changed = append(changed, "instances")
	}
	if !slices.Equal(hostnameList(before.Routes), hostnameList(after.Routes)) || !sameRoutes(before.Routes, after.Routes) {
		changed = append(changed, "routes")
	}
	if len(changed) == 0 {
		return
	}
	o.traces = append(o.traces, trace.Event{Step: trace.StepLRPUpdated, ProcessGUID: after.ProcessGUID, AppGUID: after.LogGUID,
		Detail: fmt.Sprintf("DesiredLRP updated (%s): %d instance(s), routes %s", strings.Join(changed, ", "), after.Instances, hostnames(after.Routes)),
		Artifact: trace.Artifact(traceLRP{ProcessGUID: after.ProcessGUID, Domain: after.Domain, LogGUID: after.LogGUID,
			Instances: after.Instances, Ports: after.Ports, Routes: after.Routes, Changed: changed})})
}

func (o *outbox) traceRunning(s *Service, a *ActualLRP) {
	if trace.Enabled(s.cfg.Trace) {
		o.traces = append(o.traces, trace.Event{Step: trace.StepActualLRPRunning, ProcessGUID: a.ProcessGUID,
			InstanceGUID: a.InstanceGUID, CellID: a.CellID,
			Detail:   fmt.Sprintf("ActualLRP %s/%d RUNNING at %s (instance address %s)", a.ProcessGUID, a.Index, a.Address, a.InstanceAddress),
			Artifact: trace.Artifact(a)})
	}
}

func (s *Service) emitTraces(o *outbox) {
	for _, e := range o.traces {
		trace.Emit(s.cfg.Trace, e)
	}
}

func hostnameList(r Routes) []string {
	cf, _ := r.CFRoutes()
	var out []string
	for _, c := range cf {
		out = append(out, c.Hostnames...)
	}
	return out
}

func hostnames(r Routes) string {
	if h := hostnameList(r); len(h) > 0 {
		return strings.Join(h, ", ")
	}
	return "none"
}

func sameRoutes(a, b Routes) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if string(b[k]) != string(v) {
			return false
		}
	}
	return true
}
