package garden

import (
	"fmt"
	"net"
	"strconv"
	"sync"
)

// reserved holds the host ports handed out by every Garden of this process
// (several cells run in one `minicf up`), port -> owner (root and handle).
// Across processes the bind check is the only guard: a port is free if
// nothing listens on it right now.
var reserved = struct {
	sync.Mutex
	m map[uint32]string
}{m: map[uint32]string{}}

func reservePort(p uint32, owner string) {
	reserved.Lock()
	reserved.m[p] = owner
	reserved.Unlock()
}

func releasePorts(ports []uint32, owner string) {
	reserved.Lock()
	defer reserved.Unlock()
	for _, p := range ports {
		if reserved.m[p] == owner {
			delete(reserved.m, p)
		}
	}
}

func releaseOwner(owner string) {
	reserved.Lock()
	defer reserved.Unlock()
	for p, o := range reserved.m {
		if o == owner {
			delete(reserved.m, p)
		}
	}
}

// allocatePorts reserves n free loopback ports, lowest first from the
// range's start, each checked with a real bind.
func (g *Garden) allocatePorts(handle string, n int) ([]uint32, error) {
	if n == 0 {
		return nil, nil
	}
	owner := g.owner(handle)
	reserved.Lock()
	defer reserved.Unlock()
	var out []uint32
	for p := g.cfg.PortRangeStart; p <= g.cfg.PortRangeEnd && len(out) < n; p++ {
		port := uint32(p)
		if _, taken := reserved.m[port]; taken {
			continue
		}
		if !bindable(port) {
			continue
		}
		reserved.m[port] = owner
		out = append(out, port)
	}
	if len(out) < n {
		for _, p := range out {
			delete(reserved.m, p)
		}
		return nil, fmt.Errorf("garden: container %s: only %d of the %d host ports it needs are free in %d-%d",
			handle, len(out), n, g.cfg.PortRangeStart, g.cfg.PortRangeEnd)
	}
	return out, nil
}

// bindable binds the port on every address: an app usually listens on
// 0.0.0.0, so a listener on any address makes the port unusable.
func bindable(p uint32) bool {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(int(p)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
