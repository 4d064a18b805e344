package cc

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/minicf/minicf/internal/cc/ccapi"
)

func routeBody(host, path, space, domain string) map[string]any {
	return map[string]any{"host": host, "path": path, "relationships": map[string]any{
		"space": map[string]any{"data": map[string]string{"guid": space}}, "domain": map[string]any{"data": map[string]string{"guid": domain}}}}
}

func testRoutes(t *testing.T, e *env) {
	rt := e.createRoute("h1", "")
	if rt.URL != "h1.apps.localhost" || rt.Protocol != "http" || rt.Port != nil || rt.Path != "" || len(rt.Destinations) != 0 ||
		relGUID(rt.Relationships, "domain") != e.domain || relGUID(rt.Relationships, "space") != e.space {
		t.Errorf("route %+v", rt)
	}
	withPath := e.createRoute("h1", "/foo")
	if withPath.URL != "h1.apps.localhost/foo" {
		t.Errorf("url %q", withPath.URL)
	}
	e.wantError("POST", "/v3/routes", routeBody("h1", "", e.space, e.domain), 422, "CF-UnprocessableEntity",
		"Route already exists with host 'h1' for domain 'apps.localhost'.")
	e.wantError("POST", "/v3/routes", routeBody("h1", "/foo", e.space, e.domain), 422, "CF-UnprocessableEntity",
		"Route already exists with host 'h1' and path '/foo' for domain 'apps.localhost'.")
	// Host names are case-insensitive.
	e.wantError("POST", "/v3/routes", routeBody("H1", "", e.space, e.domain), 422, "CF-UnprocessableEntity",
		"Route already exists with host 'h1' for domain 'apps.localhost'.")

	// map-route's lookup: hosts=h1&paths= matches the empty path only.
	var list ccapi.List[ccapi.Route]
	e.mustJSON("GET", "/v3/routes?domain_guids="+e.domain+"&hosts=h1&paths=&page=1&per_page=1", nil, 200, &list)
	if len(list.Resources) != 1 || list.Resources[0].GUID != rt.GUID || list.Pagination.TotalResults != 1 {
		t.Errorf("hosts=h1&paths=: %+v", list.Resources)
	}
	e.mustJSON("GET", "/v3/routes?hosts=H1&paths=/foo", nil, 200, &list)
	if len(list.Resources) != 1 || list.Resources[0].GUID != withPath.GUID {
		t.Errorf("paths=/foo: %+v", list.Resources)
	}
	e.mustJSON("GET", "/v3/routes?space_guids="+e.space+"&per_page=5000", nil, 200, &list)
	if len(list.Resources) != 2 {
		t.Errorf("space_guids: %d routes", len(list.Resources))
	}
	e.mustJSON("GET", "/v3/routes?organization_guids="+e.org, nil, 200, &list)
	if len(list.Resources) != 2 {
		t.Errorf("organization_guids: %d routes", len(list.Resources))
	}
	e.mustJSON("GET", "/v3/routes?organization_guids=other", nil, 200, &list)
	if len(list.Resources) != 0 {
		t.Errorf("organization_guids=other: %d routes", len(list.Resources))
	}

	a := e.createApp("app1")
	e.mapRoute(rt.GUID, a.GUID)
	e.mustJSON("GET", "/v3/routes?app_guids="+a.GUID, nil, 200, &list)
	if len(list.Resources) != 1 || len(list.Resources[0].Destinations) != 1 {
		t.Fatalf("app_guids: %+v", list.Resources)
	}
	d := list.Resources[0].Destinations[0]
	if d.App.GUID != a.GUID || d.App.Process == nil || d.App.Process.Type != "web" || d.Port != 8080 || d.Protocol != "http1" || d.GUID == "" {
		t.Errorf("embedded destination %+v", d)
	}
	e.mustJSON("GET", "/v3/apps/"+a.GUID+"/routes", nil, 200, &list)
	if len(list.Resources) != 1 || list.Resources[0].GUID != rt.GUID {
		t.Errorf("app routes %+v", list.Resources)
	}
	var reservation map[string]bool
	e.mustJSON("GET", "/v3/domains/"+e.domain+"/route_reservations?host=h1", nil, 200, &reservation)
	if !reservation["matching_route"] {
		t.Errorf("route_reservations: %v", reservation)
	}
	e.mustJSON("GET", "/v3/domains/"+e.domain+"/route_reservations?host=h9", nil, 200, &reservation)
	if reservation["matching_route"] {
		t.Errorf("route_reservations for a free host: %v", reservation)
	}

	var patched ccapi.Route
	e.mustJSON("PATCH", "/v3/routes/"+rt.GUID, map[string]any{"options": map[string]string{"loadbalancing": "least-connection"}}, 200, &patched)
	if patched.Options["loadbalancing"] != "least-connection" {
		t.Errorf("options %v", patched.Options)
	}
	e.wantError("PATCH", "/v3/routes/"+rt.GUID, map[string]any{"options": map[string]string{"loadbalancing": "random"}}, 422, "CF-UnprocessableEntity",
		"Loadbalancing must be one of 'round-robin, least-connection, hash' if present")

	// Deleting a route deletes its mappings.
	unmapped := e.createRoute("lonely", "")
	e.mustJSON("DELETE", "/v3/spaces/"+e.space+"/routes?unmapped=true", nil, 202, nil)
	e.wantError("GET", "/v3/routes/"+unmapped.GUID, nil, 404, "CF-NotFound", "Route not found")
	e.mustJSON("GET", "/v3/routes/"+rt.GUID, nil, 200, nil) // mapped: kept
	e.mustJSON("DELETE", "/v3/routes/"+rt.GUID, nil, 202, nil)
	e.mustJSON("GET", "/v3/apps/"+a.GUID+"/routes", nil, 200, &list)
	if len(list.Resources) != 0 {
		t.Errorf("after delete, app routes %+v", list.Resources)
	}
	e.wantError("DELETE", "/v3/spaces/"+e.space+"/routes", nil, 400, "CF-InvalidRequest", "Mass delete not supported for routes. Use 'unmapped' parameter to delete all unmapped routes.")
}

func testRouteValidation(t *testing.T, e *env) {
	cases := []struct {
		host, path string
		detail     string
	}{
		{"", "", "Missing host. Routes in shared domains must have a host defined."},
		{"*", "", "Wildcard hosts are not supported for shared domains."},
		{"bad host", "", `Host must be either "*" or contain only alphanumeric characters, "_", or "-"`},
		{"a.b", "", `Host must be either "*" or contain only alphanumeric characters, "_", or "-"`},
		{"héllo", "", `Host must be either "*" or contain only alphanumeric characters, "_", or "-"`},
		{strings.Repeat("a", 64), "", "Host is too long (maximum is 63 characters)"},
		{"ok", "foo", "Path must begin with /"},
		{"ok", "/", "Path cannot be exactly /"},
		{"ok", "/a?b", "Path cannot contain ?"},
		{"ok", "/" + strings.Repeat("p", 128), "Path is too long (maximum is 128 characters)"},
		{"ok", "/a b", `Path is invalid: " " is not allowed in a URL path`},
	}
	for _, c := range cases {
		e.wantError("POST", "/v3/routes", routeBody(c.host, c.path, e.space, e.domain), 422, "CF-UnprocessableEntity", c.detail)
	}
	e.wantError("POST", "/v3/routes", routeBody("ok", "", "nope", e.domain), 422, "CF-UnprocessableEntity", "Invalid space. Ensure that the space exists and you have access to it.")
	e.wantError("POST", "/v3/routes", routeBody("ok", "", e.space, "nope"), 422, "CF-UnprocessableEntity", "Invalid domain. Ensure that the domain exists and you have access to it.")
	body := routeBody("ok", "", e.space, e.domain)
	body["port"] = 1234
	e.wantError("POST", "/v3/routes", body, 422, "CF-UnprocessableEntity", "Routes with a port need a TCP domain…")
	// Nothing of the above was created.
	var list ccapi.List[ccapi.Route]
	e.mustJSON("GET", "/v3/routes", nil, 200, &list)
	if len(list.Resources) != 0 {
		t.Errorf("invalid routes were created: %+v", list.Resources)
	}
	// Valid edge cases.
	e.createRoute(strings.Repeat("a", 63), "")
	e.createRoute("under_score-1", "/a/b.c~d")
}

func testDestinations(t *testing.T, e *env) {
	rt := e.createRoute("dest", "")
	a := e.createApp("da")
	b := e.createApp("db")
	out := e.mapRoute(rt.GUID, a.GUID)
	if len(out.Destinations) != 1 || out.Links["route"].Href != testExternalURL+"/v3/routes/"+rt.GUID {
		t.Fatalf("insert: %+v", out)
	}
	// The same mapping again changes nothing (map-route twice).
	out = e.mapRoute(rt.GUID, a.GUID)
	if len(out.Destinations) != 1 {
		t.Errorf("a second identical insert added a destination: %+v", out.Destinations)
	}
	e.mustJSON("POST", "/v3/routes/"+rt.GUID+"/destinations", map[string]any{"destinations": []any{
		map[string]any{"app": map[string]any{"guid": b.GUID, "process": map[string]string{"type": "web"}}, "protocol": "http2", "port": 9000}}}, 200, &out)
	if len(out.Destinations) != 2 {
		t.Fatalf("insert b: %+v", out.Destinations)
	}
	var listed ccapi.RouteDestinations
	e.mustJSON("GET", "/v3/routes/"+rt.GUID+"/destinations", nil, 200, &listed)
	if len(listed.Destinations) != 2 || listed.Destinations[1].Protocol != "http2" || listed.Destinations[1].Port != 9000 {
		t.Errorf("list %+v", listed.Destinations)
	}
	e.mustJSON("GET", "/v3/routes/"+rt.GUID+"/destinations?app_guids="+b.GUID, nil, 200, &listed)
	if len(listed.Destinations) != 1 {
		t.Errorf("app_guids filter: %+v", listed.Destinations)
	}
	bDest := listed.Destinations[0]

	var d ccapi.Destination
	e.mustJSON("PATCH", "/v3/routes/"+rt.GUID+"/destinations/"+bDest.GUID, map[string]string{"protocol": "http1"}, 200, &d)
	if d.Protocol != "http1" || d.GUID != bDest.GUID {
		t.Errorf("patched %+v", d)
	}
	e.wantError("PATCH", "/v3/routes/"+rt.GUID+"/destinations/"+bDest.GUID, map[string]string{"protocol": "tcp"}, 422, "CF-UnprocessableEntity",
		"Destination protocol must be 'http1' or 'http2' if route protocol is 'http'")

	// Errors.
	e.wantError("POST", "/v3/routes/"+rt.GUID+"/destinations", map[string]any{"destinations": []any{map[string]any{"app": map[string]string{"guid": "ghost"}}}},
		422, "CF-UnprocessableEntity", `App(s) with guid(s) "ghost" do not exist or you do not have access.`)
	e.wantError("POST", "/v3/routes/nope/destinations", map[string]any{"destinations": []any{map[string]any{"app": map[string]string{"guid": a.GUID}}}},
		404, "CF-NotFound", "Route not found")
	e.wantError("POST", "/v3/routes/"+rt.GUID+"/destinations", map[string]any{"destinations": []any{map[string]any{"app": map[string]string{"guid": a.GUID}, "protocol": "tcp"}}},
		422, "CF-UnprocessableEntity", "Destination protocol must be 'http1' or 'http2' if route protocol is 'http'")
	var other ccapi.Space
	e.mustJSON("POST", "/v3/spaces", map[string]any{"name": "elsewhere", "relationships": map[string]any{"organization": map[string]any{"data": map[string]string{"guid": e.org}}}}, 201, &other)
	var far ccapi.App
	e.mustJSON("POST", "/v3/apps", map[string]any{"name": "far", "relationships": map[string]any{"space": map[string]any{"data": map[string]string{"guid": other.GUID}}}}, 201, &far)
	e.wantError("POST", "/v3/routes/"+rt.GUID+"/destinations", map[string]any{"destinations": []any{map[string]any{"app": map[string]string{"guid": far.GUID}}}},
		422, "CF-UnprocessableEntity", "Routes destinations must be in either the route's space or the route's shared spaces")
	e.mustJSON("GET", "/v3/routes/"+rt.GUID+"/destinations", nil, 200, &listed)
	if len(listed.Destinations) != 2 {
		t.Errorf("a refused insert changed the destinations: %+v", listed.Destinations)
	}

	// Replace all (PATCH), keeping a's destination guid.
	aGUID := listed.Destinations[0].GUID
	e.mustJSON("PATCH", "/v3/routes/"+rt.GUID+"/destinations", map[string]any{"destinations": []any{map[string]any{"app": map[string]string{"guid": a.GUID}}}}, 200, &out)
	if len(out.Destinations) != 1 || out.Destinations[0].GUID != aGUID {
		t.Errorf("replace: %+v (a's guid was %s)", out.Destinations, aGUID)
	}
	code, _, body := e.do("DELETE", "/v3/routes/"+rt.GUID+"/destinations/"+aGUID, nil)
	if code != 204 || len(body) != 0 {
		t.Errorf("delete destination: %d %s", code, body)
	}
	e.wantError("DELETE", "/v3/routes/"+rt.GUID+"/destinations/"+aGUID, nil, 422, "CF-UnprocessableEntity",
		"Unable to unmap route from destination. Ensure the route has a destination with this guid.")
	var route map[string]json.RawMessage
	e.mustJSON("GET", "/v3/routes/"+rt.GUID, nil, 200, &route)
	if string(route["destinations"]) != "[]" {
		t.Errorf("destinations after unmap: %s", route["destinations"])
	}
}
