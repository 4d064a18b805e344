package cc

import (
	"errors"
	"net/http"
	"strings"
	"unicode"

	"github.com/minicf/minicf/internal/cc/ccapi"
)

// Orgs, spaces and domains. minicf has one default org (minicf) with one
// space (dev) and one shared domain from the start; more orgs and spaces
// can be created. Domains are shared (no private domains yet).

// listNamed answers a list of tb's records that keep passes, ordered by
// order_by (name, created_at or updated_at) and paginated.
func listNamed[T any, P recPtr[T], R any](c *CC, w http.ResponseWriter, r *http.Request, tb table,
	keep func(P) bool, keys func(P) sortKeys, present func(string, P) R) error {
	p, err := parseList(r.URL.Query(), "created_at", "updated_at", "name")
	if err != nil {
		return err
	}
	var out []P
	err = c.store.read(r.Context(), func(tx *stx) error {
		all, err := listRecs[T, P](tx, tb, "")
		for _, x := range all {
			if keep(x) {
				out = append(out, x)
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	sortItems(out, p.orderBy, keys)
	base := c.base(r)
	res := make([]R, len(out))
	for i, x := range out {
		res[i] = present(base, x)
	}
	return writeJSON(w, http.StatusOK, paginate(base, r, p, res))
}

// getOne answers the tb record of the path's guid, or "<what> not found".
func getOne[T any, P recPtr[T], R any](c *CC, w http.ResponseWriter, r *http.Request, tb table, what string,
	present func(string, P) R) error {
	var x P
	err := c.store.read(r.Context(), func(tx *stx) (err error) {
		x, err = getRec[T, P](tx, tb, r.PathValue("guid"))
		return err
	})
	if errors.Is(err, errNotFound) {
		return notFound(what + " not found")
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, present(c.base(r), x))
}

func (c *CC) listOrgs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	names, guids := queryFilter(q, "names"), queryFilter(q, "guids")
	return listNamed(c, w, r, tOrgs, func(o *orgRec) bool { return names.match(o.Name) && guids.match(o.GUID) },
		func(o *orgRec) sortKeys { return sortKeys{o.Name, o.CreatedAt, o.UpdatedAt, o.GUID} }, presentOrg)
}

func (c *CC) getOrg(w http.ResponseWriter, r *http.Request) error {
	return getOne(c, w, r, tOrgs, "Organization", presentOrg)
}

func (c *CC) createOrg(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name string `json:"name"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	if err := validName("Name", body.Name); err != nil {
		return err
	}
	now := c.now()
	o := &orgRec{GUID: newGUID(), Name: body.Name, CreatedAt: now, UpdatedAt: now}
	err := c.store.write(r.Context(), func(tx *stx) error { return insertRec(tx, tOrgs, o) })
	if errors.Is(err, errUnique) {
		return unprocessable("Organization '%s' already exists.", body.Name)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, presentOrg(c.base(r), o))
}

// validName checks a resource name: present, at most 255 characters,
// storable.
func validName(what, name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return unprocessable("%s can't be blank", what)
	case len(name) > 255:
		return unprocessable("%s is too long (maximum is 255 characters)", what)
	case !storable(name):
		return unprocessable("%s must be valid UTF-8 without NUL bytes", what)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return unprocessable("%s must not contain control characters", what)
	}
	return nil
}

func (c *CC) listSpaces(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	names, guids, orgs := queryFilter(q, "names"), queryFilter(q, "guids"), queryFilter(q, "organization_guids")
	return listNamed(c, w, r, tSpaces,
		func(s *spaceRec) bool { return names.match(s.Name) && guids.match(s.GUID) && orgs.match(s.OrgGUID) },
		func(s *spaceRec) sortKeys { return sortKeys{s.Name, s.CreatedAt, s.UpdatedAt, s.GUID} }, presentSpace)
}

func (c *CC) getSpace(w http.ResponseWriter, r *http.Request) error {
	return getOne(c, w, r, tSpaces, "Space", presentSpace)
}

func (c *CC) createSpace(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name          string                        `json:"name"`
		Relationships map[string]ccapi.Relationship `json:"relationships"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	if err := validName("Name", body.Name); err != nil {
		return err
	}
	orgGUID := relGUID(body.Relationships, "organization")
	now := c.now()
	s := &spaceRec{GUID: newGUID(), Name: body.Name, OrgGUID: orgGUID, CreatedAt: now, UpdatedAt: now}
	err := c.store.write(r.Context(), func(tx *stx) error {
		if _, err := getRec[orgRec](tx, tOrgs, orgGUID); err != nil {
			if errors.Is(err, errNotFound) {
				return unprocessable("Invalid organization. Ensure the organization exists and you have access to it.")
			}
			return err
		}
		return insertRec(tx, tSpaces, s)
	})
	if errors.Is(err, errUnique) {
		return unprocessable("Name must be unique per organization")
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, presentSpace(c.base(r), s))
}

func relGUID(rels map[string]ccapi.Relationship, name string) string {
	if rel, ok := rels[name]; ok && rel.Data != nil {
		return rel.Data.GUID
	}
	return ""
}

func (c *CC) listDomains(w http.ResponseWriter, r *http.Request) error {
	return c.listDomainsWhere(w, r, func(*domainRec) bool { return true })
}

func (c *CC) listOrgDomains(w http.ResponseWriter, r *http.Request) error {
	orgGUID := r.PathValue("guid")
	err := c.store.read(r.Context(), func(tx *stx) error {
		_, err := getRec[orgRec](tx, tOrgs, orgGUID)
		return err
	})
	if errors.Is(err, errNotFound) {
		return notFound("Organization not found")
	}
	if err != nil {
		return err
	}
	return c.listDomainsWhere(w, r, func(d *domainRec) bool { return d.OrgGUID == "" || d.OrgGUID == orgGUID })
}

func (c *CC) listDomainsWhere(w http.ResponseWriter, r *http.Request, keep func(*domainRec) bool) error {
	q := r.URL.Query()
	names, guids, orgs := queryFilter(q, "names"), queryFilter(q, "guids"), queryFilter(q, "organization_guids")
	return listNamed(c, w, r, tDomains,
		func(d *domainRec) bool {
			return keep(d) && names.match(d.Name) && guids.match(d.GUID) && orgs.match(d.OrgGUID)
		},
		func(d *domainRec) sortKeys { return sortKeys{d.Name, d.CreatedAt, d.UpdatedAt, d.GUID} }, presentDomain)
}

func (c *CC) getDomain(w http.ResponseWriter, r *http.Request) error {
	return getOne(c, w, r, tDomains, "Domain", presentDomain)
}

// sharedDomain is the configured shared domain (the org default domain).
func (c *CC) sharedDomain(tx *stx) (*domainRec, error) {
	ds, err := listRecs[domainRec](tx, tDomains, "name = ?", c.cfg.SharedDomain)
	if err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, errNotFound
	}
	return ds[0], nil
}

func (c *CC) getOrgDefaultDomain(w http.ResponseWriter, r *http.Request) error {
	var d *domainRec
	err := c.store.read(r.Context(), func(tx *stx) error {
		if _, err := getRec[orgRec](tx, tOrgs, r.PathValue("guid")); err != nil {
			return err
		}
		var err error
		d, err = c.sharedDomain(tx)
		return err
	})
	if errors.Is(err, errNotFound) {
		return notFound("Domain not found")
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, presentDomain(c.base(r), d))
}

// routeReservations is GET /v3/domains/:guid/route_reservations?host=&path=.
func (c *CC) routeReservations(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	host, path := strings.ToLower(q.Get("host")), q.Get("path")
	matching := false
	err := c.store.read(r.Context(), func(tx *stx) error {
		if _, err := getRec[domainRec](tx, tDomains, r.PathValue("guid")); err != nil {
			return err
		}
		rs, err := listRecs[routeRec](tx, tRoutes, "domain_guid = ? AND host = ? AND path = ?", r.PathValue("guid"), host, path)
		matching = len(rs) > 0
		return err
	})
	if errors.Is(err, errNotFound) {
		return notFound("Domain not found")
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]bool{"matching_route": matching})
}
