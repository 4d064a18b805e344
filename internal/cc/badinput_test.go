package cc

import (
	"bytes"
	"testing"
)

// testBadInput: bad query parameters, unknown guids and malformed bodies
// get a 4xx in CC's format, and nothing stored changes.
func testBadInput(t *testing.T, e *env) {
	a := e.createApp("keep")
	snapshot := func() [][]byte {
		var out [][]byte
		for _, p := range []string{"/v3/organizations", "/v3/spaces", "/v3/domains", "/v3/apps/" + a.GUID,
			"/v3/apps/" + a.GUID + "/environment_variables", "/v3/apps/" + a.GUID + "/relationships/current_droplet"} {
			code, _, data := e.do("GET", p, nil)
			if code != 200 {
				t.Fatalf("GET %s: %d %s", p, code, data)
			}
			out = append(out, data)
		}
		return out
	}
	before := snapshot()

	for _, list := range []string{"/v3/organizations", "/v3/spaces", "/v3/domains", "/v3/organizations/" + e.org + "/domains"} {
		for _, q := range []string{"per_page=abc", "per_page=100000", "per_page=0", "per_page=-1"} {
			e.wantError("GET", list+"?"+q, nil, 400, "CF-BadQueryParameter", "The query parameter is invalid: Per page must be between 1 and 5000")
		}
		for _, q := range []string{"page=abc", "page=0"} {
			e.wantError("GET", list+"?"+q, nil, 400, "CF-BadQueryParameter", "The query parameter is invalid: Page must be greater than 0")
		}
		e.wantError("GET", list+"?order_by=size", nil, 400, "CF-BadQueryParameter", "The query parameter is invalid: Order by can only be: 'created_at', 'updated_at', 'name'")
	}

	for p, detail := range map[string]string{
		"/v3/organizations/nope":                      "Organization not found",
		"/v3/organizations/nope/domains":              "Organization not found",
		"/v3/spaces/nope":                             "Space not found",
		"/v3/domains/nope":                            "Domain not found",
		"/v3/spaces/%00":                              "Space not found",
		"/v3/apps/nope/environment_variables":         "App not found",
		"/v3/apps/nope/relationships/current_droplet": "App not found",
	} {
		e.wantError("GET", p, nil, 404, "CF-NotFound", detail)
	}
	e.wantError("PATCH", "/v3/apps/nope/environment_variables", `{"var":{"A":"1"}}`, 404, "CF-NotFound", "App not found")
	e.wantError("PATCH", "/v3/apps/nope/relationships/current_droplet", `{"data":{"guid":"x"}}`, 404, "CF-NotFound", "App not found")
	e.wantError("PATCH", "/v3/apps/nope", `{"name":"x"}`, 404, "CF-NotFound", "App not found")

	for _, bad := range []string{`{"name":`, `[]`, `{"name": 3}`, `{"name":"x"} trailing`} {
		e.wantError("POST", "/v3/organizations", bad, 400, "CF-MessageParseError", "Request invalid due to parse error: …")
		e.wantError("POST", "/v3/spaces", bad, 400, "CF-MessageParseError", "Request invalid due to parse error: …")
		e.wantError("PATCH", "/v3/apps/"+a.GUID, bad, 400, "CF-MessageParseError", "Request invalid due to parse error: …")
	}
	e.wantError("PATCH", "/v3/apps/"+a.GUID+"/environment_variables", `{"var":`, 400, "CF-MessageParseError", "Request invalid due to parse error: …")
	e.wantError("PATCH", "/v3/apps/"+a.GUID+"/environment_variables", `{"var":{"A":1}}`, 400, "CF-MessageParseError", "Request invalid due to parse error: …")
	e.wantError("PATCH", "/v3/apps/"+a.GUID+"/relationships/current_droplet", `{"data":`, 400, "CF-MessageParseError", "Request invalid due to parse error: …")
	e.wantError("PATCH", "/v3/apps/"+a.GUID+"/relationships/current_droplet", `{"data":{"guid":"nope"}}`, 422, "CF-UnprocessableEntity",
		"Unable to assign current droplet. Ensure the droplet exists and belongs to this app.")
	e.wantError("POST", "/v3/spaces", `{"name":"s","relationships":{"organization":{"data":{"guid":"nope"}}}}`, 422, "CF-UnprocessableEntity",
		"Invalid organization. Ensure the organization exists and you have access to it.")

	after := snapshot()
	for i := range before {
		if !bytes.Equal(before[i], after[i]) {
			t.Errorf("bad input changed what is stored:\nbefore %s\nafter  %s", before[i], after[i])
		}
	}
}
