package gateway

import (
	"encoding/base64"
	"errors"
	"net/http"
	"regexp"
	"strconv"

	"nimbus/rpc"
)

// codeInput is Lambda's FunctionCode shape.
type codeInput struct {
	ZipFile         []byte `json:"ZipFile"` // base64 in JSON
	S3Bucket        string `json:"S3Bucket"`
	S3Key           string `json:"S3Key"`
	S3ObjectVersion string `json:"S3ObjectVersion"`
	ImageURI        string `json:"ImageUri"`
}

// createFunctionInput is Lambda's CreateFunction request, the fields
// nimbus reads; others are ignored.
type createFunctionInput struct {
	FunctionName  string       `json:"FunctionName"`
	Runtime       string       `json:"Runtime"`
	Role          string       `json:"Role"`
	Handler       string       `json:"Handler"`
	Code          codeInput    `json:"Code"`
	Description   string       `json:"Description"`
	Timeout       int          `json:"Timeout"`
	MemorySize    int          `json:"MemorySize"`
	Publish       bool         `json:"Publish"`
	Environment   *environment `json:"Environment"`
	PackageType   string       `json:"PackageType"`
	Architectures []string     `json:"Architectures"`
	Layers        []string     `json:"Layers"`
	// EphemeralStorage is the size of /tmp; nil means the default.
	EphemeralStorage *ephemeralStorage `json:"EphemeralStorage"`
}

// roleARN is Lambda's pattern for an execution role. Roles are checked and
// stored (and returned), not assumed: there is no access control yet.
var roleARN = regexp.MustCompile(`^arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$`)

func (g *Gateway) uploadTooLarge(op string) func() error {
	return func() error {
		return rpc.Errorf(CodeRequestEntityTooLarge, "Request must be smaller than %d bytes for the %s operation", g.uploadLimit, op)
	}
}

func (g *Gateway) createFunction(w http.ResponseWriter, r *http.Request, _ pathArgs) error {
	body, release, err := g.readUpload(w, r, opCreateFunction)
	if err != nil {
		return err
	}
	defer release()
	var in createFunctionInput
	if err := unmarshalBody(body, &in); err != nil {
		return err
	}
	if err := checkUnsupported(in.PackageType, in.Code); err != nil {
		return err
	}
	if err := checkRole(in.Role); err != nil {
		return err
	}
	if err := checkArchitectures(in.Architectures); err != nil {
		return err
	}
	req := &rpc.CreateFunctionRequest{
		Name:        in.FunctionName,
		Runtime:     in.Runtime,
		Handler:     in.Handler,
		MemoryMB:    in.MemorySize,
		TimeoutSec:  in.Timeout,
		ZipFile:     in.Code.ZipFile,
		Role:        in.Role,
		Description: in.Description,
		Layers:      in.Layers,
	}
	if in.EphemeralStorage != nil {
		req.EphemeralStorageMB = in.EphemeralStorage.Size
	}
	if in.Environment != nil {
		req.Env = in.Environment.Variables
	}
	if len(in.Description) > maxDescription {
		return errDescription()
	}
	resp, err := g.opts.Ops.CreateFunction(r.Context(), req)
	if err != nil {
		return err
	}
	fn := resp.Function
	if in.Publish {
		if fn, err = g.publish(r, fn, in.Description); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusCreated, g.configuration(fn))
	return nil
}

// publish publishes fn, just created or updated, as a version (the
// Publish option of CreateFunction and UpdateFunctionCode), on the
// condition that $LATEST is still fn.
func (g *Gateway) publish(r *http.Request, fn *rpc.FunctionConfig, description string) (*rpc.FunctionConfig, error) {
	v, err := g.opts.Ops.PublishVersion(r.Context(), &rpc.PublishVersionRequest{Name: fn.Name, Description: description, IfRevision: fn.Revision})
	if err != nil {
		return nil, err
	}
	return v.Function, nil
}

// checkUnsupported refuses, with a clear error, the options of a code
// upload that nimbus does not offer yet.
func checkUnsupported(packageType string, code codeInput) error {
	switch {
	case packageType != "" && packageType != packageTypeZip:
		return apiError(CodeNotImplemented, "PackageType %s is not supported: upload a Zip", packageType)
	case code.S3Bucket != "" || code.S3Key != "" || code.S3ObjectVersion != "" || code.ImageURI != "":
		return apiError(CodeNotImplemented, "Code from S3 or a container image is not supported: send the zip as Code.ZipFile")
	}
	return nil
}

func checkRole(role string) error {
	if role != "" && !roleARN.MatchString(role) {
		return rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value '%s' at 'role' failed to satisfy constraint: Member must satisfy regular expression pattern: %s", role, roleARN.String())
	}
	return nil
}

func checkArchitectures(archs []string) error {
	if len(archs) == 0 || len(archs) == 1 && archs[0] == hostArchitecture() {
		return nil
	}
	return rpc.Errorf(rpc.CodeInvalidParameterValue, "Architectures must be [%s]: functions run on this cluster's own architecture", hostArchitecture())
}

// getFunctionOutput is Lambda's GetFunction response, less the code's
// download location (nimbus has no download URL for code).
type getFunctionOutput struct {
	Configuration functionConfiguration `json:"Configuration"`
	Concurrency   *concurrencyOutput    `json:"Concurrency,omitempty"`
}

func (g *Gateway) getFunction(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	ref, err := g.target(r.URL.Query(), a)
	if err != nil {
		return err
	}
	resp, err := g.opts.Ops.GetFunction(r.Context(), &rpc.GetFunctionRequest{Name: ref.Name, Qualifier: ref.Qualifier})
	if err != nil {
		return err
	}
	out := getFunctionOutput{Configuration: g.configuration(resp.Function)}
	conc, err := g.opts.Ops.GetConcurrency(r.Context(), &rpc.GetFunctionRequest{Name: ref.Name})
	if err != nil {
		return err
	}
	if conc.Reserved != nil {
		out.Concurrency = &concurrencyOutput{ReservedConcurrentExecutions: conc.Reserved}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (g *Gateway) getFunctionConfiguration(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	ref, err := g.target(r.URL.Query(), a)
	if err != nil {
		return err
	}
	resp, err := g.opts.Ops.GetFunction(r.Context(), &rpc.GetFunctionRequest{Name: ref.Name, Qualifier: ref.Qualifier})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g.configuration(resp.Function))
	return nil
}

// updateCodeInput is Lambda's UpdateFunctionCode request.
type updateCodeInput struct {
	codeInput
	Publish       bool     `json:"Publish"`
	DryRun        bool     `json:"DryRun"`
	RevisionID    string   `json:"RevisionId"`
	Architectures []string `json:"Architectures"`
}

func (g *Gateway) updateFunctionCode(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	name, err := g.latestOnly(r.URL.Query(), a)
	if err != nil {
		return err
	}
	body, release, err := g.readUpload(w, r, opUpdateFunctionCode)
	if err != nil {
		return err
	}
	defer release()
	var in updateCodeInput
	if err := unmarshalBody(body, &in); err != nil {
		return err
	}
	if err := checkUnsupported("", in.codeInput); err != nil {
		return err
	}
	if in.DryRun {
		return apiError(CodeNotImplemented, "DryRun is not supported for UpdateFunctionCode yet")
	}
	if err := checkArchitectures(in.Architectures); err != nil {
		return err
	}
	req := &rpc.UpdateCodeRequest{Name: name, ZipFile: in.ZipFile}
	if in.RevisionID != "" {
		cur, err := g.opts.Ops.GetFunction(r.Context(), &rpc.GetFunctionRequest{Name: name})
		if err != nil {
			return err
		}
		if req.IfRevision, err = matchRevision(cur.Function, in.RevisionID); err != nil {
			return err
		}
	}
	resp, err := g.opts.Ops.UpdateFunctionCode(r.Context(), req)
	if err != nil {
		return err
	}
	fn := resp.Function
	if in.Publish {
		if fn, err = g.publish(r, fn, ""); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, g.configuration(fn))
	return nil
}

// matchRevision checks a caller's RevisionId against the function as read
// and returns the revision to make the update conditional on, so that a
// change committed between the read and the update is refused too.
func matchRevision(f *rpc.FunctionConfig, want string) (uint64, error) {
	if revisionID(f) != want {
		return 0, errRevisionMismatch()
	}
	return f.Revision, nil
}

func errRevisionMismatch() error {
	return rpc.Errorf(rpc.CodePreconditionFailed,
		"The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
}

// updateConfigInput is Lambda's UpdateFunctionConfiguration request, the
// fields nimbus reads.
type updateConfigInput struct {
	Role        string       `json:"Role"`
	Handler     *string      `json:"Handler"`
	Runtime     *string      `json:"Runtime"`
	Description *string      `json:"Description"`
	Timeout     *int         `json:"Timeout"`
	MemorySize  *int         `json:"MemorySize"`
	Environment *environment `json:"Environment"`
	RevisionID  string       `json:"RevisionId"`
	Layers      *[]string    `json:"Layers"`
	// EphemeralStorage, when given, sets the size of /tmp.
	EphemeralStorage *ephemeralStorage `json:"EphemeralStorage"`
}

func (g *Gateway) updateFunctionConfiguration(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	name, err := g.latestOnly(r.URL.Query(), a)
	if err != nil {
		return err
	}
	var in updateConfigInput
	if err := g.decodeJSON(w, r, maxConfigBody, opUpdateFunctionConfiguration, &in); err != nil {
		return err
	}
	if err := checkRole(in.Role); err != nil {
		return err
	}
	req := &rpc.UpdateConfigRequest{Name: name, MemoryMB: in.MemorySize, TimeoutSec: in.Timeout, Description: in.Description, Layers: in.Layers}
	if in.Role != "" {
		req.Role = &in.Role
	}
	if in.EphemeralStorage != nil {
		req.EphemeralStorageMB = &in.EphemeralStorage.Size
	}
	if in.Environment != nil {
		req.Env = in.Environment.Variables
		if req.Env == nil {
			req.Env = map[string]string{} // an Environment without Variables clears them
		}
	}
	if in.Handler != nil || in.Runtime != nil || in.RevisionID != "" {
		cur, err := g.opts.Ops.GetFunction(r.Context(), &rpc.GetFunctionRequest{Name: name})
		if err != nil {
			return err
		}
		if in.Handler != nil && *in.Handler != cur.Function.Handler {
			return apiError(CodeNotImplemented, "Changing a function's Handler is not supported yet: create the function anew")
		}
		if in.Runtime != nil && *in.Runtime != cur.Function.Runtime {
			return apiError(CodeNotImplemented, "Changing a function's Runtime is not supported yet: create the function anew")
		}
		if in.RevisionID != "" {
			if req.IfRevision, err = matchRevision(cur.Function, in.RevisionID); err != nil {
				return err
			}
		} else {
			req.IfRevision = cur.Function.Revision // Handler and Runtime were checked on this revision
		}
	}
	resp, err := g.opts.Ops.UpdateFunctionConfig(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g.configuration(resp.Function))
	return nil
}

func (g *Gateway) deleteFunction(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	ref, err := parseFunctionRef(a.Function, r.URL.Query().Get("Qualifier"))
	if err != nil {
		return err
	}
	if ref.Qualifier == rpc.VersionLatest {
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "$LATEST version cannot be deleted without deleting the function.")
	}
	// With a qualifier, the version alone is deleted.
	if _, err := g.opts.Ops.DeleteFunction(r.Context(), &rpc.GetFunctionRequest{Name: ref.Name, Qualifier: ref.Qualifier}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// List pages: Lambda returns at most 50 functions a page whatever
// MaxItems asks, and takes MaxItems from 1 to 10000.
const (
	listPageMax  = 50
	listItemsMax = 10000
)

type listFunctionsOutput struct {
	Functions  []functionConfiguration `json:"Functions"`
	NextMarker string                  `json:"NextMarker,omitempty"`
}

func (g *Gateway) listFunctions(w http.ResponseWriter, r *http.Request, _ pathArgs) error {
	q := r.URL.Query()
	limit := listPageMax
	if s := q.Get("MaxItems"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > listItemsMax {
			return rpc.Errorf(rpc.CodeInvalidParameterValue,
				"1 validation error detected: Value '%s' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and %d", s, listItemsMax)
		}
		limit = min(n, listPageMax)
	}
	if v := q.Get("FunctionVersion"); v != "" && v != "ALL" {
		return rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value '%s' at 'functionVersion' failed to satisfy constraint: Member must satisfy enum value set: [ALL]", v)
	}
	if q.Get("MasterRegion") != "" {
		return apiError(CodeNotImplemented, "MasterRegion (Lambda@Edge replicas) is not supported")
	}
	if q.Get("FunctionVersion") == "ALL" {
		return g.listAllVersions(w, r, limit)
	}
	after, err := decodeMarker(q.Get("Marker"))
	if err != nil {
		return err
	}
	resp, err := g.opts.Ops.ListFunctions(r.Context(), &rpc.ListFunctionsRequest{})
	if err != nil {
		return err
	}
	out := listFunctionsOutput{Functions: []functionConfiguration{}}
	for i, f := range resp.Functions { // sorted by name
		if f.Name <= after && after != "" {
			continue
		}
		if len(out.Functions) == limit {
			out.NextMarker = encodeMarker(resp.Functions[i-1].Name)
			break
		}
		out.Functions = append(out.Functions, g.configuration(f))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// A marker is the last name of the page before, opaque to callers.
func encodeMarker(name string) string { return base64.RawURLEncoding.EncodeToString([]byte(name)) }

func decodeMarker(m string) (string, error) {
	if m == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(m)
	if err != nil || len(b) == 0 || len(b) > maxFunctionRef {
		return "", rpc.Errorf(rpc.CodeInvalidParameterValue, "Invalid Marker: %q", m)
	}
	return string(b), nil
}

// listAllVersions is ListFunctions with FunctionVersion=ALL: every
// function's $LATEST followed by its published versions, by name; the
// marker is the last entry's name:version.
func (g *Gateway) listAllVersions(w http.ResponseWriter, r *http.Request, limit int) error {
	resp, err := g.opts.Ops.ListFunctions(r.Context(), &rpc.ListFunctionsRequest{})
	if err != nil {
		return err
	}
	var all []*rpc.FunctionConfig
	for _, f := range resp.Functions {
		vs, err := g.opts.Ops.ListVersions(r.Context(), &rpc.ListVersionsRequest{Name: f.Name})
		switch {
		case err == nil:
			all = append(all, vs.Versions...)
		case errors.Is(err, rpc.ErrResourceNotFound): // deleted meanwhile
		default:
			return err
		}
	}
	keys := make([]string, len(all))
	for i, f := range all {
		keys[i] = f.Name + ":" + f.VersionName()
	}
	from, to, next, err := page(keys, r.URL.Query().Get("Marker"), limit)
	if err != nil {
		return err
	}
	out := listFunctionsOutput{Functions: []functionConfiguration{}, NextMarker: next}
	for _, f := range all[from:to] {
		out.Functions = append(out.Functions, g.configuration(f))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
