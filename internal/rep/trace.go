package rep

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/minicf/minicf/internal/garden"
	"github.com/minicf/minicf/internal/trace"
)

// traceEnvoy records flow 1's envoy-listening step once the sidecar's
// first TLS port answers, with the instance identity it serves. It
// reports whether it is done: the port answered, or there is nothing to
// record (no sidecar, no tracing).
func (r *Rep) traceEnvoy(in *instance, c *lrpContainer) bool {
	if c.sidecar == nil || !trace.Enabled(r.cfg.Trace) || len(c.plan.appPorts) == 0 {
		return true
	}
	app := c.plan.appPorts[0]
	proxy, ok := c.plan.proxyPorts[app]
	if !ok {
		return true
	}
	addr := net.JoinHostPort(c.info.ContainerIP, strconv.Itoa(int(bindPort(c.info, proxy))))
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	at := time.Now()
	a := trace.EnvoyArtifact{Address: addr,
		ProxiesTo: net.JoinHostPort(garden.LoopbackIP, strconv.Itoa(int(bindPort(c.info, app))))}
	if l := c.leaf; l != nil {
		a.CN, a.Serial, a.NotBefore, a.NotAfter, a.DNSNames = l.Subject.CommonName, fmt.Sprintf("%X", l.SerialNumber), l.NotBefore, l.NotAfter, l.DNSNames
		a.Issuer = l.Issuer.CommonName
		for _, ip := range l.IPAddresses {
			a.IPAddresses = append(a.IPAddresses, ip.String())
		}
	}
	trace.Emit(r.cfg.Trace, trace.Event{Time: at, Step: trace.StepEnvoyListening, ProcessGUID: in.key.ProcessGUID,
		InstanceGUID: in.ik.InstanceGUID, CellID: in.ik.CellID,
		Detail: fmt.Sprintf("envoy answers on %s with the instance identity (CN %s, serial %s), proxying to the app on %s",
			addr, a.CN, a.Serial, a.ProxiesTo),
		Artifact: trace.Artifact(a)})
	return true
}
