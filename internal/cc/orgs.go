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

func (c *CC) listOrgs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	p, err := parseList(q, "created_at", "updated_at", "name")
	if err != nil {
		return err
	}
	names, guids := queryFilter(q, "names"), queryFilter(q, "guids")
	var out []*orgRec
	err = c.store.read(r.Context(), func(tx *stx) error {
		all, err := listRecs[orgRec](tx, tOrgs, "")
		for _, o := range all {
			if names.match(o.Name) && guids.match(o.GUID) {
				out = append(out, o)
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	sortItems(out, p.orderBy, func(o *orgRec) sortKeys { return sortKeys{o.Name, o.CreatedAt, o.UpdatedAt, o.GUID} })
	base := c.base(r)
	res := make([]ccapi.Organization, len(out))
	for i, o := range out {
		res[i] = presentOrg(base, o)
	}
	return writeJSON(w, http.StatusOK, paginate(base, r, p, res))
}

func (c *CC) getOrg(w http.ResponseWriter, r *http.Request) error {
	var o *orgRec
	err := c.store.read(r.Context(), func(tx *stx) (err error) {
		o, err = getRec[orgRec](tx, tOrgs, r.PathValue("guid"))
		return err
	})
	if errors.Is(err, errNotFound) {
		return notFound("Organization not found")
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, presentOrg(c.base(r), o))
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
	p, err := parseList(q, "created_at", "updated_at", "name")
	if err != nil {
		return err
	}
	names, guids, orgs := queryFilter(q, "names"), queryFilter(q, "guids"), queryFilter(q, "organization_guids")
	var out []*spaceRec
	err = c.store.read(r.Context(), func(tx *stx) error {
		all, err := listRecs[spaceRec](tx, tSpaces, "")
		for _, s := range all {
			if names.match(s.Name) && guids.match(s.GUID) && orgs.match(s.OrgGUID) {
				out = append(out, s)
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	sortItems(out, p.orderBy, func(s *spaceRec) sortKeys { return sortKeys{s.Name, s.CreatedAt, s.UpdatedAt, s.GUID} })
	base := c.base(r)
	res := make([]ccapi.Space, len(out))
	for i, s := range out {
		res[i] = presentSpace(base, s)
	}
	return writeJSON(w, http.StatusOK, paginate(base, r, p, res))
}

func (c *CC) getSpace(w http.ResponseWriter, r *http.Request) error {
	var s *spaceRec
	err := c.store.read(r.Context(), func(tx *stx) (err error) {
		s, err = getRec[spaceRec](tx, tSpaces, r.PathValue("guid"))
		return err
	})
	if errors.Is(err, errNotFound) {
		return notFound("Space not found")
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, presentSpace(c.base(r), s))
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
	p, err := parseList(q, "created_at", "updated_at", "name")
	if err != nil {
		return err
	}
	names, guids, orgs := queryFilter(q, "names"), queryFilter(q, "guids"), queryFilter(q, "organization_guids")
	var out []*domainRec
	err = c.store.read(r.Context(), func(tx *stx) error {
		all, err := listRecs[domainRec](tx, tDomains, "")
		for _, d := range all {
			if keep(d) && names.match(d.Name) && guids.match(d.GUID) && orgs.match(d.OrgGUID) {
				out = append(out, d)
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	sortItems(out, p.orderBy, func(d *domainRec) sortKeys { return sortKeys{d.Name, d.CreatedAt, d.UpdatedAt, d.GUID} })
	base := c.base(r)
	res := make([]ccapi.Domain, len(out))
	for i, d := range out {
		res[i] = presentDomain(base, d)
	}
	return writeJSON(w, http.StatusOK, paginate(base, r, p, res))
}

func (c *CC) getDomain(w http.ResponseWriter, r *http.Request) error {
	var d *domainRec
	err := c.store.read(r.Context(), func(tx *stx) (err error) {
		d, err = getRec[domainRec](tx, tDomains, r.PathValue("guid"))
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
