package cc

// Replays of the stock cf CLI v8's HTTP conversations (cf-cli-v8.md §5)
// against the real Cloud Controller (a fake BBS plays Diego, the test
// plays the cell). Each test sends what the CLI sends, with its headers
// and query strings, and checks every field, status and error text the
// CLI reads, by JSON path on the raw answer (a typed decode would let a
// missing key pass).

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/lifecycle"
	"github.com/minicf/minicf/internal/mbus"
)

const (
	cfTestPassword     = "s3cret-admin-password"
	cfTestClient       = "minicf-admin"
	cfTestClientSecret = "s3cret-client-secret"
	cfUserAgent        = "cf/8.18.4+0f1c2a3.2025-01-01 (go1.26.8; amd64 linux)"
)

// newCFEnv is a CC whose links follow the request's Host (so Location and
// pagination URLs reach the test server, as they reach the cf CLI), with
// an admin user and a client, and a token from the password grant.
func newCFEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, testSQLiteDSN(t), func(c *Config) {
		c.ExternalURL = ""
		c.Users = map[string]string{"admin": cfTestPassword}
		c.Clients = map[string]string{cfTestClient: cfTestClientSecret}
	})
	tok := e.tokenGrant(url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {cfTestPassword}}, "cf", "")
	tok.want(t, 200)
	e.token = tok.str(t, "access_token")
	return e
}

// cfCall is one answer, with its body decoded as the CLI decodes it
// (UseNumber).
type cfCall struct {
	what   string
	status int
	header http.Header
	body   []byte
	doc    any
}

// cf sends a request as the cf CLI does: bearer token, JSON accept and
// content type (on GETs too), its User-Agent. body: JSON unless string or
// []byte; hdr overrides headers.
func (e *env) cf(method, path string, body any, hdr ...string) cfCall {
	e.t.Helper()
	h := append([]string{"Accept", "application/json", "User-Agent", cfUserAgent,
		"X-B3-Traceid", "0123456789abcdef0123456789abcdef", "X-B3-Spanid", "0123456789abcdef"}, hdr...)
	code, header, data := e.do(method, path, body, h...)
	c := cfCall{what: method + " " + path, status: code, header: header, body: data}
	if len(bytes.TrimSpace(data)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		dec.Decode(&c.doc)
	}
	return c
}

// tokenGrant posts a form to /oauth/token with HTTP Basic client:secret
// (client "" sends no Basic header).
func (e *env) tokenGrant(form url.Values, client, secret string) cfCall {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.base+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", cfUserAgent)
	if client != "" {
		req.SetBasicAuth(client, secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	c := cfCall{what: "POST /oauth/token " + form.Get("grant_type"), status: resp.StatusCode, header: resp.Header, body: data}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.Decode(&c.doc)
	return c
}

func (c cfCall) want(t *testing.T, status int) cfCall {
	t.Helper()
	if c.status != status {
		t.Fatalf("%s: status %d, want %d: %s", c.what, c.status, status, c.body)
	}
	return c
}

// get follows a dotted path ("resources.0.guid"); ok is false when a key
// is missing.
func (c cfCall) get(path string) (any, bool) { return jsonPath(c.doc, path) }

func jsonPath(v any, path string) (any, bool) {
	if path == "" {
		return v, true
	}
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[k]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// str is the string at path (it must be one).
func (c cfCall) str(t *testing.T, path string) string {
	t.Helper()
	v, ok := c.get(path)
	s, isStr := v.(string)
	if !ok || !isStr {
		t.Fatalf("%s: %s = %#v (present %v), want a string: %s", c.what, path, v, ok, c.body)
	}
	return s
}

// num is the number at path.
func (c cfCall) num(t *testing.T, path string) int64 {
	t.Helper()
	v, ok := c.get(path)
	n, isNum := v.(json.Number)
	if !ok || !isNum {
		t.Fatalf("%s: %s = %#v, want a number: %s", c.what, path, v, c.body)
	}
	i, err := n.Int64()
	if err != nil {
		f, _ := n.Float64()
		i = int64(f)
	}
	return i
}

// list is the array at path (present; JSON null is an empty list, as the
// cf CLI tolerates it only for resources).
func (c cfCall) list(t *testing.T, path string) []any {
	t.Helper()
	v, ok := c.get(path)
	l, isList := v.([]any)
	if !ok || !isList {
		t.Fatalf("%s: %s = %#v (present %v), want a list: %s", c.what, path, v, ok, c.body)
	}
	return l
}

// isNull checks that path is present and null.
func (c cfCall) isNull(t *testing.T, path string) {
	t.Helper()
	if v, ok := c.get(path); !ok || v != nil {
		t.Fatalf("%s: %s = %#v (present %v), want null: %s", c.what, path, v, ok, c.body)
	}
}

func (c cfCall) eq(t *testing.T, path, want string) {
	t.Helper()
	if got := c.str(t, path); got != want {
		t.Fatalf("%s: %s = %q, want %q", c.what, path, got, want)
	}
}

// ccError checks a CC error body: status, and detail exactly (or the
// detail containing contains, when given with a leading "~").
func (c cfCall) ccError(t *testing.T, status int, title string, code int64, detail string) {
	t.Helper()
	c.want(t, status)
	if n := len(c.list(t, "errors")); n != 1 {
		t.Fatalf("%s: %d errors: %s", c.what, n, c.body)
	}
	if got := c.str(t, "errors.0.title"); got != title {
		t.Errorf("%s: title %q, want %q", c.what, got, title)
	}
	if got := c.num(t, "errors.0.code"); code != 0 && got != code {
		t.Errorf("%s: code %d, want %d", c.what, got, code)
	}
	got := c.str(t, "errors.0.detail")
	if strings.HasPrefix(detail, "~") {
		if !strings.Contains(got, detail[1:]) {
			t.Errorf("%s: detail %q does not contain %q", c.what, got, detail[1:])
		}
	} else if got != detail {
		t.Errorf("%s: detail %q, want %q", c.what, got, detail)
	}
}

// paginated checks the list envelope the CLI decodes and returns the
// resources.
func (c cfCall) paginated(t *testing.T) []any {
	t.Helper()
	c.want(t, 200)
	if _, ok := c.get("pagination"); !ok {
		t.Fatalf("%s: no pagination: %s", c.what, c.body)
	}
	if _, ok := c.get("pagination.next"); !ok {
		t.Fatalf("%s: no pagination.next: %s", c.what, c.body)
	}
	return c.list(t, "resources")
}

// job follows a 202's Location (absolute, used verbatim) and returns the
// job.
func (e *env) followJob(t *testing.T, c cfCall) cfCall {
	t.Helper()
	c.want(t, 202)
	loc := c.header.Get("Location")
	if !strings.HasPrefix(loc, e.base+"/v3/jobs/") {
		t.Fatalf("%s: Location %q is not an absolute job URL under %s", c.what, loc, e.base)
	}
	j := e.cf("GET", loc, nil).want(t, 200)
	j.str(t, "guid")
	j.list(t, "errors")
	j.list(t, "warnings")
	return j
}

// ids are the guids the bootstrap sequence finds: the org, the space and
// the shared domain.
type cfIDs struct{ org, space, domain string }

func (e *env) target(t *testing.T) cfIDs {
	t.Helper()
	orgs := e.cf("GET", "/v3/organizations?names=minicf&page=1&per_page=1", nil)
	if n := len(orgs.paginated(t)); n != 1 {
		t.Fatalf("orgs: %d", n)
	}
	spaces := e.cf("GET", "/v3/spaces?names=dev&organization_guids="+orgs.str(t, "resources.0.guid")+"&page=1&per_page=1", nil)
	if n := len(spaces.paginated(t)); n != 1 {
		t.Fatalf("spaces: %d", n)
	}
	doms := e.cf("GET", "/v3/domains?names=apps.localhost&page=1&per_page=1", nil)
	if n := len(doms.paginated(t)); n != 1 {
		t.Fatalf("domains: %d", n)
	}
	return cfIDs{orgs.str(t, "resources.0.guid"), spaces.str(t, "resources.0.guid"), doms.str(t, "resources.0.guid")}
}

// applyManifest posts a manifest as cf push does and waits for its job.
func (e *env) cfApplyManifest(t *testing.T, space, yaml string) cfCall {
	t.Helper()
	return e.followJob(t, e.cf("POST", "/v3/spaces/"+space+"/actions/apply_manifest", yaml, "Content-Type", "application/x-yaml"))
}

// appByName is GET /v3/apps?names=N&space_guids=S's single app.
func (e *env) cfAppByName(t *testing.T, ids cfIDs, name string) cfCall {
	t.Helper()
	c := e.cf("GET", "/v3/apps?names="+url.QueryEscape(name)+"&space_guids="+ids.space, nil)
	if n := len(c.paginated(t)); n != 1 {
		t.Fatalf("apps named %s: %d", name, n)
	}
	return c
}

// ---------------------------------------------------------------------------

func TestCFCLI_Api(t *testing.T) {
	t.Parallel()
	e := newCFEnv(t)
	// cf api: GET / without a token.
	root := e.cf("GET", "/", nil, "Authorization", "").want(t, 200)
	version := root.str(t, "links.cloud_controller_v3.meta.version")
	if !semverIn(version, "3.183.0", "3.211.0") {
		t.Errorf("API version %q is not semver in [3.183.0, 3.211.0)", version)
	}
	for _, k := range []string{"self", "login", "uaa", "log_cache"} {
		root.eq(t, "links."+k+".href", e.base)
	}
	root.eq(t, "links.cloud_controller_v3.href", e.base+"/v3")
	for _, k := range []string{"cloud_controller_v2", "routing", "network_policy_v1", "logging", "app_ssh"} {
		root.isNull(t, "links."+k)
	}
	if v, ok := root.get("cf_on_k8s"); ok && v != false {
		t.Errorf("cf_on_k8s = %v", v)
	}
	// An unknown path: exactly CC's body (→ "API endpoint not found").
	for _, p := range []string{"/v3/nothing", "/v2/info", "/v3/apps/x/nothing"} {
		c := e.cf("GET", p, nil).want(t, 404)
		var got, want any
		json.Unmarshal(c.body, &got)
		json.Unmarshal([]byte(`{"errors":[{"detail":"Unknown request","title":"CF-NotFound","code":10000}]}`), &want)
		if !jsonEqual(got, want) {
			t.Errorf("GET %s: %s", p, c.body)
		}
	}
	// A token that is no JWT: 401 CF-InvalidAuthToken (the CLI's
	// InvalidAuthTokenError).
	e.cf("GET", "/v3/apps", nil, "Authorization", "bearer not-a-jwt").ccError(t, 401, "CF-InvalidAuthToken", 1000, "~Invalid Auth Token")
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// semverIn reports whether v is MAJOR.MINOR.PATCH with lo <= v < hi.
func semverIn(v, lo, hi string) bool {
	parse := func(s string) ([3]int, bool) {
		var out [3]int
		parts := strings.Split(s, ".")
		if len(parts) != 3 {
			return out, false
		}
		for i, p := range parts {
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 || (len(p) > 1 && p[0] == '0') {
				return out, false
			}
			out[i] = n
		}
		return out, true
	}
	less := func(a, b [3]int) bool {
		for i := range a {
			if a[i] != b[i] {
				return a[i] < b[i]
			}
		}
		return false
	}
	x, ok := parse(v)
	l, _ := parse(lo)
	h, _ := parse(hi)
	return ok && !less(x, l) && less(x, h)
}

// jwtParts decodes a JWT's header and claims (UseNumber), checking it is
// three base64url parts.
func jwtParts(t *testing.T, tok string) (map[string]any, map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[2] == "" {
		t.Fatalf("token %q is not three dot-separated parts", tok)
	}
	dec := func(s string) map[string]any {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("token part %q is not base64url: %v", s, err)
		}
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			t.Fatalf("token part is not JSON: %v", err)
		}
		return m
	}
	return dec(parts[0]), dec(parts[1])
}

// checkAccessToken checks what decodeUserFromJWT and the refresh wrapper
// read (cf-cli-v8.md §4.2).
func checkAccessToken(t *testing.T, e *env, tok string, user string) map[string]any {
	t.Helper()
	header, claims := jwtParts(t, tok)
	if header["alg"] != "HS256" {
		t.Errorf("alg %v", header["alg"])
	}
	str := []string{"jti", "client_id", "cid", "iss"}
	if user != "" {
		str = append(str, "user_name", "user_id", "origin")
	} else if _, ok := claims["user_name"]; ok {
		t.Errorf("a client token has user_name %v", claims["user_name"])
	}
	for _, k := range str {
		if s, ok := claims[k].(string); !ok || s == "" {
			t.Errorf("claim %s = %#v, want a non-empty string", k, claims[k])
		}
	}
	if user != "" && claims["user_name"] != user {
		t.Errorf("user_name %v, want %s", claims["user_name"], user)
	}
	for _, k := range []string{"scope", "aud"} {
		if _, ok := claims[k].([]any); !ok {
			t.Errorf("claim %s = %#v, want a list", k, claims[k])
		}
	}
	now := e.clock.Now().Unix()
	for _, k := range []string{"iat", "exp"} {
		if _, ok := claims[k].(json.Number); !ok {
			t.Fatalf("claim %s = %#v, want a number", k, claims[k])
		}
	}
	exp, _ := claims["exp"].(json.Number).Int64()
	if exp <= now+60 {
		t.Errorf("exp %d is not more than 60 s after now (%d): the CLI would refresh before every request", exp, now)
	}
	return claims
}

func TestCFCLI_Auth(t *testing.T) {
	t.Parallel()
	e := newCFEnv(t)
	bad := func(c cfCall) {
		t.Helper()
		c.want(t, 401)
		var got map[string]any
		json.Unmarshal(c.body, &got)
		if !jsonEqual(got, map[string]any{"error": "unauthorized", "error_description": "Bad credentials"}) {
			t.Errorf("%s: %s, want UAA's Bad credentials", c.what, c.body)
		}
	}
	password := func(user, pass string) url.Values {
		return url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass}}
	}

	// cf auth admin PASSWORD: password grant, Basic cf: (empty secret).
	tok := e.tokenGrant(password("admin", cfTestPassword), "cf", "").want(t, 200)
	tok.eq(t, "token_type", "bearer")
	access, refresh := tok.str(t, "access_token"), tok.str(t, "refresh_token")
	claims := checkAccessToken(t, e, access, "admin")
	if claims["origin"] != "uaa" || claims["client_id"] != "cf" {
		t.Errorf("claims %v", claims)
	}
	if tok.num(t, "expires_in") < 60 {
		t.Errorf("expires_in %d", tok.num(t, "expires_in"))
	}
	if tok.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", tok.header.Get("Cache-Control"))
	}
	// The token works (cf target's first call), under either case of the
	// scheme.
	for _, scheme := range []string{"bearer ", "Bearer "} {
		e.cf("GET", "/v3/organizations?names=minicf&page=1&per_page=1", nil, "Authorization", scheme+access).want(t, 200)
	}
	// client_id in the form instead of Basic works too.
	form := password("admin", cfTestPassword)
	form.Set("client_id", "cf")
	e.tokenGrant(form, "", "").want(t, 200)

	// Bad credentials: wrong password, unknown user, another client.
	bad(e.tokenGrant(password("admin", "wrong"), "cf", ""))
	bad(e.tokenGrant(password("nobody", cfTestPassword), "cf", ""))
	bad(e.tokenGrant(password("admin", cfTestPassword), "cf", "x"))
	bad(e.tokenGrant(password("admin", cfTestPassword), cfTestClient, cfTestClientSecret))
	e.tokenGrant(url.Values{"grant_type": {"implicit"}}, "cf", "").want(t, 400)

	// The refresh token is real: signed, long-lived, no access token.
	_, rclaims := jwtParts(t, refresh)
	rexp, _ := rclaims["exp"].(json.Number).Int64()
	if aexp, _ := claims["exp"].(json.Number).Int64(); rexp <= aexp {
		t.Errorf("refresh token exp %d is not after the access token's %d", rexp, aexp)
	}
	e.cf("GET", "/v3/apps", nil, "Authorization", "bearer "+refresh).ccError(t, 401, "CF-InvalidAuthToken", 1000, "~refresh token")

	// Two hours on, the access token has expired (401 CF-InvalidAuthToken,
	// which makes the CLI refresh; it refreshes anyway under 60 s left).
	e.clock.Add(AccessTokenTTL + time.Minute)
	e.cf("GET", "/v3/apps", nil, "Authorization", "bearer "+access).ccError(t, 401, "CF-InvalidAuthToken", 1000, "~expired")
	ref := e.tokenGrant(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, "cf", "").want(t, 200)
	ref.eq(t, "token_type", "bearer") // the CLI stores token_type + " " + access_token
	ref.str(t, "refresh_token")
	access2 := ref.str(t, "access_token")
	checkAccessToken(t, e, access2, "admin")
	e.cf("GET", "/v3/apps", nil, "Authorization", ref.str(t, "token_type")+" "+access2).want(t, 200)
	// An access token is no refresh token; garbage neither.
	for _, r := range []string{access2, "garbage"} {
		c := e.tokenGrant(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r}}, "cf", "").want(t, 401)
		if s, _ := c.get("error"); s != "invalid_token" {
			t.Errorf("refresh with %.10s…: %s", r, c.body)
		}
	}

	// cf auth ID SECRET --client-credentials: no Basic, form fields.
	cc := e.tokenGrant(url.Values{"client_id": {cfTestClient}, "client_secret": {cfTestClientSecret}, "grant_type": {"client_credentials"}}, "", "").want(t, 200)
	cc.eq(t, "token_type", "bearer")
	cclaims := checkAccessToken(t, e, cc.str(t, "access_token"), "")
	if cclaims["client_id"] != cfTestClient {
		t.Errorf("client token client_id %v", cclaims["client_id"])
	}
	e.cf("GET", "/v3/spaces?order_by=name", nil, "Authorization", "bearer "+cc.str(t, "access_token")).want(t, 200)
	bad(e.tokenGrant(url.Values{"client_id": {cfTestClient}, "client_secret": {"wrong"}, "grant_type": {"client_credentials"}}, "", ""))
	bad(e.tokenGrant(url.Values{"client_id": {"cf"}, "client_secret": {""}, "grant_type": {"client_credentials"}}, "", ""))

	// cf login: GET <login>/login for the prompts and UAA's version.
	login := e.cf("GET", "/login", nil, "Authorization", "").want(t, 200)
	if p := login.list(t, "prompts.username"); len(p) != 2 || p[0] != "text" {
		t.Errorf("username prompt %v", p)
	}
	if p := login.list(t, "prompts.password"); len(p) != 2 || p[0] != "password" {
		t.Errorf("password prompt %v", p)
	}
	if v := login.str(t, "app.version"); !semverIn(v, "4.0.0", "1000.0.0") {
		t.Errorf("UAA version %q", v)
	}
}

func TestCFCLI_Target(t *testing.T) {
	t.Parallel()
	e := newCFEnv(t)
	// cf target -o minicf -s dev.
	orgs := e.cf("GET", "/v3/organizations?names=minicf&page=1&per_page=1", nil)
	if n := len(orgs.paginated(t)); n != 1 {
		t.Fatalf("%d orgs", n)
	}
	orgs.eq(t, "resources.0.name", "minicf")
	org := orgs.str(t, "resources.0.guid")
	if v, _ := orgs.get("resources.0.suspended"); v != false {
		t.Errorf("suspended %v", v)
	}
	if _, ok := orgs.get("resources.0.relationships.quota.data"); !ok {
		t.Errorf("no relationships.quota.data: %s", orgs.body)
	}
	spaces := e.cf("GET", "/v3/spaces?names=dev&organization_guids="+org+"&page=1&per_page=1", nil)
	if n := len(spaces.paginated(t)); n != 1 {
		t.Fatalf("%d spaces", n)
	}
	spaces.eq(t, "resources.0.name", "dev")
	spaces.eq(t, "resources.0.relationships.organization.data.guid", org)
	spaces.str(t, "resources.0.guid")
	// Names that do not exist: an empty list (the CLI: "Organization 'x' not found").
	if n := len(e.cf("GET", "/v3/organizations?names=nope&page=1&per_page=1", nil).paginated(t)); n != 0 {
		t.Errorf("org nope: %d", n)
	}
	if n := len(e.cf("GET", "/v3/spaces?names=nope&organization_guids="+org+"&page=1&per_page=1", nil).paginated(t)); n != 0 {
		t.Errorf("space nope: %d", n)
	}
	// -o alone, and cf login: ordered lists to auto-target.
	if n := len(e.cf("GET", "/v3/spaces?organization_guids="+org, nil).paginated(t)); n != 1 {
		t.Errorf("spaces of the org: %d", n)
	}
	e.cf("GET", "/v3/organizations?order_by=name", nil).paginated(t)
	e.cf("GET", "/v3/spaces?order_by=name&organization_guids="+org, nil).paginated(t)
	// GET /v3/organizations/:guid and its domains (cf domains).
	e.cf("GET", "/v3/organizations/"+org, nil).want(t, 200).eq(t, "name", "minicf")
	doms := e.cf("GET", "/v3/organizations/"+org+"/domains", nil)
	if l := doms.paginated(t); len(l) != 1 {
		t.Fatalf("org domains: %s", doms.body)
	}
	doms.eq(t, "resources.0.name", "apps.localhost")
	e.cf("GET", "/v3/organizations/"+org+"/domains/default", nil).want(t, 200).eq(t, "name", "apps.localhost")

	// Pagination: next is absolute and the CLI follows it verbatim.
	e.cf("POST", "/v3/organizations", map[string]string{"name": "zorg"}).want(t, 201)
	page1 := e.cf("GET", "/v3/organizations?order_by=name&per_page=1", nil)
	if n := len(page1.paginated(t)); n != 1 {
		t.Fatalf("page 1: %d", n)
	}
	next := page1.str(t, "pagination.next.href")
	if !strings.HasPrefix(next, e.base+"/v3/organizations?") {
		t.Fatalf("next %q is not absolute", next)
	}
	page2 := e.cf("GET", next, nil)
	page2.paginated(t)
	page2.eq(t, "resources.0.name", "zorg")
	page2.isNull(t, "pagination.next")
}

func TestCFCLI_CreateRoute(t *testing.T) {
	t.Parallel()
	e := newCFEnv(t)
	ids := e.target(t)
	// cf create-route apps.localhost --hostname h1 [--path /foo]
	doms := e.cf("GET", "/v3/domains?names=apps.localhost&page=1&per_page=1", nil)
	doms.paginated(t)
	doms.eq(t, "resources.0.name", "apps.localhost")
	if p := doms.list(t, "resources.0.supported_protocols"); len(p) != 1 || p[0] != "http" {
		t.Errorf("supported_protocols %v", p)
	}
	doms.isNull(t, "resources.0.relationships.organization.data") // shared
	if v, ok := doms.get("resources.0.internal"); !ok || v != false {
		t.Errorf("internal %v", v)
	}
	if v, ok := doms.get("resources.0.router_group"); ok && v != nil {
		if _, ok := jsonPath(v, "guid"); !ok {
			t.Errorf("router_group %v", v)
		}
	}
	create := func(host, path string) cfCall {
		body := map[string]any{"host": host, "relationships": map[string]any{
			"space": map[string]any{"data": map[string]string{"guid": ids.space}}, "domain": map[string]any{"data": map[string]string{"guid": ids.domain}}}}
		if path != "" {
			body["path"] = path
		}
		return e.cf("POST", "/v3/routes", body)
	}
	r := create("h1", "").want(t, 201)
	r.eq(t, "url", "h1.apps.localhost")
	r.eq(t, "host", "h1")
	r.eq(t, "path", "")
	r.eq(t, "protocol", "http")
	r.eq(t, "relationships.space.data.guid", ids.space)
	r.eq(t, "relationships.domain.data.guid", ids.domain)
	if l := r.list(t, "destinations"); len(l) != 0 {
		t.Errorf("destinations %v", l)
	}
	create("h2", "/foo").want(t, 201).eq(t, "url", "h2.apps.localhost/foo")
	// A duplicate: 422 "Route already exists…" (the CLI: warning + OK).
	create("h1", "").ccError(t, 422, "CF-UnprocessableEntity", 0, "Route already exists with host 'h1' for domain 'apps.localhost'.")
	create("H1", "").ccError(t, 422, "CF-UnprocessableEntity", 0, "~Route already exists")
	create("h2", "/foo").ccError(t, 422, "CF-UnprocessableEntity", 0, "Route already exists with host 'h2' and path '/foo' for domain 'apps.localhost'.")
	// cf check-route.
	e.cf("GET", "/v3/domains/"+ids.domain+"/route_reservations?host=h1", nil).want(t, 200)
}

// mapRouteLookup is steps 1–3 of map-route and unmap-route.
func (e *env) mapRouteLookup(t *testing.T, ids cfIDs, app, host, path string) (appGUID string, routes cfCall) {
	t.Helper()
	e.cf("GET", "/v3/domains?names=apps.localhost&page=1&per_page=1", nil).paginated(t)
	a := e.cfAppByName(t, ids, app)
	routes = e.cf("GET", "/v3/routes?domain_guids="+ids.domain+"&hosts="+host+"&paths="+url.QueryEscape(path)+"&page=1&per_page=1", nil)
	routes.paginated(t)
	return a.str(t, "resources.0.guid"), routes
}

func TestCFCLI_MapRoute(t *testing.T) {
	t.Parallel()
	e := newCFEnv(t)
	ids := e.target(t)
	e.createApp("myapp")
	// A route with the same host and a path must not match paths= (empty).
	e.createRoute("h1", "/other")

	// cf map-route myapp apps.localhost --hostname h1: no route yet.
	app, routes := e.mapRouteLookup(t, ids, "myapp", "h1", "")
	if n := len(routes.list(t, "resources")); n != 0 {
		t.Fatalf("paths= matched %d routes (the empty path only): %s", n, routes.body)
	}
	e.cf("GET", "/v3/domains?names=apps.localhost&page=1&per_page=1", nil).paginated(t)
	rt := e.cf("POST", "/v3/routes", map[string]any{"host": "h1", "relationships": map[string]any{
		"space": map[string]any{"data": map[string]string{"guid": ids.space}}, "domain": map[string]any{"data": map[string]string{"guid": ids.domain}}}}).want(t, 201)
	route := rt.str(t, "guid")
	e.cf("POST", "/v3/routes/"+route+"/destinations", map[string]any{"destinations": []any{map[string]any{"app": map[string]string{"guid": app}}}}).want(t, 200)

	// Again: the route is found with its destination embedded (the CLI
	// then says "already mapped").
	_, routes = e.mapRouteLookup(t, ids, "myapp", "h1", "")
	if n := len(routes.list(t, "resources")); n != 1 {
		t.Fatalf("routes: %s", routes.body)
	}
	routes.eq(t, "resources.0.guid", route)
	routes.eq(t, "resources.0.destinations.0.app.guid", app)
	routes.eq(t, "resources.0.destinations.0.app.process.type", "web")
	routes.str(t, "resources.0.destinations.0.guid")
	routes.eq(t, "resources.0.destinations.0.protocol", "http1")
	if p := routes.num(t, "resources.0.destinations.0.port"); p != 8080 {
		t.Errorf("port %d", p)
	}

	// With a path, --app-protocol http2 and --destination-port.
	_, routes = e.mapRouteLookup(t, ids, "myapp", "h1", "/other")
	routes.eq(t, "resources.0.path", "/other")
	other := routes.str(t, "resources.0.guid")
	if n := len(routes.list(t, "resources.0.destinations")); n != 0 {
		t.Fatalf("other: %s", routes.body)
	}
	e.cf("POST", "/v3/routes/"+other+"/destinations", map[string]any{"destinations": []any{
		map[string]any{"app": map[string]string{"guid": app}, "protocol": "http2", "port": 9000}}}).want(t, 200)
	_, routes = e.mapRouteLookup(t, ids, "myapp", "h1", "/other")
	routes.eq(t, "resources.0.destinations.0.protocol", "http2")
	if p := routes.num(t, "resources.0.destinations.0.port"); p != 9000 {
		t.Errorf("port %d", p)
	}

	// An unknown app name: an empty list (the CLI: "App 'x' not found").
	if n := len(e.cf("GET", "/v3/apps?names=nope&space_guids="+ids.space, nil).paginated(t)); n != 0 {
		t.Errorf("app nope: %d", n)
	}
}

func TestCFCLI_UnmapRoute(t *testing.T) {
	t.Parallel()
	e := newCFEnv(t)
	ids := e.target(t)
	a := e.createApp("myapp")
	rt := e.createRoute("h1", "")
	e.mapRoute(rt.GUID, a.GUID)

	// cf unmap-route myapp apps.localhost --hostname h1.
	app, routes := e.mapRouteLookup(t, ids, "myapp", "h1", "")
	if app != a.GUID {
		t.Fatal(app)
	}
	dest := routes.str(t, "resources.0.destinations.0.guid")
	c := e.cf("DELETE", "/v3/routes/"+rt.GUID+"/destinations/"+dest, nil).want(t, 204)
	if len(c.body) != 0 {
		t.Errorf("204 with a body: %s", c.body)
	}
	_, routes = e.mapRouteLookup(t, ids, "myapp", "h1", "")
	if n := len(routes.list(t, "resources.0.destinations")); n != 0 {
		t.Errorf("destinations after unmap: %s", routes.body)
	}
	// The route stays (unmap is not delete).
	e.cf("GET", "/v3/routes/"+rt.GUID, nil).want(t, 200)
	// Unmapping again: the destination is gone.
	e.cf("DELETE", "/v3/routes/"+rt.GUID+"/destinations/"+dest, nil).ccError(t, 422, "CF-UnprocessableEntity", 0, "~Unable to unmap route from destination")
}

func TestCFCLI_Routes(t *testing.T) {
	t.Parallel()
	e := newCFEnv(t)
	ids := e.target(t)
	a := e.createApp("myapp")
	r1 := e.createRoute("myapp", "")
	e.mapRoute(r1.GUID, a.GUID)
	r2 := e.createRoute("h2", "/foo")

	// cf routes.
	routes := e.cf("GET", "/v3/routes?space_guids="+ids.space+"&per_page=5000", nil)
	res := routes.paginated(t)
	if len(res) != 2 {
		t.Fatalf("routes: %s", routes.body)
	}
	byGUID := map[string]any{}
	for _, r := range res {
		g, _ := jsonPath(r, "guid")
		byGUID[g.(string)] = r
	}
	for guid, want := range map[string][3]string{r1.GUID: {"myapp", "", "myapp.apps.localhost"}, r2.GUID: {"h2", "/foo", "h2.apps.localhost/foo"}} {
		r := cfCall{what: "route " + guid, doc: byGUID[guid], body: routes.body}
		r.eq(t, "host", want[0])
		r.eq(t, "path", want[1])
		r.eq(t, "url", want[2]) // the domain column is url minus host and path
		r.eq(t, "protocol", "http")
		r.eq(t, "relationships.space.data.guid", ids.space)
		r.eq(t, "relationships.domain.data.guid", ids.domain)
		if _, ok := r.get("options"); !ok {
			t.Errorf("route %s has no options", guid)
		}
		if _, ok := r.get("port"); !ok {
			t.Errorf("route %s has no port", guid)
		}
	}
	mapped := cfCall{what: "route 1", doc: byGUID[r1.GUID]}
	mapped.eq(t, "destinations.0.app.guid", a.GUID)
	mapped.eq(t, "destinations.0.protocol", "http1")
	mapped.num(t, "destinations.0.port")

	spaces := e.cf("GET", "/v3/spaces?guids="+ids.space, nil)
	spaces.paginated(t)
	spaces.eq(t, "resources.0.name", "dev")
	apps := e.cf("GET", "/v3/apps?guids="+a.GUID, nil)
	if n := len(apps.paginated(t)); n != 1 {
		t.Fatalf("apps?guids: %s", apps.body)
	}
	apps.eq(t, "resources.0.name", "myapp")
	// Required even though minicf has no services: an empty list.
	srb := e.cf("GET", "/v3/service_route_bindings?include=service_instance&route_guids="+r1.GUID+","+r2.GUID, nil)
	if n := len(srb.paginated(t)); n != 0 {
		t.Errorf("service_route_bindings: %s", srb.body)
	}
	// --org-level.
	if n := len(e.cf("GET", "/v3/routes?organization_guids="+ids.org+"&per_page=5000", nil).paginated(t)); n != 2 {
		t.Errorf("org-level routes: %d", n)
	}
}

func TestCFCLI_Apps(t *testing.T) {
	t.Parallel()
	e := newCFEnv(t)
	ids := e.target(t)
	// No apps yet: resources is [], not missing.
	if n := len(e.cf("GET", "/v3/apps?order_by=name&per_page=5000&space_guids="+ids.space, nil).paginated(t)); n != 0 {
		t.Fatalf("apps: %d", n)
	}
	zeta, web, rt := e.startedApp("zeta")
	alpha := e.createApp("alpha")
	e.mustJSON("POST", "/v3/processes/"+web.GUID+"/actions/scale", map[string]int{"instances": 2}, 202, nil)
	lrp := e.lrpGUIDOf(zeta.GUID)
	e.bbs.mu.Lock()
	e.bbs.actual = []*bbs.ActualLRP{{ActualLRPKey: bbs.ActualLRPKey{ProcessGUID: lrp, Index: 0, Domain: "cf-apps"}, State: bbs.StateRunning, Since: e.clock.Now().UnixNano()}}
	e.bbs.mu.Unlock()

	// cf apps.
	apps := e.cf("GET", "/v3/apps?order_by=name&per_page=5000&space_guids="+ids.space, nil)
	res := apps.paginated(t)
	if len(res) != 2 {
		t.Fatalf("apps: %s", apps.body)
	}
	apps.eq(t, "resources.0.name", "alpha")
	apps.eq(t, "resources.0.state", "STOPPED")
	apps.eq(t, "resources.1.name", "zeta")
	apps.eq(t, "resources.1.state", "STARTED")
	apps.eq(t, "resources.1.lifecycle.type", "buildpack")
	apps.list(t, "resources.1.lifecycle.data.buildpacks")
	apps.eq(t, "resources.1.relationships.space.data.guid", ids.space)

	procs := e.cf("GET", "/v3/processes?app_guids="+alpha.GUID+","+zeta.GUID, nil)
	pres := procs.paginated(t)
	if len(pres) != 2 {
		t.Fatalf("processes: %s", procs.body)
	}
	states := map[string]string{}
	for i := range pres {
		p := cfCall{what: "process", doc: pres[i], body: procs.body}
		p.eq(t, "type", "web")
		for _, k := range []string{"instances", "memory_in_mb", "disk_in_mb", "log_rate_limit_in_bytes_per_second"} {
			p.num(t, k)
		}
		p.str(t, "health_check.type")
		p.str(t, "readiness_health_check.type")
		appGUID := p.str(t, "relationships.app.data.guid")
		// Per process: its stats.
		stats := e.cf("GET", "/v3/processes/"+p.str(t, "guid")+"/stats", nil).want(t, 200)
		var s []string
		for j := range stats.list(t, "resources") {
			st := cfCall{what: "stat", doc: stats.doc, body: stats.body}
			pre := "resources." + strconv.Itoa(j) + "."
			st.eq(t, pre+"type", "web")
			st.num(t, pre+"index")
			st.num(t, pre+"uptime")
			st.num(t, pre+"mem_quota")
			st.num(t, pre+"disk_quota")
			st.num(t, pre+"log_rate_limit")
			for _, k := range []string{"cpu", "mem", "disk"} {
				st.num(t, pre+"usage."+k)
			}
			if _, ok := st.get(pre + "details"); !ok {
				t.Errorf("no details")
			}
			if _, ok := st.get(pre + "routable"); !ok {
				t.Errorf("no routable")
			}
			s = append(s, st.str(t, pre+"state"))
		}
		states[appGUID] = strings.Join(s, ",")
	}
	// "processes" column: web:RUNNING/len(stats).
	if states[zeta.GUID] != "RUNNING,STARTING" || states[alpha.GUID] != "DOWN" {
		t.Errorf("stats states %v", states)
	}
	routes := e.cf("GET", "/v3/routes?app_guids="+alpha.GUID+","+zeta.GUID, nil)
	if n := len(routes.paginated(t)); n != 1 {
		t.Fatalf("routes: %s", routes.body)
	}
	routes.eq(t, "resources.0.guid", rt.GUID)
	routes.eq(t, "resources.0.url", "zeta.apps.localhost")
	routes.eq(t, "resources.0.destinations.0.app.guid", zeta.GUID)
}

func TestCFCLI_App(t *testing.T) {
	t.Parallel()
	e := newCFEnv(t)
	ids := e.target(t)
	e.createApp("myapp")
	// cf app myapp, before any staging.
	a := e.cfAppByName(t, ids, "myapp")
	app := a.str(t, "resources.0.guid")
	a.eq(t, "resources.0.state", "STOPPED")
	procs := e.cf("GET", "/v3/apps/"+app+"/processes", nil)
	if n := len(procs.paginated(t)); n != 1 {
		t.Fatalf("processes: %s", procs.body)
	}
	proc := procs.str(t, "resources.0.guid")
	if n := len(e.cf("GET", "/v3/processes/"+proc+"/sidecars", nil).paginated(t)); n != 0 {
		t.Errorf("sidecars: %d", n)
	}
	stats := e.cf("GET", "/v3/processes/"+proc+"/stats", nil).want(t, 200)
	if l := stats.list(t, "resources"); len(l) != 1 {
		t.Errorf("stats of a stopped app with 1 instance: %s", stats.body)
	}
	stats.eq(t, "resources.0.state", "DOWN")
	e.cf("GET", "/v3/apps/"+app+"/routes", nil).paginated(t)
	e.cf("GET", "/v3/apps/"+app+"/droplets/current", nil).ccError(t, 404, "CF-NotFound", 10000, "Droplet not found")
	deps := e.cf("GET", "/v3/deployments?app_guids="+app+"&order_by=-created_at&page=1&per_page=1&status_values=ACTIVE", nil)
	if n := len(deps.paginated(t)); n != 0 {
		t.Errorf("deployments: %d", n)
	}
	// An app that does not exist: "App not found"; a process: "Process not found".
	e.cf("GET", "/v3/apps/nope", nil).ccError(t, 404, "CF-NotFound", 10000, "App not found")
	e.cf("GET", "/v3/apps/nope/droplets/current", nil).ccError(t, 404, "CF-NotFound", 10000, "App not found")
	e.cf("GET", "/v3/processes/nope/stats", nil).ccError(t, 404, "CF-NotFound", 10000, "Process not found")

	// Staged and started: the current droplet is there.
	s, d := e.stagedApp("staged")
	cur := e.cf("GET", "/v3/apps/"+s.GUID+"/droplets/current", nil).want(t, 200)
	cur.eq(t, "guid", d.GUID)
	cur.eq(t, "state", "STAGED")
	cur.str(t, "created_at")
	cur.str(t, "stack")
	cur.list(t, "buildpacks")
	cur.eq(t, "relationships.app.data.guid", s.GUID)
}

// cliZip builds package.zip as the cf CLI does: a directory entry with
// regular-file mode bits recognised by its trailing slash, file modes in
// the external attributes, an empty file.
func cliZip(t *testing.T, files map[string]struct {
	mode fs.FileMode
	body string
}) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range sortedKeys(files) {
		f := files[name]
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		h.CreatorVersion = 3<<8 | 20 // Unix
		if strings.HasSuffix(name, "/") {
			h.ExternalAttrs = uint32(0o100755) << 16
			h.Method = zip.Store
		} else {
			h.ExternalAttrs = uint32(0o100000|f.mode.Perm()) << 16
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, f.body)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// cfUpload posts bits as the cf CLI does: field resources, then file part
// bits named package.zip, Content-Length set.
func (e *env) cfUpload(pkg string, bits []byte) cfCall {
	e.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("resources", "[]")
	w, _ := mw.CreateFormFile("bits", "package.zip")
	w.Write(bits)
	mw.Close()
	return e.cf("POST", "/v3/packages/"+pkg+"/upload", buf.Bytes(), "Content-Type", mw.FormDataContentType())
}

// runBuilder plays the cell for a staging Task: unpacks the package the
// Task downloads, runs the real builder with the Task's arguments (its
// paths moved to a temporary directory, with a go command that does not
// exist, so a `go build` would fail), uploads the droplet and posts the
// completed Task. The app chose binary_buildpack, and its files have a
// go.mod: the builder must not build it.
func (e *env) runBuilder(t *testing.T, build string) {
	t.Helper()
	def := e.bbs.task(build)
	if def == nil {
		t.Fatalf("no staging Task for build %s", build)
	}
	pkgURL, _ := url.Parse(def.Setup.From)
	code, zipData := e.internalDo("GET", pkgURL.Path, nil)
	if code != 200 {
		t.Fatalf("package download: %d", code)
	}
	dir := t.TempDir()
	zpath := filepath.Join(dir, "pkg.zip")
	os.WriteFile(zpath, zipData, 0o600)
	appDir := filepath.Join(dir, "app")
	os.Mkdir(appDir, 0o755)
	if err := unpackZip(zpath, appDir, zipLimits{maxBytes: 1 << 20, maxEntries: 100}); err != nil {
		t.Fatal(err)
	}
	cfg, err := lifecycle.ParseBuilderArgs(def.Action.Args, io.Discard)
	if err != nil {
		t.Fatalf("the builder refuses the Task's arguments %q: %v", def.Action.Args, err)
	}
	if cfg.AppDir != "/home/vcap/app" || cfg.OutputDroplet != def.Upload.From || cfg.Result != def.ResultFile {
		t.Fatalf("the Task's paths: %+v", cfg)
	}
	cfg.AppDir, cfg.OutputDroplet, cfg.Result = appDir, filepath.Join(dir, "droplet.tgz"), filepath.Join(dir, "result.json")
	cfg.Go = filepath.Join(dir, "no-go-here")
	var out bytes.Buffer
	cfg.Stdout, cfg.Stderr = &out, &out
	if _, err := lifecycle.Build(context.Background(), cfg); err != nil {
		t.Fatalf("the builder failed (a binary_buildpack push must not need go build): %v\n%s", err, out.String())
	}
	for _, want := range []string{"-----> Buildpacks chosen for the app (detection skipped): binary_buildpack\n",
		"-----> binary_buildpack does not compile", "-----> binary_buildpack: the app runs the start command given with push -c\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("builder output lacks %q:\n%s", want, out.String())
		}
	}
	droplet, _ := os.ReadFile(cfg.OutputDroplet)
	result, _ := os.ReadFile(cfg.Result)
	up, _ := url.Parse(def.Upload.To)
	if code, data := e.internalDo("PUT", up.Path, droplet); code != 201 {
		t.Fatalf("droplet upload: %d %s", code, data)
	}
	e.complete(def, &bbs.Task{TaskGUID: build, Domain: bbs.DomainCFTasks, TaskDefinition: def, State: bbs.TaskStateCompleted, Result: string(result)})
}

// setActual makes the fake BBS report the process's instances in states.
func (e *env) setActual(lrp string, states ...string) {
	e.bbs.mu.Lock()
	defer e.bbs.mu.Unlock()
	var keep []*bbs.ActualLRP
	for _, a := range e.bbs.actual {
		if a.ProcessGUID != lrp {
			keep = append(keep, a)
		}
	}
	for i, s := range states {
		keep = append(keep, &bbs.ActualLRP{ActualLRPKey: bbs.ActualLRPKey{ProcessGUID: lrp, Index: int32(i), Domain: "cf-apps"},
			ActualLRPInstanceKey: bbs.ActualLRPInstanceKey{InstanceGUID: "i-" + strconv.Itoa(i), CellID: "cell-1"},
			State:                s, Since: time.Now().UnixNano()})
	}
	e.bbs.actual = keep
}

// statesOf is the comma-joined states of a process's stats.
func (e *env) statesOf(t *testing.T, proc string) string {
	t.Helper()
	st := e.cf("GET", "/v3/processes/"+proc+"/stats", nil).want(t, 200)
	var s []string
	for i := range st.list(t, "resources") {
		s = append(s, st.str(t, "resources."+strconv.Itoa(i)+".state"))
	}
	return strings.Join(s, ",")
}

// pushBits is push after apply_manifest: resource matches, package,
// upload, build (staged by the real builder), droplet, current droplet,
// restart; it returns the app's web process guid.
func (e *env) pushBits(t *testing.T, ids cfIDs, name string) (app, proc string) {
	t.Helper()
	a := e.cfAppByName(t, ids, name)
	app = a.str(t, "resources.0.guid")
	rm := e.cf("POST", "/v3/resource_matches", map[string]any{"resources": []any{
		map[string]any{"path": "run.sh", "mode": "0755", "checksum": map[string]string{"value": "da39a3ee5e6b4b0d3255bfef95601890afd80709"}, "size_in_bytes": 20}}})
	if rm.status != 200 && rm.status != 201 {
		t.Fatalf("resource_matches: %d %s", rm.status, rm.body)
	}
	if n := len(rm.list(t, "resources")); n != 0 {
		t.Fatalf("resource_matches: %s", rm.body)
	}
	pkg := e.cf("POST", "/v3/packages", map[string]any{"type": "bits", "relationships": map[string]any{"app": map[string]any{"data": map[string]string{"guid": app}}}}).want(t, 201)
	pkg.eq(t, "state", "AWAITING_UPLOAD")
	pkg.eq(t, "type", "bits")
	pkgGUID := pkg.str(t, "guid")
	bits := cliZip(t, map[string]struct {
		mode fs.FileMode
		body string
	}{
		"run.sh":       {0o755, "#!/bin/sh\nexec sleep 1000\n"},
		"go.mod":       {0o644, "module myapp\n"}, // a prebuilt binary's module: binary_buildpack leaves it
		"sub/":         {},
		"sub/data.txt": {0o644, "data"},
		"empty.txt":    {0o644, ""},
	})
	up := e.cfUpload(pkgGUID, bits).want(t, 200)
	up.eq(t, "state", "READY") // else the CLI polls, with no timeout
	up.str(t, "created_at")
	// The kept package has the modes and the directory.
	code, _, kept := e.do("GET", "/v3/packages/"+pkgGUID+"/download", nil)
	if code != 200 {
		t.Fatalf("package download: %d", code)
	}
	zr, err := zip.NewReader(bytes.NewReader(kept), int64(len(kept)))
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]fs.FileMode{}
	for _, f := range zr.File {
		modes[f.Name] = f.Mode()
	}
	if modes["run.sh"].Perm() != 0o755 || !modes["sub/"].IsDir() || modes["sub/data.txt"].Perm() != 0o644 {
		t.Errorf("kept package modes %v", modes)
	}
	e.cf("GET", "/v3/packages/"+pkgGUID, nil).want(t, 200).eq(t, "state", "READY")

	b := e.cf("POST", "/v3/builds", map[string]any{"package": map[string]string{"guid": pkgGUID}}).want(t, 201)
	b.eq(t, "state", "STAGING")
	build := b.str(t, "guid")
	e.cfAppByName(t, ids, name) // for log streaming
	e.cf("GET", "/api/v1/info", nil).want(t, 200).eq(t, "version", "3.0.0")
	e.cf("GET", "/v3/builds/"+build, nil).want(t, 200).eq(t, "state", "STAGING")
	e.runBuilder(t, build)
	b = e.cf("GET", "/v3/builds/"+build, nil).want(t, 200)
	b.eq(t, "state", "STAGED")
	b.isNull(t, "error")
	b.eq(t, "package.guid", pkgGUID)
	droplet := b.str(t, "droplet.guid")
	b.str(t, "created_at")
	d := e.cf("GET", "/v3/droplets/"+droplet, nil).want(t, 200)
	d.eq(t, "state", "STAGED")
	d.str(t, "created_at")
	d.eq(t, "lifecycle.type", "buildpack")
	d.eq(t, "relationships.app.data.guid", app)
	d.eq(t, "buildpacks.0.name", "binary_buildpack") // cf app's buildpacks
	d.eq(t, "buildpacks.0.buildpack_name", "binary")
	e.cf("PATCH", "/v3/apps/"+app+"/relationships/current_droplet", map[string]any{"data": map[string]string{"guid": droplet}}).want(t, 200).eq(t, "data.guid", droplet)
	e.cf("POST", "/v3/apps/"+app+"/actions/restart", nil).want(t, 200).eq(t, "state", "STARTED")

	procs := e.cf("GET", "/v3/apps/"+app+"/processes", nil)
	procs.paginated(t)
	proc = procs.str(t, "resources.0.guid")
	return app, proc
}

func TestCFCLI_Push(t *testing.T) {
	t.Parallel()
	e := newCFEnv(t)
	ids := e.target(t)

	// cf push myapp -f manifest.yml (routes) with -b binary_buildpack -c
	// ./run.sh -i 2 merged in: manifest_diff first, then apply_manifest
	// with the CLI's default-route: true alongside the routes.
	manifest := `---
applications:
- name: myapp
  path: /home/someone/src/myapp
  buildpacks:
  - binary_buildpack
  command: ./run.sh
  default-route: true
  instances: 2
  memory: 64M
  routes:
  - route: myapp.apps.localhost
  - route: api.apps.localhost/v1
    protocol: http2
`
	diff := e.cf("POST", "/v3/spaces/"+ids.space+"/manifest_diff", manifest, "Content-Type", "application/x-yaml").want(t, 201)
	if l := diff.list(t, "diff"); len(l) != 0 {
		t.Errorf("diff %v", l)
	}
	e.cfApplyManifest(t, ids.space, manifest).eq(t, "state", "COMPLETE")
	a := e.cfAppByName(t, ids, "myapp")
	app := a.str(t, "resources.0.guid")
	if bps := a.list(t, "resources.0.lifecycle.data.buildpacks"); len(bps) != 1 || bps[0] != "binary_buildpack" {
		t.Errorf("buildpacks %v", bps)
	}
	web := e.cf("GET", "/v3/apps/"+app+"/processes/web", nil).want(t, 200)
	web.eq(t, "command", "./run.sh")
	if n := web.num(t, "instances"); n != 2 {
		t.Errorf("instances %d", n)
	}
	if n := web.num(t, "memory_in_mb"); n != 64 {
		t.Errorf("memory %d", n)
	}
	routes := e.cf("GET", "/v3/apps/"+app+"/routes", nil)
	var urls []string
	for i := range routes.paginated(t) {
		urls = append(urls, routes.str(t, "resources."+strconv.Itoa(i)+".url"))
	}
	// routes: given, so default-route adds nothing.
	if strings.Join(urls, " ") != "myapp.apps.localhost api.apps.localhost/v1" {
		t.Errorf("routes after apply_manifest: %v", urls)
	}

	_, proc := e.pushBits(t, ids, "myapp")
	// Stats: never empty while starting (empty = "started" to the CLI);
	// STARTING until the BBS says RUNNING.
	lrp := e.lrpGUIDOf(app)
	if got := e.statesOf(t, proc); got != "STARTING,STARTING" {
		t.Errorf("stats before the BBS has instances: %s", got)
	}
	e.setActual(lrp, bbs.StateUnclaimed, bbs.StateClaimed)
	if got := e.statesOf(t, proc); got != "STARTING,STARTING" {
		t.Errorf("stats while claimed: %s", got)
	}
	e.setActual(lrp, bbs.StateRunning, bbs.StateClaimed)
	if got := e.statesOf(t, proc); got != "RUNNING,STARTING" {
		t.Errorf("stats once one runs: %s", got)
	}
	// The push summary.
	p := e.cf("GET", "/v3/processes/"+proc, nil).want(t, 200)
	p.eq(t, "command", "./run.sh")
	p.eq(t, "relationships.app.data.guid", app)
	e.cf("GET", "/v3/apps/"+app+"/droplets/current", nil).want(t, 200).eq(t, "state", "STAGED")
	if e.bbs.lrp(lrp) == nil {
		t.Errorf("no LRP for the pushed app")
	}

	// cf push app2 -p DIR -b binary_buildpack -c ./run.sh (no manifest
	// file: no manifest_diff; default-route from the app name).
	e.cfApplyManifest(t, ids.space, "applications:\n- name: app2\n  path: /tmp/app2\n  default-route: true\n  buildpacks:\n  - binary_buildpack\n  command: ./run.sh\n").eq(t, "state", "COMPLETE")
	app2, proc2 := e.pushBits(t, ids, "app2")
	r2 := e.cf("GET", "/v3/apps/"+app2+"/routes", nil)
	if n := len(r2.paginated(t)); n != 1 {
		t.Fatalf("app2 routes: %s", r2.body)
	}
	r2.eq(t, "resources.0.url", "app2.apps.localhost")
	if got := e.statesOf(t, proc2); got != "STARTING" {
		t.Errorf("app2 stats %s", got)
	}
	// Pushing again keeps the route and adds none (default-route only when
	// the app has none); --random-route likewise; --no-route removes.
	e.cfApplyManifest(t, ids.space, "applications:\n- name: app2\n  default-route: true\n").eq(t, "state", "COMPLETE")
	e.cfApplyManifest(t, ids.space, "applications:\n- name: app2\n  random-route: true\n").eq(t, "state", "COMPLETE")
	if n := len(e.cf("GET", "/v3/apps/"+app2+"/routes", nil).paginated(t)); n != 1 {
		t.Errorf("app2 routes after repushes: %d", n)
	}
	e.cfApplyManifest(t, ids.space, "applications:\n- name: app2\n  no-route: true\n").eq(t, "state", "COMPLETE")
	if n := len(e.cf("GET", "/v3/apps/"+app2+"/routes", nil).paginated(t)); n != 0 {
		t.Errorf("app2 routes after no-route: %d", n)
	}
	e.cfApplyManifest(t, ids.space, "applications:\n- name: app3\n  random-route: true\n").eq(t, "state", "COMPLETE")
	a3 := e.cfAppByName(t, ids, "app3")
	r3 := e.cf("GET", "/v3/apps/"+a3.str(t, "resources.0.guid")+"/routes", nil)
	r3.paginated(t)
	if u := r3.str(t, "resources.0.url"); !strings.HasPrefix(u, "app3-") || !strings.HasSuffix(u, ".apps.localhost") {
		t.Errorf("random route %q", u)
	}

	// A manifest that fails while applied: a FAILED job with the reason.
	j := e.cfApplyManifest(t, ids.space, "applications:\n- name: bad\n  routes:\n  - route: x.nowhere.test\n")
	j.eq(t, "state", "FAILED")
	if d := j.str(t, "errors.0.detail"); !strings.Contains(d, "did not match any existing domains") {
		t.Errorf("failed job detail %q", d)
	}
	// cf push -b nonsense_buildpack, or a git URL: the job fails with
	// CC's detail (the CLI prints it), and nothing is kept.
	for bp, detail := range map[string]string{
		"nonsense_buildpack": `For application 'bad': Buildpack "nonsense_buildpack" for stack "cflinuxfs4" must be an existing admin buildpack or a valid git URI`,
		gitBuildpack:         "For application 'bad': " + gitBuildpackRefused,
	} {
		j := e.cfApplyManifest(t, ids.space, "applications:\n- name: bad\n  default-route: true\n  buildpacks:\n  - "+bp+"\n  command: ./run.sh\n")
		j.eq(t, "state", "FAILED")
		j.eq(t, "errors.0.detail", detail)
	}
	if n := len(e.cf("GET", "/v3/apps?names=bad&space_guids="+ids.space, nil).paginated(t)); n != 0 {
		t.Errorf("app bad exists after failed pushes")
	}
	// cf push -b default: the CLI sends buildpacks: [], auto-detect.
	e.cfApplyManifest(t, ids.space, "applications:\n- name: app2\n  buildpacks: []\n").eq(t, "state", "COMPLETE")
	if bps := e.cfAppByName(t, ids, "app2").list(t, "resources.0.lifecycle.data.buildpacks"); len(bps) != 0 {
		t.Errorf("app2 buildpacks after -b default: %v", bps)
	}
	// One that cannot be read: 422 on the POST.
	e.cf("POST", "/v3/spaces/"+ids.space+"/actions/apply_manifest", "applications: 3\n", "Content-Type", "application/x-yaml").ccError(t, 422, "CF-UnprocessableEntity", 0, "~Applications must be a list")
	// Staging a package that is not ready: CC's special-cased 400.
	pkg := e.cf("POST", "/v3/packages", map[string]any{"type": "bits", "relationships": map[string]any{"app": map[string]any{"data": map[string]string{"guid": app}}}}).want(t, 201)
	e.cf("POST", "/v3/builds", map[string]any{"package": map[string]string{"guid": pkg.str(t, "guid")}}).ccError(t, 400, "CF-InvalidRequest", 0, "Bad request: Cannot stage package whose state is not ready.")
	// A second app of the same name through POST /v3/apps.
	e.cf("POST", "/v3/apps", map[string]any{"name": "myapp", "relationships": map[string]any{"space": map[string]any{"data": map[string]string{"guid": ids.space}}}}).
		ccError(t, 422, "CF-UnprocessableEntity", 0, "App with the name 'myapp' already exists.")
}

// TestCFCLI_Buildpacks: cf buildpacks (GET /v3/buildpacks?order_by=position;
// --lifecycle adds lifecycle=, --labels label_selector=) and the fields its
// table shows.
func TestCFCLI_Buildpacks(t *testing.T) {
	t.Parallel()
	e := newCFEnv(t)
	e.target(t)
	for _, q := range []string{"order_by=position", "order_by=position&lifecycle=buildpack", "order_by=position&label_selector=%21env"} {
		bps := e.cf("GET", "/v3/buildpacks?"+q, nil)
		if n := len(bps.paginated(t)); n != 2 {
			t.Fatalf("%s: %d buildpacks: %s", q, n, bps.body)
		}
		bps.isNull(t, "pagination.next")
		for i, name := range []string{"go_buildpack", "binary_buildpack"} {
			r := "resources." + strconv.Itoa(i) + "."
			bps.eq(t, r+"name", name)
			bps.eq(t, r+"stack", "cflinuxfs4")
			bps.eq(t, r+"state", "READY")
			bps.eq(t, r+"lifecycle", "buildpack")
			bps.eq(t, r+"filename", "built into minicf")
			bps.str(t, r+"guid")
			bps.str(t, r+"created_at")
			if n := bps.num(t, r+"position"); n != int64(i+1) {
				t.Errorf("%s position %d", name, n)
			}
			for key, want := range map[string]bool{"enabled": true, "locked": false} {
				if v, _ := bps.get(r + key); v != want {
					t.Errorf("%s %s = %v", name, key, v)
				}
			}
		}
	}
	if n := len(e.cf("GET", "/v3/buildpacks?order_by=position&lifecycle=cnb", nil).paginated(t)); n != 0 {
		t.Errorf("cnb buildpacks: %d", n)
	}
}

func TestCFCLI_Scale(t *testing.T) {
	t.Parallel()
	e := newCFEnv(t)
	ids := e.target(t)
	a, _, _ := e.startedApp("myapp")
	lrp := e.lrpGUIDOf(a.GUID)
	e.setActual(lrp, bbs.StateRunning)

	// cf scale myapp -i 3.
	app := e.cfAppByName(t, ids, "myapp").str(t, "resources.0.guid")
	sc := e.cf("POST", "/v3/apps/"+app+"/processes/web/actions/scale", map[string]int{"instances": 3}).want(t, 202)
	if n := sc.num(t, "instances"); n != 3 {
		t.Errorf("instances %d", n)
	}
	sc.eq(t, "type", "web")
	if d := e.bbs.lrp(lrp); d == nil || d.Instances != 3 {
		t.Errorf("LRP after scale: %+v", d)
	}
	procs := e.cf("GET", "/v3/apps/"+app+"/processes", nil)
	procs.paginated(t)
	proc := procs.str(t, "resources.0.guid")
	if got := e.statesOf(t, proc); got != "RUNNING,STARTING,STARTING" {
		t.Errorf("stats after scaling up: %s", got)
	}
	// -m and -k (the CLI stops and starts around it).
	sc = e.cf("POST", "/v3/apps/"+app+"/processes/web/actions/scale", map[string]int{"memory_in_mb": 128, "disk_in_mb": 512, "log_rate_limit_in_bytes_per_second": 1024}).want(t, 202)
	if sc.num(t, "memory_in_mb") != 128 || sc.num(t, "disk_in_mb") != 512 || sc.num(t, "log_rate_limit_in_bytes_per_second") != 1024 {
		t.Errorf("scale: %s", sc.body)
	}
	e.cf("POST", "/v3/apps/"+app+"/processes/web/actions/scale", map[string]int{"instances": -1}).ccError(t, 422, "CF-UnprocessableEntity", 0, "~Instances must be")
	e.cf("POST", "/v3/apps/nope/processes/web/actions/scale", map[string]int{"instances": 1}).ccError(t, 404, "CF-NotFound", 10000, "App not found")
}

func TestCFCLI_StopStartRestart(t *testing.T) {
	t.Parallel()
	e := newCFEnv(t)
	ids := e.target(t)
	a, d := e.stagedApp("myapp")
	lrpsBefore := len(e.bbs.lrpGUIDs())

	preChecks := func() {
		t.Helper()
		app := e.cfAppByName(t, ids, "myapp").str(t, "resources.0.guid")
		pk := e.cf("GET", "/v3/packages?app_guids="+app+"&order_by=-created_at&page=1&per_page=1", nil)
		if n := len(pk.paginated(t)); n != 1 {
			t.Fatalf("packages: %s", pk.body)
		}
		pk.eq(t, "resources.0.state", "READY")
		pkg := pk.str(t, "resources.0.guid")
		ds := e.cf("GET", "/v3/packages/"+pkg+"/droplets?states=STAGED&page=1&per_page=1", nil)
		if n := len(ds.paginated(t)); n != 1 {
			t.Fatalf("staged droplets of the newest package: %s", ds.body)
		}
		ds.eq(t, "resources.0.guid", d.GUID)
		e.cf("GET", "/v3/packages?app_guids="+app+"&guids="+pkg, nil).paginated(t)
	}
	// cf start myapp.
	preChecks()
	e.cf("POST", "/v3/apps/"+a.GUID+"/actions/start", nil).want(t, 200).eq(t, "state", "STARTED")
	if n := len(e.bbs.lrpGUIDs()); n != lrpsBefore+1 {
		t.Errorf("LRPs after start: %d", n)
	}
	proc := e.webProcess(a.GUID).GUID
	if got := e.statesOf(t, proc); got != "STARTING" {
		t.Errorf("stats after start: %s", got)
	}
	// cf stop myapp.
	e.cfAppByName(t, ids, "myapp")
	e.cf("POST", "/v3/apps/"+a.GUID+"/actions/stop", nil).want(t, 200).eq(t, "state", "STOPPED")
	if n := len(e.bbs.lrpGUIDs()); n != lrpsBefore {
		t.Errorf("LRPs after stop: %d", n)
	}
	if got := e.statesOf(t, proc); got != "DOWN" {
		t.Errorf("stats after stop: %s", got)
	}
	// cf restart myapp: the same pre-checks, then stop and start.
	e.cf("POST", "/v3/apps/"+a.GUID+"/actions/start", nil).want(t, 200)
	old := e.lrpGUIDOf(a.GUID)
	preChecks()
	e.cf("POST", "/v3/apps/"+a.GUID+"/actions/stop", nil).want(t, 200).eq(t, "state", "STOPPED")
	e.cf("POST", "/v3/apps/"+a.GUID+"/actions/start", nil).want(t, 200).eq(t, "state", "STARTED")
	if now := e.lrpGUIDOf(a.GUID); now == old || e.bbs.lrp(old) != nil || e.bbs.lrp(now) == nil {
		t.Errorf("restart: LRP %s → %s", old, now)
	}
	// Start twice is fine; starting without a droplet is CC's 422.
	e.cf("POST", "/v3/apps/"+a.GUID+"/actions/start", nil).want(t, 200)
	b := e.createApp("nodroplet")
	e.cf("POST", "/v3/apps/"+b.GUID+"/actions/start", nil).ccError(t, 422, "CF-UnprocessableEntity", 0, "Assign a droplet before starting this app.")
	if n := len(e.cf("GET", "/v3/packages?app_guids="+b.GUID+"&order_by=-created_at&page=1&per_page=1", nil).paginated(t)); n != 0 {
		t.Errorf("packages of an app without any: %d", n)
	}
}

func TestCFCLI_Delete(t *testing.T) {
	t.Parallel()
	e := newCFEnv(t)
	ids := e.target(t)
	a, _, rt := e.startedApp("myapp")
	lrp := e.lrpGUIDOf(a.GUID)

	// cf delete myapp -f -r.
	app := e.cfAppByName(t, ids, "myapp").str(t, "resources.0.guid")
	routes := e.cf("GET", "/v3/apps/"+app+"/routes", nil)
	if n := len(routes.paginated(t)); n != 1 {
		t.Fatalf("routes: %s", routes.body)
	}
	e.followJob(t, e.cf("DELETE", "/v3/apps/"+app, nil)).eq(t, "state", "COMPLETE")
	for i := range routes.list(t, "resources") {
		r := routes.str(t, "resources."+strconv.Itoa(i)+".guid")
		e.followJob(t, e.cf("DELETE", "/v3/routes/"+r, nil)).eq(t, "state", "COMPLETE")
	}
	if n := len(e.cf("GET", "/v3/apps?names=myapp&space_guids="+ids.space, nil).paginated(t)); n != 0 {
		t.Errorf("apps after delete: %d", n)
	}
	e.cf("GET", "/v3/apps/"+app, nil).ccError(t, 404, "CF-NotFound", 10000, "App not found")
	e.cf("GET", "/v3/routes/"+rt.GUID, nil).ccError(t, 404, "CF-NotFound", 10000, "Route not found")
	if e.bbs.lrp(lrp) != nil {
		t.Errorf("the LRP outlived its app")
	}
	if n := len(e.cf("GET", "/v3/routes?space_guids="+ids.space+"&per_page=5000", nil).paginated(t)); n != 0 {
		t.Errorf("routes left: %d", n)
	}
	// cf delete-orphaned-routes.
	e.createRoute("orphan", "")
	e.followJob(t, e.cf("DELETE", "/v3/spaces/"+ids.space+"/routes?unmapped=true", nil)).eq(t, "state", "COMPLETE")
	if n := len(e.cf("GET", "/v3/routes?space_guids="+ids.space, nil).paginated(t)); n != 0 {
		t.Errorf("orphans left: %d", n)
	}
}

func TestCFCLI_Logs(t *testing.T) {
	t.Parallel()
	e := newCFEnv(t)
	app := e.createApp("myapp").GUID
	base := time.Now().UnixNano()
	add := func(i int, source, msg string) {
		e.cc.logs.ingest(mbus.AppendAppLog(nil, app, source, "0", base+int64(i)*1000, []byte(msg)))
	}
	for i := 0; i < 5; i++ {
		add(i, "STG", "staging line "+strconv.Itoa(i))
	}
	add(5, "APP/PROC/WEB", "hello from the app")
	add(6, "RTR", "GET / 200")

	info := e.cf("GET", "/api/v1/info", nil).want(t, 200)
	if v := info.str(t, "version"); !semverIn(v, "2.0.0", "100.0.0") {
		t.Errorf("log-cache version %q (>= 2.0.0 selects /api/v1)", v)
	}
	read := func(q string) []any {
		t.Helper()
		c := e.cf("GET", "/api/v1/read/"+app+"?"+q, nil).want(t, 200)
		return c.list(t, "envelopes.batch")
	}
	field := func(env any, path string) string {
		v, _ := jsonPath(env, path)
		s, _ := v.(string)
		return s
	}
	payload := func(env any) string {
		b, err := base64.StdEncoding.DecodeString(field(env, "log.payload"))
		if err != nil {
			t.Fatalf("payload is not base64: %v", err)
		}
		return string(b)
	}
	// cf logs --recent: zero start time, descending, limit 1000.
	recent := read("start_time=" + strconv.FormatInt(time.Time{}.UnixNano(), 10) + "&envelope_types=LOG&descending=true&limit=1000")
	if len(recent) != 7 || payload(recent[0]) != "GET / 200" || payload(recent[6]) != "staging line 0" {
		t.Fatalf("recent: %v", recent)
	}
	env0 := recent[6]
	if ts := field(env0, "timestamp"); ts != strconv.FormatInt(base, 10) {
		t.Errorf("timestamp %q, want the ns as a string", ts)
	}
	if field(env0, "source_id") != app || field(env0, "instance_id") != "0" || field(env0, "tags.source_type") != "STG" || field(env0, "log.type") != "OUT" {
		t.Errorf("envelope %v", env0)
	}
	// Staging: the latest timestamp (descending, limit 1), then a walk
	// from start_time = last + 1 that never repeats a line.
	latest := read("start_time=0&envelope_types=LOG&descending=true&limit=1")
	if len(latest) != 1 || payload(latest[0]) != "GET / 200" {
		t.Fatalf("latest %v", latest)
	}
	var walked []string
	start := base
	for round := 0; round < 10; round++ {
		batch := read("start_time=" + strconv.FormatInt(start, 10) + "&end_time=" + strconv.FormatInt(time.Now().UnixNano(), 10) + "&envelope_types=LOG&limit=2")
		if len(batch) == 0 {
			break
		}
		for _, b := range batch {
			walked = append(walked, payload(b))
		}
		last, _ := strconv.ParseInt(field(batch[len(batch)-1], "timestamp"), 10, 64)
		start = last + 1
	}
	if len(walked) != 7 || walked[0] != "staging line 0" || walked[6] != "GET / 200" {
		t.Errorf("walk: %v", walked)
	}
	// Another source id has nothing; a bad start_time is a 400.
	if n := len(read("start_time=0")); n != 7 {
		t.Errorf("ascending read: %d", n)
	}
	if c := e.cf("GET", "/api/v1/read/someone-else", nil).want(t, 200); len(c.list(t, "envelopes.batch")) != 0 {
		t.Errorf("someone else's logs: %s", c.body)
	}
	e.cf("GET", "/api/v1/read/"+app+"?start_time=x", nil).want(t, 400)
}
