package cc

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
)

// TokenKeyFile is the HS256 signing key, in the state directory (0600).
const TokenKeyFile = "cc-token.key"

// DefaultTokenTTL is the lifetime of a token IssueToken makes without one.
const DefaultTokenTTL = 24 * time.Hour

// Lifetimes of what POST /oauth/token issues: UAA's cf client's in
// cf-deployment (access 2 h, refresh 30 days); a client_credentials token
// cannot be refreshed by the cf CLI, so it lives longer.
const (
	AccessTokenTTL  = 2 * time.Hour
	RefreshTokenTTL = 30 * 24 * time.Hour
	ClientTokenTTL  = 7 * 24 * time.Hour
)

// Audiences: an access token is for the Cloud Controller; a refresh
// token has only refreshAudience, so it is never taken as an access token
// (and an access token is never taken for a refresh token).
const (
	ccAudience      = "cloud_controller"
	refreshAudience = "minicf-refresh-token"
)

// maxTokenBytes bounds a bearer token.
const maxTokenBytes = 8 << 10

// userNamespace makes user ids stable: the same user name gets the same
// user_id from every token.
var userNamespace = uuid.MustParse("6f9d5a8e-3c1b-4f7a-9e2d-0b8c4a6d1e3f")

// Claims are a token's claims, as UAA issues them and the cf CLI reads
// them (cf-cli-v8.md §4.2).
type Claims struct {
	JTI       string   `json:"jti"`
	IAT       int64    `json:"iat"`
	EXP       int64    `json:"exp"`
	UserName  string   `json:"user_name,omitempty"`
	UserID    string   `json:"user_id,omitempty"`
	Origin    string   `json:"origin,omitempty"`
	ClientID  string   `json:"client_id"`
	CID       string   `json:"cid"`
	Scope     []string `json:"scope"`
	ISS       string   `json:"iss"`
	AUD       []string `json:"aud"`
	GrantType string   `json:"grant_type,omitempty"`
	Sub       string   `json:"sub,omitempty"`
}

var (
	tokenScopes  = []string{"cloud_controller.admin", "cloud_controller.read", "cloud_controller.write", "openid", "uaa.user"}
	clientScopes = []string{"cloud_controller.admin", "cloud_controller.read", "cloud_controller.write"}
)

type tokenAuth struct {
	key []byte
	now func() time.Time
}

// loadTokenAuth reads the signing key, or creates it (32 random bytes, hex,
// mode 0600) on first start.
func loadTokenAuth(path string, now func() time.Time) (*tokenAuth, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, derr := hex.DecodeString(strings.TrimSpace(string(data)))
		if derr != nil || len(key) < 16 {
			return nil, fmt.Errorf("cc: the token key %s is not at least 16 hex-encoded bytes; remove it to make a new one (every token issued so far stops working)", path)
		}
		return &tokenAuth{key: key, now: now}, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("cc: cannot read the token key: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cc-token-*")
	if err != nil {
		return nil, fmt.Errorf("cc: cannot write the token key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, err
	}
	if _, err := tmp.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	// Link rather than rename: if another process made the key meanwhile,
	// keep theirs.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return loadTokenAuth(path, now)
		}
		return nil, fmt.Errorf("cc: cannot write the token key: %w", err)
	}
	return &tokenAuth{key: key, now: now}, nil
}

var b64 = base64.RawURLEncoding

func (a *tokenAuth) issue(user string, ttl time.Duration, issuer string) (string, error) {
	c, err := a.userClaims(user, ttl, issuer)
	if err != nil {
		return "", err
	}
	return a.sign(c)
}

// userClaims are a user's access token claims (client cf, password grant).
func (a *tokenAuth) userClaims(user string, ttl time.Duration, issuer string) (Claims, error) {
	if user == "" {
		return Claims{}, errors.New("cc: a token needs a user name")
	}
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	now := a.now()
	uid := userID(user)
	return Claims{
		JTI: newJTI(), IAT: now.Unix(), EXP: now.Add(ttl).Unix(),
		UserName: user, UserID: uid, Origin: "uaa", ClientID: "cf", CID: "cf", Scope: tokenScopes,
		ISS: issuer, AUD: []string{ccAudience, "openid", "cf"}, GrantType: "password", Sub: uid,
	}, nil
}

func userID(user string) string { return uuid.NewSHA1(userNamespace, []byte(user)).String() }

func newJTI() string { return strings.ReplaceAll(uuid.NewString(), "-", "") }

// issueClient makes a client_credentials access token: no user_name, the
// client as client_id and sub (the cf CLI shows it as the user).
func (a *tokenAuth) issueClient(client string, ttl time.Duration, issuer string) (string, error) {
	now := a.now()
	return a.sign(Claims{
		JTI: newJTI(), IAT: now.Unix(), EXP: now.Add(ttl).Unix(), ClientID: client, CID: client,
		Scope: clientScopes, ISS: issuer, AUD: []string{ccAudience, client}, GrantType: "client_credentials", Sub: client,
	})
}

// issueRefresh makes the refresh token that goes with a user's access
// token: signed alike, long-lived, its jti ending in -r as UAA's do, and
// refreshAudience as its only audience.
func (a *tokenAuth) issueRefresh(access Claims, ttl time.Duration) (string, error) {
	now := a.now()
	r := access
	r.JTI, r.IAT, r.EXP = newJTI()+"-r", now.Unix(), now.Add(ttl).Unix()
	r.AUD = []string{refreshAudience}
	return a.sign(r)
}

func (a *tokenAuth) sign(c Claims) (string, error) {
	header, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT", "kid": "minicf"})
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signing := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(signing))
	return signing + "." + b64.EncodeToString(m.Sum(nil)), nil
}

// verify checks an access token: signature, expiry and audience; the
// error says which failed, in words for the person holding the token.
func (a *tokenAuth) verify(tok string) (*Claims, error) {
	c, err := a.verifySigned(tok)
	if err != nil {
		return nil, err
	}
	switch {
	case hasAudience(c, refreshAudience):
		return nil, errors.New("this is a refresh token; send it to POST /oauth/token (grant_type=refresh_token) for an access token")
	case !hasAudience(c, ccAudience):
		return nil, fmt.Errorf("the token's audience %q does not include %s", c.AUD, ccAudience)
	}
	return c, nil
}

// verifyRefresh checks a refresh token as verify checks access tokens.
func (a *tokenAuth) verifyRefresh(tok string) (*Claims, error) {
	c, err := a.verifySigned(tok)
	if err != nil {
		return nil, err
	}
	if !hasAudience(c, refreshAudience) {
		return nil, errors.New("the token is not a refresh token")
	}
	return c, nil
}

func hasAudience(c *Claims, aud string) bool {
	for _, x := range c.AUD {
		if x == aud {
			return true
		}
	}
	return false
}

// verifySigned checks a token's signature and expiry.
func (a *tokenAuth) verifySigned(tok string) (*Claims, error) {
	if len(tok) > maxTokenBytes {
		return nil, errors.New("the token is too long")
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("the token is not a JWT (three base64url parts separated by dots)")
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return nil, errors.New("the token's header is not base64url")
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hb, &header); err != nil {
		return nil, errors.New("the token's header is not JSON")
	}
	if header.Alg != "HS256" {
		return nil, fmt.Errorf("the token is signed with %q; this Cloud Controller accepts only its own HS256 tokens", header.Alg)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return nil, errors.New("the token's signature is not base64url")
	}
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, m.Sum(nil)) {
		return nil, errors.New("the token's signature does not verify: it was not issued by this foundation")
	}
	pb, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("the token's claims are not base64url")
	}
	var c Claims
	if err := json.Unmarshal(pb, &c); err != nil {
		return nil, errors.New("the token's claims are not JSON")
	}
	if c.EXP == 0 {
		return nil, errors.New("the token has no expiry (exp)")
	}
	if now := a.now(); now.Unix() >= c.EXP {
		return nil, fmt.Errorf("the token expired at %s", time.Unix(c.EXP, 0).UTC().Format(time.RFC3339))
	}
	return &c, nil
}
