package routeemitter

import (
	"strconv"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/mbus"
)

// Component is the value of tags.component in every message, as Diego's
// route-emitter sets it; gorouter uses it to label its metrics.
const Component = "route-emitter"

// Dynamic metric tag values, as Diego names them.
const (
	dynamicIndex        = "INDEX"
	dynamicInstanceGUID = "INSTANCE_GUID"
)

// registryMessage is the router.register (or router.unregister) body for
// one route on one endpoint, with the route-emitter's field choices:
//
//   - host is the cell's address and port the host port of the container
//     port (0 when only the sidecar's TLS port is mapped); tls_port is the
//     host port of the sidecar, which a router dials instead of port;
//   - uris holds exactly one hostname;
//   - app is the DesiredLRP's log guid (the app guid);
//   - private_instance_id and server_cert_domain_san are the instance
//     guid: the router checks the sidecar's certificate against the latter;
//   - endpoint_updated_at_ns is the ActualLRP's since (heartbeats clear it);
//   - tags are the DesiredLRP's metric tags, resolved for this instance,
//     plus component=route-emitter.
func registryMessage(d *bbs.DesiredLRP, ep *Endpoint, pm bbs.PortMapping, r Route) *mbus.RegistryMessage {
	m := &mbus.RegistryMessage{
		Host:                 ep.Address,
		Port:                 uint16(pm.HostPort),
		TLSPort:              uint16(pm.HostTLSProxyPort),
		URIs:                 []string{r.Hostname},
		App:                  d.LogGUID,
		PrivateInstanceID:    ep.InstanceGUID,
		PrivateInstanceIndex: strconv.Itoa(int(ep.Index)),
		ServerCertDomainSAN:  ep.InstanceGUID,
		RouteServiceURL:      r.RouteServiceURL,
		IsolationSegment:     r.IsolationSegment,
		EndpointUpdatedAtNs:  ep.Since,
		Protocol:             r.Protocol,
		Tags:                 resolveTags(d.MetricTags, ep),
	}
	if r.LoadBalancing != "" {
		m.Options = &mbus.RouteOptions{LoadBalancing: r.LoadBalancing}
	}
	return m
}

// resolveTags turns metric tags into message tags: static values as they
// are, INDEX and INSTANCE_GUID filled in for the endpoint.
func resolveTags(tags map[string]bbs.MetricTagValue, ep *Endpoint) map[string]string {
	out := make(map[string]string, len(tags)+1)
	for k, v := range tags {
		switch v.Dynamic {
		case dynamicIndex:
			out[k] = strconv.Itoa(int(ep.Index))
		case dynamicInstanceGUID:
			out[k] = ep.InstanceGUID
		case "":
			out[k] = v.Static
		}
	}
	out["component"] = Component
	return out
}
