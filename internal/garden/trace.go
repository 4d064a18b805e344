package garden

import (
	"fmt"

	"github.com/minicf/minicf/internal/netin"
	"github.com/minicf/minicf/internal/trace"
)

// Trace events of flow 1 (see internal/trace): container-created, and
// dnat-applied (namespace mode) or dnat-not-in-process-mode. Only LRP
// containers are traced: those whose properties name a process guid, as
// the rep's do (rep.PropProcessGUID, rep.PropCellID).
const (
	traceProcessProp = "process_guid"
	traceCellProp    = "cell_id"
)

// traceEvent is an event with m's keys, or false when m is not traced.
func (g *Garden) traceEvent(m *metadata, step string) (trace.Event, bool) {
	if !trace.Enabled(g.cfg.Trace) || m.Properties[traceProcessProp] == "" {
		return trace.Event{}, false
	}
	return trace.Event{Step: step, ProcessGUID: m.Properties[traceProcessProp], InstanceGUID: m.Handle,
		CellID: m.Properties[traceCellProp]}, true
}

type traceContainer struct {
	Handle      string            `json:"handle"`
	Mode        string            `json:"mode"`
	Namespace   string            `json:"namespace,omitempty"`
	Veth        string            `json:"veth,omitempty"`
	ContainerIP string            `json:"container_ip"`
	CellIP      string            `json:"cell_ip"`
	MappedPorts []PortMapping     `json:"mapped_ports,omitempty"`
	BindPorts   map[uint32]uint32 `json:"bind_ports,omitempty"`
	Dir         string            `json:"dir"`
}

// traceCreated records container-created: in namespace mode once the
// namespace and its link exist, in process mode at the end of Create.
func (g *Garden) traceCreated(m *metadata) {
	e, ok := g.traceEvent(m, trace.StepContainerCreated)
	if !ok {
		return
	}
	a := traceContainer{Handle: m.Handle, Mode: m.Mode, ContainerIP: LoopbackIP, CellIP: LoopbackIP,
		MappedPorts: m.MappedPorts, BindPorts: m.BindPorts, Dir: g.dir(m.Handle)}
	if n := m.Network; n != nil {
		a.Namespace, a.Veth, a.ContainerIP, a.CellIP = n.Netns, n.Veth, n.ContainerIP, n.ExternalIP
		e.Detail = fmt.Sprintf("container %s: network namespace %s, overlay IP %s on the cell's bridge (veth %s)",
			m.Handle, n.Netns, n.ContainerIP, n.Veth)
	} else {
		e.Detail = fmt.Sprintf("container %s: a directory and host ports on %s (process mode: no namespace of its own)",
			m.Handle, LoopbackIP)
	}
	e.Artifact = trace.Artifact(a)
	trace.Emit(g.cfg.Trace, e)
}

// traceDNAT records dnat-applied with the rules netin wrote.
func (g *Garden) traceDNAT(m *metadata, c netin.Container) {
	e, ok := g.traceEvent(m, trace.StepDNATApplied)
	if !ok || g.ns == nil {
		return
	}
	cellNS := g.ns.net.CellNS(g.ns.cell)
	chain := netin.ChainName(c.Handle)
	rules := netin.Rules(g.ns.cellIP.String(), c)
	e.Detail = fmt.Sprintf("%d DNAT rule(s) in chain %s of %s's nat table, applied in one iptables-restore", len(c.Mappings), chain, cellNS)
	e.Artifact = trace.Artifact(map[string]any{"namespace": cellNS, "table": "nat", "chain": chain, "rules": rules})
	trace.Emit(g.cfg.Trace, e)
}

// traceNoDNAT records that process mode has no DNAT step.
func (g *Garden) traceNoDNAT(m *metadata) {
	e, ok := g.traceEvent(m, trace.StepDNATNotInProcessMode)
	if !ok {
		return
	}
	e.Detail = "process mode: no network namespace, so no DNAT; the instance's processes listen on host ports of 127.0.0.1 themselves"
	e.Artifact = trace.Artifact(map[string]any{"mode": ModeProcess, "mapped_ports": m.MappedPorts, "bind_ports": m.BindPorts})
	trace.Emit(g.cfg.Trace, e)
}
