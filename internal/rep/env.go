package rep

import (
	"encoding/json"
	"fmt"
	"net"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/garden"
)

// Ports of Diego's envoy, inside the container.
const (
	FirstProxyPort = 61001
	C2CTLSPort     = 61443 // container-to-container TLS; minicf has no listener on it, but keeps it free as Diego does
	LastProxyPort  = 65534
)

// portPlan is Diego's ProxyConfigHandler.ProxyPorts: one TLS proxy port per
// unique app port, from 61001 upward, skipping app ports and 61443; the
// admin port is the next free one.
type portPlan struct {
	appPorts   []uint32
	proxyPorts map[uint32]uint32 // app port -> proxy port
	adminPort  uint32
}

func planPorts(ports []uint32, routeIntegrity bool) (portPlan, error) {
	plan := portPlan{proxyPorts: map[uint32]uint32{}}
	isApp := map[uint32]bool{}
	for _, p := range ports {
		if !isApp[p] {
			isApp[p] = true
			plan.appPorts = append(plan.appPorts, p)
		}
	}
	if !routeIntegrity || len(plan.appPorts) == 0 {
		return plan, nil
	}
	if isApp[C2CTLSPort] {
		return plan, fmt.Errorf("port %d is reserved for container-to-container TLS and may not be an app port", C2CTLSPort)
	}
	next := uint32(FirstProxyPort)
	take := func() (uint32, error) {
		for isApp[next] || next == C2CTLSPort {
			next++
		}
		if next > LastProxyPort {
			return 0, fmt.Errorf("no proxy port is left below %d", LastProxyPort+1)
		}
		p := next
		next++
		return p, nil
	}
	for _, app := range plan.appPorts {
		p, err := take()
		if err != nil {
			return plan, err
		}
		plan.proxyPorts[app] = p
	}
	admin, err := take()
	if err != nil {
		return plan, err
	}
	plan.adminPort = admin
	return plan, nil
}

// netIn is what the container asks Garden to map: every app port (process
// mode reaches it anyway; see netInfo) and every proxy port.
func (p portPlan) netIn() []garden.NetIn {
	var out []garden.NetIn
	for _, app := range p.appPorts {
		out = append(out, garden.NetIn{ContainerPort: app})
	}
	for _, app := range p.appPorts {
		if proxy, ok := p.proxyPorts[app]; ok {
			out = append(out, garden.NetIn{ContainerPort: proxy})
		}
	}
	return out
}

// containerPorts is what the container asks Garden for: host mappings
// (NetIn) and ports only its processes use (LocalPorts, the admin port).
//
// In namespace mode the container has its own network, so it is
// cf-deployment's enable_unproxied_port_mappings: false: with route
// integrity only the proxy ports are mapped and the app ports stay inside
// (host_port 0); without it the app ports are mapped. Process mode maps
// every port (see netInfo).
func (p portPlan) containerPorts(namespaced bool) (netIn []garden.NetIn, local []uint32) {
	if !namespaced || len(p.proxyPorts) == 0 {
		netIn = p.netIn()
	} else {
		for _, app := range p.appPorts {
			if proxy, ok := p.proxyPorts[app]; ok {
				netIn = append(netIn, garden.NetIn{ContainerPort: proxy})
			} else {
				netIn = append(netIn, garden.NetIn{ContainerPort: app})
			}
		}
		for _, app := range p.appPorts {
			if _, ok := p.proxyPorts[app]; ok {
				local = append(local, app)
			}
		}
	}
	if p.adminPort != 0 {
		local = append(local, p.adminPort)
	}
	return netIn, local
}

func hostPort(info garden.ContainerInfo, containerPort uint32) uint32 {
	for _, m := range info.MappedPorts {
		if m.ContainerPort == containerPort {
			return m.HostPort
		}
	}
	return 0
}

// bindPort is the port a process must listen on for a container port.
func bindPort(info garden.ContainerInfo, containerPort uint32) uint32 {
	if p, ok := info.BindPorts[containerPort]; ok {
		return p
	}
	return containerPort
}

// netInfo is the ActualLRP's net info, with one port mapping per app port.
//
// With route integrity on, Diego maps only the proxy port to the host
// (enable_unproxied_port_mappings: false), so host_port is 0, and so it is
// in namespace mode. In process mode the app listens on a host port of its
// own and is reachable on it whatever we say, so minicf reports host_port
// too: the ActualLRP then tells the truth about what the cell exposes.
// Routers use host_tls_proxy_port when it is set, so routing is unchanged.
func (p portPlan) netInfo(info garden.ContainerInfo) bbs.ActualLRPNetInfo {
	ni := bbs.ActualLRPNetInfo{Address: info.ExternalIP, InstanceAddress: info.ContainerIP, PreferredAddress: "HOST",
		Ports: []bbs.PortMapping{}}
	for _, app := range p.appPorts {
		m := bbs.PortMapping{ContainerPort: app, HostPort: hostPort(info, app)}
		if proxy, ok := p.proxyPorts[app]; ok {
			m.ContainerTLSProxyPort = proxy
			m.HostTLSProxyPort = hostPort(info, proxy)
		}
		ni.Ports = append(ni.Ports, m)
	}
	return ni
}

// sidecarArgs are the flags of `minicf envoy`: one --listen per app port,
// proxying to the app's bind port on the container's loopback. In
// namespace mode the listener is on 0.0.0.0 of the container's namespace,
// as Diego's envoy (the DNAT sends the host port to overlay ip:61001); in
// process mode on the container address (loopback), never 0.0.0.0.
func (p portPlan) sidecarArgs(info garden.ContainerInfo, certFile, keyFile, clientCAFile string) []string {
	listenHost := info.ContainerIP
	if info.Mode == garden.ModeNamespace {
		listenHost = "0.0.0.0"
	}
	var args []string
	for _, app := range p.appPorts {
		proxy, ok := p.proxyPorts[app]
		if !ok {
			continue
		}
		args = append(args, "--listen", fmt.Sprintf("listener-%d-%d=%s=%s", app, proxy,
			net.JoinHostPort(listenHost, strconv.Itoa(int(bindPort(info, proxy)))),
			net.JoinHostPort(garden.LoopbackIP, strconv.Itoa(int(bindPort(info, app))))))
	}
	args = append(args, "--cert", certFile, "--key", keyFile)
	if clientCAFile != "" {
		args = append(args, "--client-ca", clientCAFile)
	}
	if p.adminPort != 0 {
		args = append(args, "--admin", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(bindPort(info, p.adminPort)))))
	}
	return args
}

// instancePort is an entry of CF_INSTANCE_PORTS, as Diego writes it.
type instancePort struct {
	External         uint32  `json:"external"`
	Internal         uint32  `json:"internal"`
	ExternalTLSProxy *uint32 `json:"external_tls_proxy,omitempty"`
	InternalTLSProxy *uint32 `json:"internal_tls_proxy,omitempty"`
}

// VCAPHome is the app directory Cloud Foundry apps know; paths under it
// (and under the setup action's destination) mean the container's app/.
const VCAPHome = "/home/vcap/app"

// containerPath maps a path inside a Cloud Foundry container to process
// mode: /home/vcap/app (or the download destination) is the container's
// app/ directory; a relative path is inside app/; any other absolute path
// is the host's own (process mode has no root filesystem). rel says whether
// the result is relative to the container directory.
func containerPath(p, setupTo string) (out string, rel bool) {
	if p == "" {
		return "app", true
	}
	for _, home := range []string{setupTo, VCAPHome} {
		if home == "" || !path.IsAbs(home) {
			continue
		}
		home = path.Clean(home)
		clean := path.Clean(p)
		if clean == home {
			return "app", true
		}
		if strings.HasPrefix(clean, home+"/") {
			return path.Join("app", strings.TrimPrefix(clean, home+"/")), true
		}
	}
	if path.IsAbs(p) {
		return p, false
	}
	return path.Join("app", path.Clean(p)), true
}

func hostPath(dir, p, setupTo string) string {
	out, rel := containerPath(p, setupTo)
	if rel {
		return filepath.Join(dir, filepath.FromSlash(out))
	}
	return out
}

// processGUIDToProcessID undoes the Cloud Controller's process guid
// (<process guid>-<version>, both UUIDs) to the CC process guid.
func processGUIDToProcessID(pg string) string {
	if len(pg) == 73 && pg[36] == '-' {
		return pg[:36]
	}
	return pg
}

func metricTag(d *bbs.DesiredLRP, name string) string {
	if d.MetricTags == nil {
		return ""
	}
	return d.MetricTags[name].Static
}

// sourceType is the log source of the app's process: APP/PROC/<TYPE>.
func sourceType(d *bbs.DesiredLRP) string {
	t := metricTag(d, "process_type")
	if t == "" {
		t = "web"
	}
	return "APP/PROC/" + strings.ToUpper(t)
}

// appEnv is the app's environment, in Diego's order: the container basics,
// the action's variables (from the Cloud Controller), the rep's INSTANCE_*
// and the executor's CF_INSTANCE_*. Later entries win. PORT is the app
// port's bind port (in process mode, its host port) and VCAP_APPLICATION
// gets the per-instance fields the buildpack launcher adds.
func appEnv(d *bbs.DesiredLRP, key bbs.ActualLRPKey, guid string, info garden.ContainerInfo, plan portPlan,
	ni bbs.ActualLRPNetInfo, certFile, keyFile string) []string {
	env := []string{
		"HOME=" + filepath.Join(info.Dir, "app"),
		"TMPDIR=" + filepath.Join(info.Dir, "tmp"),
		"LANG=en_US.UTF-8",
		"USER=vcap",
	}
	var vcapApp string
	if d.Action != nil {
		for _, e := range d.Action.Env {
			if e.Name == "VCAP_APPLICATION" {
				vcapApp = e.Value
			}
			env = append(env, e.Name+"="+e.Value)
		}
	}
	index := strconv.Itoa(int(key.Index))
	env = append(env,
		"INSTANCE_GUID="+guid,
		"INSTANCE_INDEX="+index,
		"CF_INSTANCE_GUID="+guid,
		"CF_INSTANCE_INDEX="+index,
		"CF_INSTANCE_IP="+info.ExternalIP,
		"CF_INSTANCE_INTERNAL_IP="+info.ContainerIP,
	)
	ports := []instancePort{}
	for _, m := range ni.Ports {
		ip := instancePort{External: m.HostPort, Internal: m.ContainerPort}
		if m.ContainerTLSProxyPort != 0 {
			ext, in := m.HostTLSProxyPort, m.ContainerTLSProxyPort
			ip.ExternalTLSProxy, ip.InternalTLSProxy = &ext, &in
		}
		ports = append(ports, ip)
	}
	portsJSON, _ := json.Marshal(ports)
	if len(ni.Ports) > 0 {
		first := ni.Ports[0].HostPort
		env = append(env,
			"CF_INSTANCE_PORT="+strconv.Itoa(int(first)),
			"CF_INSTANCE_ADDR="+net.JoinHostPort(info.ExternalIP, strconv.Itoa(int(first))))
	} else {
		env = append(env, "CF_INSTANCE_PORT=", "CF_INSTANCE_ADDR=")
	}
	env = append(env,
		"CF_INSTANCE_PORTS="+string(portsJSON),
		"CF_INSTANCE_CERT="+certFile,
		"CF_INSTANCE_KEY="+keyFile,
	)
	var port uint32
	if len(plan.appPorts) > 0 {
		port = bindPort(info, plan.appPorts[0])
		env = append(env, "PORT="+strconv.Itoa(int(port)))
	}
	env = append(env, "VCAP_APPLICATION="+vcapApplication(vcapApp, d, guid, key.Index, port))
	return env
}

// vcapApplication fills in VCAP_APPLICATION: what the Cloud Controller
// gave, plus what the buildpack launcher adds per instance (instance_id,
// instance_index, host, port); without one from the Cloud Controller, one is
// made from the DesiredLRP.
func vcapApplication(given string, d *bbs.DesiredLRP, guid string, index int32, port uint32) string {
	v := map[string]any{}
	if given != "" {
		if err := json.Unmarshal([]byte(given), &v); err != nil {
			v = map[string]any{}
		}
	}
	setDefault := func(k string, val any) {
		if _, ok := v[k]; !ok {
			v[k] = val
		}
	}
	appID := d.LogGUID
	if appID == "" {
		appID = metricTag(d, "app_id")
	}
	setDefault("application_id", appID)
	if name := metricTag(d, "app_name"); name != "" {
		setDefault("application_name", name)
		setDefault("name", name)
	}
	setDefault("process_id", processGUIDToProcessID(d.ProcessGUID))
	if t := metricTag(d, "process_type"); t != "" {
		setDefault("process_type", t)
	} else {
		setDefault("process_type", "web")
	}
	for _, k := range []string{"space_id", "space_name", "organization_id", "organization_name"} {
		if val := metricTag(d, k); val != "" {
			setDefault(k, val)
		}
	}
	uris := []string{}
	if routes, err := d.Routes.CFRoutes(); err == nil {
		for _, r := range routes {
			uris = append(uris, r.Hostnames...)
		}
	}
	setDefault("application_uris", uris)
	setDefault("uris", uris)
	setDefault("limits", map[string]any{"mem": d.MemoryMB, "disk": d.DiskMB, "fds": 16384})
	v["instance_id"] = guid
	v["instance_index"] = index
	v["host"] = "0.0.0.0"
	if port != 0 {
		v["port"] = port
	}
	b, _ := json.Marshal(v)
	return string(b)
}
