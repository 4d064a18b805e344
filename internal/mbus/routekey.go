package mbus

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// RouteKey is a normalised route: a lower-case hostname (possibly a wildcard,
// "*.apps.localhost") and an optional context path ("/api", no trailing slash).
type RouteKey struct {
	Host string
	Path string
}

// String renders the key as gorouter shows it in /routes: host[/path].
func (k RouteKey) String() string { return k.Host + k.Path }

// MaxRouteLength bounds a route as gorouter's and the CC's limits do (a host
// name is at most 253 characters; paths are capped to keep the table small).
const MaxRouteLength = 1024

// ParseRouteKey normalises a route as gorouter does: lower-case, query string
// dropped, trailing slash dropped. It rejects what could never match a
// request: empty hosts, characters outside a hostname, and wildcards anywhere
// but the first label.
func ParseRouteKey(uri string) (RouteKey, error) {
	if uri == "" {
		return RouteKey{}, errors.New("route is empty")
	}
	if len(uri) > MaxRouteLength {
		return RouteKey{}, errors.New("route is longer than 1024 characters")
	}
	if !utf8.ValidString(uri) {
		// strings.ToLower would turn each bad byte into a 3-byte U+FFFD,
		// so the key would no longer be what the emitter sent.
		return RouteKey{}, errors.New("route is not valid UTF-8")
	}
	uri = strings.ToLower(uri)
	if len(uri) > MaxRouteLength {
		// Lower-casing can lengthen some runes (U+023A becomes 3 bytes);
		// checking again keeps every accepted key re-parseable.
		return RouteKey{}, errors.New("route is longer than 1024 characters")
	}
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	host, path := uri, ""
	if i := strings.IndexByte(uri, '/'); i >= 0 {
		host, path = uri[:i], uri[i:]
	}
	if host == "" {
		return RouteKey{}, errors.New("route has no host name")
	}
	if strings.HasSuffix(host, ":") && strings.HasPrefix(path, "//") {
		// Otherwise "https://a.b" would be blamed on a port.
		return RouteKey{}, errors.New("route must not start with a scheme such as https://")
	}
	if len(host) > 253 {
		return RouteKey{}, errors.New("host name is longer than 253 characters")
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == '_':
		case c == '*' && i == 0 && len(host) > 2 && host[1] == '.':
		case c == ':':
			// host:port is how TCP-style routes look; HTTP routes never carry a port.
			return RouteKey{}, errors.New("route host must not carry a port")
		default:
			return RouteKey{}, errors.New("host name has a character that is not allowed: " + string(rune(c)))
		}
	}
	if strings.HasPrefix(host, ".") || strings.HasSuffix(host, ".") || strings.Contains(host, "..") {
		return RouteKey{}, errors.New("host name has an empty label")
	}
	path = strings.TrimRight(path, "/")
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= ' ' || c == 0x7f || c == '#' {
			return RouteKey{}, errors.New("path has a control character, space or '#'")
		}
	}
	if strings.Contains(path, "//") {
		return RouteKey{}, errors.New("path has an empty segment")
	}
	return RouteKey{Host: host, Path: path}, nil
}
