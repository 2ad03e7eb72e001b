package gateway

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"runtime"
	"time"

	"nimbus/rpc"
)

// functionConfiguration is Lambda's FunctionConfiguration shape, with the
// fields nimbus has.
type functionConfiguration struct {
	FunctionName     string           `json:"FunctionName"`
	FunctionArn      string           `json:"FunctionArn"`
	Runtime          string           `json:"Runtime"`
	Role             string           `json:"Role,omitempty"`
	Handler          string           `json:"Handler"`
	CodeSize         int64            `json:"CodeSize"`
	Timeout          int              `json:"Timeout"`
	MemorySize       int              `json:"MemorySize"`
	LastModified     string           `json:"LastModified"`
	CodeSha256       string           `json:"CodeSha256"`
	Version          string           `json:"Version"`
	Description      string           `json:"Description"`
	Environment      *environment     `json:"Environment,omitempty"`
	Layers           []layerRef       `json:"Layers,omitempty"`
	TracingConfig    tracingConfig    `json:"TracingConfig"`
	RevisionID       string           `json:"RevisionId"`
	State            string           `json:"State"`
	LastUpdateStatus string           `json:"LastUpdateStatus"`
	PackageType      string           `json:"PackageType"`
	Architectures    []string         `json:"Architectures"`
	EphemeralStorage ephemeralStorage `json:"EphemeralStorage"`
	LoggingConfig    loggingConfig    `json:"LoggingConfig"`
}

// layerRef is a function's layer in FunctionConfiguration.
type layerRef struct {
	Arn      string `json:"Arn"`
	CodeSize int64  `json:"CodeSize"`
}

type environment struct {
	Variables map[string]string `json:"Variables"`
}

type tracingConfig struct {
	Mode string `json:"Mode"`
}

type ephemeralStorage struct {
	Size int `json:"Size"`
}

type loggingConfig struct {
	LogFormat string `json:"LogFormat"`
	LogGroup  string `json:"LogGroup"`
}

// Values Lambda reports that are constant here: a function is usable as
// soon as its create or update commits (its code is stored first), so it
// is always Active and its last update Successful.
const (
	stateActive          = "Active"
	lastUpdateSuccessful = "Successful"
	packageTypeZip       = "Zip"
)

// lambdaTimeLayout is how Lambda writes LastModified.
const lambdaTimeLayout = "2006-01-02T15:04:05.000-0700"

// hostArchitecture is the architecture functions run on: the node's own.
func hostArchitecture() string {
	if runtime.GOARCH == "arm64" {
		return "arm64"
	}
	return "x86_64"
}

func (g *Gateway) configuration(f *rpc.FunctionConfig) functionConfiguration {
	c := functionConfiguration{
		FunctionName:     f.Name,
		FunctionArn:      g.versionARN(f),
		Runtime:          f.Runtime,
		Role:             f.Role,
		Handler:          f.Handler,
		CodeSize:         f.CodeSize,
		Timeout:          f.TimeoutSec,
		MemorySize:       f.MemoryMB,
		LastModified:     time.UnixMilli(f.LastModifiedMs).UTC().Format(lambdaTimeLayout),
		CodeSha256:       codeSHA256(f.CodeSHA256),
		Version:          f.VersionName(),
		Description:      f.Description,
		Layers:           layerRefs(f.Layers),
		TracingConfig:    tracingConfig{Mode: "PassThrough"},
		RevisionID:       revisionID(f),
		State:            stateActive,
		LastUpdateStatus: lastUpdateSuccessful,
		PackageType:      packageTypeZip,
		Architectures:    []string{hostArchitecture()},
		EphemeralStorage: ephemeralStorage{Size: f.TmpSizeMB()},
		LoggingConfig:    loggingConfig{LogFormat: "Text", LogGroup: "/aws/lambda/" + f.Name},
	}
	if len(f.Env) > 0 {
		c.Environment = &environment{Variables: f.Env}
	}
	return c
}

// codeSHA256 turns the store's hex digest into Lambda's base64 form.
func codeSHA256(hexDigest string) string {
	b, err := hex.DecodeString(hexDigest)
	if err != nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(b)
}

// revisionID is Lambda's RevisionId for a function's revision: a UUID
// (version 8, RFC 9562's custom form) derived from the name and the
// revision, so it is the same on every node and changes with every update.
func revisionID(f *rpc.FunctionConfig) string {
	h := sha256.New()
	h.Write([]byte("nimbus-revision\x00"))
	h.Write([]byte(f.Name))
	var rev [8]byte
	binary.BigEndian.PutUint64(rev[:], f.Revision)
	h.Write(rev[:])
	if f.Version != "" { // a version copies its $LATEST's revision
		h.Write([]byte("\x00" + f.Version))
	}
	var b [16]byte
	copy(b[:], h.Sum(nil))
	return formatUUID(b, 8)
}

// versionARN is a configuration's FunctionArn: unqualified for $LATEST
// (as Lambda answers), with the version for a published one.
func (g *Gateway) versionARN(f *rpc.FunctionConfig) string {
	if f.Version == "" {
		return g.opts.ARNs.Function(f.Name, "")
	}
	return g.opts.ARNs.Function(f.Name, f.Version)
}

func layerRefs(ls []rpc.FunctionLayer) []layerRef {
	if len(ls) == 0 {
		return nil
	}
	out := make([]layerRef, len(ls))
	for i, l := range ls {
		out[i] = layerRef{Arn: l.ARN, CodeSize: l.CodeSize}
	}
	return out
}
