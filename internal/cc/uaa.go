package cc

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// The token endpoint, in UAA's style (cf-cli-v8.md §4): the root
// document's login and uaa links point at this server, so the stock cf
// CLI logs in here.
//
//   - POST /oauth/token, form-encoded:
//     grant_type=password&username=U&password=P with HTTP Basic "cf:"
//     (UAA's public cf client, empty secret; client_id=cf in the form
//     works too) → an access token for U and a refresh token;
//     grant_type=refresh_token&refresh_token=R (Basic cf:) → a new
//     access token for R's user (R itself is handed back, as UAA's
//     non-rotating refresh tokens are);
//     grant_type=client_credentials&client_id=ID&client_secret=S (or
//     Basic ID:S) → a client token (no refresh token: the cf CLI keeps no
//     secret to refresh with, so it is long-lived).
//     The answer: {"access_token","token_type":"bearer","refresh_token",
//     "expires_in","scope","jti"}. Bad credentials: 401
//     {"error":"unauthorized","error_description":"Bad credentials"}.
//   - GET /login: UAA's login info with the prompts `cf login` asks for.
//
// Tokens are HS256 JWTs signed with the key in the state directory (see
// auth.go); users and clients come from Config.Users and Config.Clients.

// cfClient is UAA's public client the cf CLI authenticates as.
const cfClient = "cf"

// uaaVersion is what GET /login says UAA is (the cf CLI checks it is at
// least 4.x before it sends a login_hint).
const uaaVersion = "77.0.0"

const maxTokenRequestBody = 64 << 10

// checkCredentials validates Config.Users and Config.Clients.
func checkCredentials(users, clients map[string]string) error {
	for u, p := range users {
		if u == "" || !storable(u) || len(u) > 255 || p == "" {
			return fmt.Errorf("cc: user %q needs a name (at most 255 characters) and a password", u)
		}
	}
	for id, secret := range clients {
		switch {
		case id == "" || !storable(id) || len(id) > 255:
			return fmt.Errorf("cc: client id %q is invalid", id)
		case id == cfClient:
			return fmt.Errorf("cc: client %q is UAA's public client; choose another id", id)
		case secret == "":
			return fmt.Errorf("cc: client %q needs a secret", id)
		}
	}
	return nil
}

// sameSecret compares two secrets in constant time (hashes, so the
// length leaks nothing either).
func sameSecret(want, got string) bool {
	a, b := sha256.Sum256([]byte(want)), sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// uaaError answers an OAuth error as UAA does.
func uaaError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="UAA/oauth", error="`+code+`", error_description="`+description+`"`)
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}

func badCredentials(w http.ResponseWriter) {
	uaaError(w, http.StatusUnauthorized, "unauthorized", "Bad credentials")
}

// tokenResponse is POST /oauth/token's answer.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
	JTI          string `json:"jti"`
}

// oauthToken is POST /oauth/token.
func (c *CC) oauthToken(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenRequestBody)
	if err := r.ParseForm(); err != nil {
		uaaError(w, http.StatusBadRequest, "invalid_request", "The request body must be form-encoded (application/x-www-form-urlencoded)")
		return nil
	}
	form := r.PostForm
	// The client: HTTP Basic, else client_id and client_secret in the form.
	clientID, secret, basic := r.BasicAuth()
	if !basic {
		clientID, secret = form.Get("client_id"), form.Get("client_secret")
	}
	issuer := c.tokenIssuerFor(r)
	switch grant := form.Get("grant_type"); grant {
	case "password":
		if clientID != cfClient || secret != "" {
			badCredentials(w)
			return nil
		}
		user, password := form.Get("username"), form.Get("password")
		want, ok := c.cfg.Users[user]
		if !ok || !sameSecret(want, password) {
			// The same work whether or not the user exists.
			sameSecret(password, password)
			c.log.Info("cc-login-failed", "user", clip(user), "grant_type", grant)
			badCredentials(w)
			return nil
		}
		c.log.Info("cc-login", "user", user, "grant_type", grant)
		return c.userTokens(w, user, issuer, "")
	case "refresh_token":
		if clientID != cfClient || secret != "" {
			badCredentials(w)
			return nil
		}
		claims, err := c.auth.verifyRefresh(form.Get("refresh_token"))
		if err != nil {
			uaaError(w, http.StatusUnauthorized, "invalid_token", "Invalid refresh token: "+err.Error())
			return nil
		}
		if _, ok := c.cfg.Users[claims.UserName]; !ok || claims.ClientID != cfClient {
			uaaError(w, http.StatusUnauthorized, "invalid_token", "Invalid refresh token: its user no longer exists")
			return nil
		}
		return c.userTokens(w, claims.UserName, issuer, form.Get("refresh_token"))
	case "client_credentials":
		want, ok := c.cfg.Clients[clientID]
		if !ok || !sameSecret(want, secret) {
			sameSecret(secret, secret)
			c.log.Info("cc-login-failed", "client", clip(clientID), "grant_type", grant)
			badCredentials(w)
			return nil
		}
		tok, err := c.auth.issueClient(clientID, ClientTokenTTL, issuer)
		if err != nil {
			return err
		}
		c.log.Info("cc-login", "client", clientID, "grant_type", grant)
		return writeToken(w, tokenResponse{AccessToken: tok, TokenType: "bearer", ExpiresIn: int64(ClientTokenTTL / time.Second),
			Scope: strings.Join(clientScopes, " "), JTI: jtiOf(tok)})
	case "":
		uaaError(w, http.StatusBadRequest, "invalid_request", "Missing grant type")
		return nil
	default:
		uaaError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant type: "+clip(grant))
		return nil
	}
}

// userTokens answers an access token for user and a refresh token (refresh,
// when the request brought one, else a new one).
func (c *CC) userTokens(w http.ResponseWriter, user, issuer, refresh string) error {
	claims, err := c.auth.userClaims(user, AccessTokenTTL, issuer)
	if err != nil {
		return err
	}
	access, err := c.auth.sign(claims)
	if err != nil {
		return err
	}
	if refresh == "" {
		if refresh, err = c.auth.issueRefresh(claims, RefreshTokenTTL); err != nil {
			return err
		}
	}
	return writeToken(w, tokenResponse{AccessToken: access, TokenType: "bearer", RefreshToken: refresh,
		ExpiresIn: int64(AccessTokenTTL / time.Second), Scope: strings.Join(tokenScopes, " "), JTI: claims.JTI})
}

func writeToken(w http.ResponseWriter, t tokenResponse) error {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	return writeJSON(w, http.StatusOK, t)
}

// jtiOf reads the jti of a token this CC just signed.
func jtiOf(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c Claims
	if json.Unmarshal(payload, &c) != nil {
		return ""
	}
	return c.JTI
}

// tokenIssuerFor is the iss of tokens issued through the API: the token
// endpoint's URL as the client reached it.
func (c *CC) tokenIssuerFor(r *http.Request) string {
	return c.base(r) + "/oauth/token"
}

// loginInfo is GET /login: UAA's login info, with the prompts cf login
// asks for (without them it fails with "Unable to authenticate.").
func (c *CC) loginInfo(w http.ResponseWriter, r *http.Request) error {
	base := c.base(r)
	return writeJSON(w, http.StatusOK, map[string]any{
		"app":            map[string]string{"version": uaaVersion},
		"zone_name":      "uaa",
		"entityID":       "minicf",
		"commit_id":      "minicf",
		"timestamp":      c.now().Format("2006-01-02T15:04:05-0700"),
		"showLoginLinks": false,
		"idpDefinitions": map[string]string{},
		"links":          map[string]string{"uaa": base, "login": base},
		"prompts": map[string][]string{
			"username": {"text", "Email"},
			"password": {"password", "Password"},
		},
	})
}
