package router

import (
	"net"
	"syscall"
)

// connAlive peeks at an idle connection without blocking: a connection the
// backend closed reads as EOF (or an error), and one with unexpected bytes
// waiting is out of step. Either way it must not carry the next request.
func connAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := true
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK:
		case rerr != nil, n == 0, n > 0:
			alive = false
		}
		return true // never wait for readiness: this is a probe
	})
	return err == nil && alive
}
