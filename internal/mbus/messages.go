// Package mbus is minicf's twin of the NATS message bus as Cloud Foundry's
// gorouter and route-emitter use it. It owns the wire types of the routing
// subjects (router.register, router.unregister, router.greet, router.start),
// their decoding and validation, an embedded nats-server for single-host
// foundations, and a client that reconnects forever and says so in the log.
package mbus

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
)

// Subjects used by the routing tier. The names are Cloud Foundry's, so a real
// gorouter or route-emitter on the same bus interoperates with ours.
const (
	SubjectRegister   = "router.register"
	SubjectUnregister = "router.unregister"
	SubjectGreet      = "router.greet"
	SubjectStart      = "router.start"
	// SubjectAll is the wildcard gorouter subscribes to for every routing message.
	SubjectAll = "router.*"
)

// MaxMessageBytes bounds a single registry message. Real emitters send one URI
// per message, well under a kilobyte; anything near this limit is an abuse.
const MaxMessageBytes = 64 * 1024

// RegistryMessage is the body of router.register and router.unregister, with
// gorouter's JSON field names.
type RegistryMessage struct {
	Host                    string            `json:"host"`
	Port                    uint16            `json:"port"`
	TLSPort                 uint16            `json:"tls_port,omitempty"`
	URIs                    []string          `json:"uris"`
	App                     string            `json:"app,omitempty"`
	PrivateInstanceID       string            `json:"private_instance_id,omitempty"`
	PrivateInstanceIndex    string            `json:"private_instance_index,omitempty"`
	ServerCertDomainSAN     string            `json:"server_cert_domain_san,omitempty"`
	RouteServiceURL         string            `json:"route_service_url,omitempty"`
	IsolationSegment        string            `json:"isolation_segment,omitempty"`
	EndpointUpdatedAtNs     int64             `json:"endpoint_updated_at_ns,omitempty"`
	StaleThresholdInSeconds int               `json:"stale_threshold_in_seconds,omitempty"`
	Protocol                string            `json:"protocol,omitempty"`
	Tags                    map[string]string `json:"tags,omitempty"`
	AvailabilityZone        string            `json:"availability_zone,omitempty"`
	Options                 *RouteOptions     `json:"options,omitempty"`
}

// RouteOptions are the per-route options that travel with a registration.
type RouteOptions struct {
	LoadBalancing string `json:"loadbalancing,omitempty"`
}

// Load-balancing algorithm names, as Cloud Foundry spells them.
const (
	LBRoundRobin      = "round-robin"
	LBLeastConnection = "least-connection"
)

// RouterStart is the body of router.start and of the reply to router.greet.
type RouterStart struct {
	ID                               string   `json:"id"`
	Hosts                            []string `json:"hosts"`
	MinimumRegisterIntervalInSeconds int      `json:"minimumRegisterIntervalInSeconds"`
	PruneThresholdInSeconds          int      `json:"pruneThresholdInSeconds"`
}

// EffectivePort is the port the router dials: tls_port wins when set, as in gorouter.
func (m *RegistryMessage) EffectivePort() uint16 {
	if m.TLSPort != 0 {
		return m.TLSPort
	}
	return m.Port
}

// TLS reports whether the endpoint must be dialled with TLS.
func (m *RegistryMessage) TLS() bool { return m.TLSPort != 0 }

// Address is the endpoint's pool key, host:port with the effective port.
func (m *RegistryMessage) Address() string {
	return net.JoinHostPort(m.Host, fmt.Sprint(m.EffectivePort()))
}

// ErrInvalidMessage wraps every validation failure, so callers can count them.
var ErrInvalidMessage = errors.New("invalid registry message")

// DecodeRegistryMessage parses and validates a router.register or
// router.unregister body. Unknown keys are ignored, as gorouter does.
func DecodeRegistryMessage(data []byte) (*RegistryMessage, error) {
	if len(data) > MaxMessageBytes {
		return nil, fmt.Errorf("%w: %d bytes is more than the %d allowed", ErrInvalidMessage, len(data), MaxMessageBytes)
	}
	var m RegistryMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks what the router relies on. It mirrors gorouter's rules
// (route_service_url must be https) and adds the ones a router needs to avoid
// storing an endpoint it can never dial.
func (m *RegistryMessage) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidMessage, fmt.Sprintf(format, args...))
	}
	if m.Host == "" {
		return bad("host is empty")
	}
	if len(m.Host) > 253 || strings.IndexFunc(m.Host, badHostRune) >= 0 {
		return bad("host %q is not an IP address or hostname", truncate(m.Host))
	}
	if m.EffectivePort() == 0 {
		return bad("neither port nor tls_port is set for host %s", m.Host)
	}
	if len(m.URIs) == 0 {
		return bad("uris is empty")
	}
	for _, u := range m.URIs {
		if _, err := ParseRouteKey(u); err != nil {
			return bad("uri %q: %v", truncate(u), err)
		}
	}
	if m.RouteServiceURL != "" && !strings.HasPrefix(m.RouteServiceURL, "https://") {
		return bad("route_service_url %q must use https", truncate(m.RouteServiceURL))
	}
	if m.StaleThresholdInSeconds < 0 {
		return bad("stale_threshold_in_seconds is negative")
	}
	switch m.Protocol {
	case "", "http1", "http2":
	default:
		return bad("protocol %q is not http1 or http2", truncate(m.Protocol))
	}
	if m.Options != nil {
		switch m.Options.LoadBalancing {
		case "", LBRoundRobin, LBLeastConnection:
		default:
			return bad("options.loadbalancing %q is not %s or %s", truncate(m.Options.LoadBalancing), LBRoundRobin, LBLeastConnection)
		}
	}
	return nil
}

// badHostRune rejects what cannot appear in an IP address or hostname and
// would otherwise end up in a dial string or a log line: separators, spaces
// and control characters.
func badHostRune(r rune) bool {
	return r <= ' ' || r == 0x7f || r == '/'
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
