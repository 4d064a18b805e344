package cc

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/minicf/minicf/internal/cc/ccapi"
)

// Packages: an app's bits. POST /v3/packages makes one (AWAITING_UPLOAD);
// POST /v3/packages/:guid/upload takes the cf CLI's multipart body (field
// resources, file part bits), unpacks and checks the zip, keeps a clean
// copy under <state>/packages and answers READY at once (the cf CLI polls
// a package without a timeout, so it is never left PROCESSING_UPLOAD).

// maxResourcesField bounds the resources field of an upload.
const maxResourcesField = 16 << 20

// multipartOverhead is what an upload body may hold beyond the bits.
const multipartOverhead = maxResourcesField + 1<<20

func (c *CC) packagePath(file string) string {
	return filepath.Join(c.cfg.StateDir, "packages", filepath.Base(file))
}

func (c *CC) dropletPath(file string) string {
	return filepath.Join(c.cfg.StateDir, "droplets", filepath.Base(file))
}

func randomSuffix() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// resourceMatches answers [] (no resource cache): the cf CLI then uploads
// every file.
func (c *CC) resourceMatches(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Resources []json.RawMessage `json:"resources"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, map[string]any{"resources": []any{}})
}

func (c *CC) createPackage(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Type          string                        `json:"type"`
		Relationships map[string]ccapi.Relationship `json:"relationships"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	switch body.Type {
	case "bits":
	case "docker":
		return unprocessable("Docker support has not been enabled")
	default:
		return unprocessable("Type must be one of 'bits', 'docker'")
	}
	now := c.now()
	p := &packageRec{GUID: newGUID(), AppGUID: relGUID(body.Relationships, "app"), Type: body.Type,
		State: ccapi.PackageAwaitingUpload, CreatedAt: now, UpdatedAt: now}
	err := c.store.write(r.Context(), func(tx *stx) error {
		if _, err := getRec[appRec](tx, tApps, p.AppGUID); errors.Is(err, errNotFound) {
			return unprocessable("App is invalid. Ensure it exists and you have access to it.")
		} else if err != nil {
			return err
		}
		return insertRec(tx, tPackages, p)
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, presentPackage(c.base(r), p))
}

func getPackage(tx *stx, guid string) (*packageRec, error) {
	p, err := getRec[packageRec](tx, tPackages, guid)
	if errors.Is(err, errNotFound) {
		return nil, notFound("Package not found")
	}
	return p, err
}

func (c *CC) getPackage(w http.ResponseWriter, r *http.Request) error {
	var p *packageRec
	err := c.store.read(r.Context(), func(tx *stx) (err error) {
		p, err = getPackage(tx, r.PathValue("guid"))
		return err
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, presentPackage(c.base(r), p))
}

func (c *CC) listPackages(w http.ResponseWriter, r *http.Request) error {
	return c.listPackagesWhere(w, r, "")
}

func (c *CC) listAppPackages(w http.ResponseWriter, r *http.Request) error {
	return c.listPackagesWhere(w, r, r.PathValue("guid"))
}

func (c *CC) listPackagesWhere(w http.ResponseWriter, r *http.Request, appGUID string) error {
	q := r.URL.Query()
	p, err := parseList(q, "created_at", "updated_at")
	if err != nil {
		return err
	}
	apps, guids, states, types := queryFilter(q, "app_guids"), queryFilter(q, "guids"), queryFilter(q, "states"), queryFilter(q, "types")
	var out []*packageRec
	err = c.store.read(r.Context(), func(tx *stx) error {
		var all []*packageRec
		var err error
		switch {
		case appGUID != "":
			if _, err := getApp(tx, appGUID); err != nil {
				return err
			}
			all, err = listRecs[packageRec](tx, tPackages, "app_guid = ?", appGUID)
		case apps.present && len(apps.set) <= 500:
			all, err = listIn[packageRec](tx, tPackages, "app_guid", apps.values())
		default:
			all, err = listRecs[packageRec](tx, tPackages, "")
		}
		for _, pk := range all {
			if apps.match(pk.AppGUID) && guids.match(pk.GUID) && states.match(pk.State) && types.match(pk.Type) {
				out = append(out, pk)
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	sortItems(out, p.orderBy, func(pk *packageRec) sortKeys { return sortKeys{"", pk.CreatedAt, pk.UpdatedAt, pk.GUID} })
	base := c.base(r)
	res := make([]ccapi.Package, len(out))
	for i, pk := range out {
		res[i] = presentPackage(base, pk)
	}
	return writeJSON(w, http.StatusOK, paginate(base, r, p, res))
}

func (c *CC) tooLarge() *apiError {
	return errf(http.StatusRequestEntityTooLarge, ccapi.ErrRequestTooLarge,
		"The package is larger than the %d bytes allowed (max package size).", c.cfg.MaxPackageBytes)
}

// uploadPackage is POST /v3/packages/:guid/upload. Nothing changes unless
// the whole upload is good: a package too large (413), or a zip that is
// not one, climbs out of its directory, links outside it, or holds too
// many entries (422), leaves the package AWAITING_UPLOAD and no file.
func (c *CC) uploadPackage(w http.ResponseWriter, r *http.Request) error {
	guid := r.PathValue("guid")
	var pkg *packageRec
	if err := c.store.read(r.Context(), func(tx *stx) (err error) {
		pkg, err = getPackage(tx, guid)
		return err
	}); err != nil {
		return err
	}
	if pkg.State != ccapi.PackageAwaitingUpload {
		return errf(http.StatusBadRequest, ccapi.ErrPackageBitsAlreadyUploaded, "Bits may be uploaded only once. Create a new package to upload different bits.")
	}
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/form-data" || params["boundary"] == "" {
		return badRequest("The upload must be multipart/form-data with the field resources and the file bits")
	}
	limit := c.cfg.MaxPackageBytes + multipartOverhead
	if r.ContentLength > limit {
		return c.tooLarge()
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(uploadTimeout))
	defer rc.SetReadDeadline(time.Time{})

	tmpDir, err := os.MkdirTemp(filepath.Join(c.cfg.StateDir, "tmp"), "upload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmpDir)
	bitsPath := ""
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	mr, err := r.MultipartReader()
	if err != nil {
		return badRequest("The upload is not multipart/form-data: %v", err)
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return c.uploadReadError(err)
		}
		switch part.FormName() {
		case "resources":
			data, err := io.ReadAll(io.LimitReader(part, maxResourcesField+1))
			if err != nil {
				return c.uploadReadError(err)
			}
			if len(data) > maxResourcesField {
				return errf(http.StatusRequestEntityTooLarge, ccapi.ErrRequestTooLarge, "The resources field is larger than %d bytes.", maxResourcesField)
			}
			var res []json.RawMessage
			if err := json.Unmarshal(data, &res); err != nil {
				return errf(http.StatusUnprocessableEntity, ccapi.ErrAppBitsUploadInvalid, "The app upload is invalid: the resources field is not a JSON array")
			}
			if len(res) > 0 {
				return errf(http.StatusUnprocessableEntity, ccapi.ErrAppBitsUploadInvalid,
					"The app upload is invalid: minicf keeps no resource cache, so resources must be [] (POST /v3/resource_matches always answers [])")
			}
		case "bits":
			if bitsPath != "" {
				return errf(http.StatusUnprocessableEntity, ccapi.ErrAppBitsUploadInvalid, "The app upload is invalid: it holds more than one bits file")
			}
			bitsPath = filepath.Join(tmpDir, "bits.zip")
			f, err := os.OpenFile(bitsPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			n, err := io.Copy(f, io.LimitReader(part, c.cfg.MaxPackageBytes+1))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return c.uploadReadError(err)
			}
			if n > c.cfg.MaxPackageBytes {
				return c.tooLarge()
			}
		default:
			if _, err := io.Copy(io.Discard, part); err != nil {
				return c.uploadReadError(err)
			}
		}
	}

	unpacked := filepath.Join(tmpDir, "app")
	if err := os.Mkdir(unpacked, 0o700); err != nil {
		return err
	}
	if bitsPath != "" {
		if err := unpackZip(bitsPath, unpacked, zipLimits{maxBytes: c.cfg.MaxPackageBytes, maxEntries: c.cfg.MaxPackageFiles}); err != nil {
			return c.packageError(err)
		}
	}
	file := guid + "-" + randomSuffix() + ".zip"
	final := c.packagePath(file)
	sum1, sum256, err := packDir(unpacked, final)
	if err != nil {
		return c.packageError(err)
	}
	err = c.store.write(r.Context(), func(tx *stx) (err error) {
		if pkg, err = getPackage(tx, guid); err != nil {
			return err
		}
		if pkg.State != ccapi.PackageAwaitingUpload {
			return errf(http.StatusBadRequest, ccapi.ErrPackageBitsAlreadyUploaded, "Bits may be uploaded only once. Create a new package to upload different bits.")
		}
		pkg.State, pkg.File, pkg.SHA1, pkg.SHA256, pkg.UpdatedAt = ccapi.PackageReady, file, sum1, sum256, c.now()
		return updateRec(tx, tPackages, pkg)
	})
	if err != nil {
		os.Remove(final)
		return err
	}
	c.log.Info("cc-package-uploaded", "package_guid", guid, "app_guid", pkg.AppGUID, "sha256", sum256)
	return writeJSON(w, http.StatusOK, presentPackage(c.base(r), pkg))
}

func (c *CC) uploadReadError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return c.tooLarge()
	}
	return badRequest("Cannot read the upload: %v", err)
}

func (c *CC) packageError(err error) error {
	var big *errTooLarge
	if errors.As(err, &big) {
		return errf(http.StatusRequestEntityTooLarge, ccapi.ErrRequestTooLarge, "The package is too large: %s.", big.msg)
	}
	return errf(http.StatusUnprocessableEntity, ccapi.ErrAppBitsUploadInvalid, "The app upload is invalid: %v", err)
}

// serveFile answers a kept package or droplet file.
func serveFile(w http.ResponseWriter, r *http.Request, path, contentType, what string) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return notFound(what + " not found")
		}
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	http.ServeContent(w, r, "", fi.ModTime(), f)
	return nil
}

// downloadPackage serves a READY package's zip (internal API, and
// GET /v3/packages/:guid/download).
func (c *CC) downloadPackage(w http.ResponseWriter, r *http.Request) error {
	var p *packageRec
	if err := c.store.read(r.Context(), func(tx *stx) (err error) {
		p, err = getPackage(tx, r.PathValue("guid"))
		return err
	}); err != nil {
		return err
	}
	if p.State != ccapi.PackageReady || p.File == "" {
		return notFound("Package not found")
	}
	return serveFile(w, r, c.packagePath(p.File), "application/zip", "Package")
}
