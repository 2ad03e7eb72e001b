package rpc

// Method names of the function registry.
const (
	MethodFunctionCreate       = "Function.Create"
	MethodFunctionUpdateCode   = "Function.UpdateCode"
	MethodFunctionUpdateConfig = "Function.UpdateConfig"
	MethodFunctionGet          = "Function.Get"
	MethodFunctionList         = "Function.List"
	MethodFunctionDelete       = "Function.Delete"
)

// FunctionConfig is a deployed function as the registry holds it and as
// clients see it. It is the one type for this concept: the scheduler's state
// stores it, the wire carries it, and `-o json` prints it.
//
// A FunctionConfig held by the scheduler is immutable: copy it (Clone), change
// the copy, and store the copy.
type FunctionConfig struct {
	Name       string            `msgpack:"name" json:"FunctionName"`
	Runtime    string            `msgpack:"runtime" json:"Runtime"`
	Handler    string            `msgpack:"handler" json:"Handler"`
	MemoryMB   int               `msgpack:"memory_mb" json:"MemorySize"`
	TimeoutSec int               `msgpack:"timeout_sec" json:"Timeout"`
	Env        map[string]string `msgpack:"env,omitempty" json:"Environment,omitempty"`
	// EphemeralStorageMB is the size of the function's /tmp (Lambda's
	// EphemeralStorage.Size), apart from its memory. 0, in records made
	// before it existed, means DefaultEphemeralStorageMB: read it with
	// TmpSizeMB.
	EphemeralStorageMB int `msgpack:"ephemeral_mb,omitempty" json:"EphemeralStorageSize,omitempty"`
	// CodeSHA256 is the hex sha256 of the code zip: the bundle's address.
	CodeSHA256 string `msgpack:"code_sha256" json:"CodeSha256"`
	// CodeSize is the size of the zip in bytes.
	CodeSize int64 `msgpack:"code_size" json:"CodeSize"`
	// Revision changes with every update of code or configuration (it is the
	// Raft index of the change). Warm sandboxes are keyed by name and revision.
	Revision uint64 `msgpack:"revision" json:"RevisionId"`
	// LastModifiedMs is the time of the last change in Unix milliseconds, as
	// supplied by the node that proposed it.
	LastModifiedMs int64 `msgpack:"last_modified_ms" json:"LastModified"`
	// DeadLetter is the legacy dead-letter target of asynchronous
	// invocations (Lambda's DeadLetterConfig.TargetArn) as the caller gave
	// it: queue:NAME or an SQS ARN; "" for none.
	DeadLetter string `msgpack:"dead_letter,omitempty" json:"DeadLetterTarget,omitempty"`
	// Role is the execution role the caller gave (Lambda's Role), kept as
	// given: there is no access control yet to assume it.
	Role string `msgpack:"role,omitempty" json:"Role,omitempty"`

	// Versions (rpc/versions.go). Version is "" for $LATEST and the
	// version's number ("1", "2", ...) for a published version, which is
	// an immutable copy of $LATEST as it was when published (its Revision
	// is the $LATEST revision it copies). Description is the function's
	// description, or a published version's (by default the one $LATEST
	// had when it was published).
	Version     string `msgpack:"version,omitempty" json:"Version,omitempty"`
	Description string `msgpack:"description,omitempty" json:"Description,omitempty"`

	// Layers (issue 10) are the layer versions the function uses, in the
	// order they are extracted under /opt.
	Layers []FunctionLayer `msgpack:"layers,omitempty" json:"Layers,omitempty"`
}

// DefaultEphemeralStorageMB is a function's /tmp when none is given, as
// Lambda's.
const DefaultEphemeralStorageMB = 512

// TmpSizeMB is the size of the function's /tmp in MB.
func (f *FunctionConfig) TmpSizeMB() int {
	if f.EphemeralStorageMB == 0 {
		return DefaultEphemeralStorageMB
	}
	return f.EphemeralStorageMB
}

// VersionName is the version as Lambda names it: "$LATEST" or a number.
func (f *FunctionConfig) VersionName() string {
	if f.Version == "" {
		return VersionLatest
	}
	return f.Version
}

// Clone returns a deep copy.
func (f *FunctionConfig) Clone() *FunctionConfig {
	c := *f
	if f.Layers != nil {
		c.Layers = append([]FunctionLayer(nil), f.Layers...)
	}
	if f.Env != nil {
		c.Env = make(map[string]string, len(f.Env))
		for k, v := range f.Env {
			c.Env[k] = v
		}
	}
	return &c
}

// CreateFunctionRequest deploys a new function. ZipFile is the code as a zip
// archive; a client deploying a folder zips it first.
type CreateFunctionRequest struct {
	Name       string            `msgpack:"name"`
	Runtime    string            `msgpack:"runtime"`
	Handler    string            `msgpack:"handler"`
	MemoryMB   int               `msgpack:"memory_mb"`   // 0 means the default (128)
	TimeoutSec int               `msgpack:"timeout_sec"` // 0 means the default (3)
	Env        map[string]string `msgpack:"env,omitempty"`
	ZipFile    []byte            `msgpack:"zip_file"`
	// EphemeralStorageMB is the size of /tmp, 512 to 10240; 0 means 512.
	EphemeralStorageMB int    `msgpack:"ephemeral_mb,omitempty"`
	Role               string `msgpack:"role,omitempty"` // kept as given
	// Description is the function's description (at most 256 bytes).
	Description string `msgpack:"description,omitempty"`
	// Layers (issue 10) names up to MaxFunctionLayers layer versions,
	// NAME:VERSION or a layer version ARN, in extraction order.
	Layers []string `msgpack:"layers,omitempty"`
}

// UpdateCodeRequest replaces a function's code.
type UpdateCodeRequest struct {
	Name    string `msgpack:"name"`
	ZipFile []byte `msgpack:"zip_file"`
	// IfRevision, when not 0, makes the update fail with
	// CodePreconditionFailed unless the function's Revision is this one.
	IfRevision uint64 `msgpack:"if_revision,omitempty"`
}

// UpdateConfigRequest changes a function's configuration. Nil fields are left
// as they are; a non-nil Env replaces the whole environment (an empty map
// clears it, which is why Env is not omitempty: nil and empty must differ
// on the wire).
type UpdateConfigRequest struct {
	Name       string            `msgpack:"name"`
	MemoryMB   *int              `msgpack:"memory_mb,omitempty"`
	TimeoutSec *int              `msgpack:"timeout_sec,omitempty"`
	Env        map[string]string `msgpack:"env"`
	// EphemeralStorageMB, when not nil, sets the size of /tmp.
	EphemeralStorageMB *int `msgpack:"ephemeral_mb,omitempty"`
	// DeadLetter, when not nil, sets the dead-letter target (queue:NAME
	// or an SQS ARN); "" clears it.
	DeadLetter *string `msgpack:"dead_letter,omitempty"`
	// Role, when not nil, replaces the execution role.
	Role *string `msgpack:"role,omitempty"`
	// Description, when not nil, replaces the description.
	Description *string `msgpack:"description,omitempty"`
	// Layers (issue 10), when not nil, replaces the function's layers
	// (NAME:VERSION or layer version ARNs, as CreateFunctionRequest's; an
	// empty list removes them).
	Layers *[]string `msgpack:"layers,omitempty"`
	// IfRevision, when not 0, makes the update fail with
	// CodePreconditionFailed unless the function's Revision is this one.
	IfRevision uint64 `msgpack:"if_revision,omitempty"`
}

// GetFunctionRequest names one function (also used by Delete).
type GetFunctionRequest struct {
	Name string `msgpack:"name"`
	// Qualifier, if set, names a version or an alias (Get reads it;
	// Delete deletes that version). Name may also be `name:qualifier` or
	// an ARN (ParseFunctionRef).
	Qualifier string `msgpack:"qualifier,omitempty"`
}

// FunctionResponse answers Create, UpdateCode, UpdateConfig and Get.
type FunctionResponse struct {
	Function *FunctionConfig `msgpack:"function"`
}

// ListFunctionsRequest lists every function.
type ListFunctionsRequest struct{}

// ListFunctionsResponse holds the functions sorted by name.
type ListFunctionsResponse struct {
	Functions []*FunctionConfig `msgpack:"functions"`
}

// DeleteFunctionResponse answers Delete.
type DeleteFunctionResponse struct{}
