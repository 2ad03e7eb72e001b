package rpc

import "context"

// Method names of versions and aliases.
const (
	MethodVersionPublish = "Function.PublishVersion"
	MethodVersionList    = "Function.ListVersions"
	MethodVersionDelete  = "Function.DeleteVersion"
	MethodAliasCreate    = "Function.CreateAlias"
	MethodAliasUpdate    = "Function.UpdateAlias"
	MethodAliasGet       = "Function.GetAlias"
	MethodAliasList      = "Function.ListAliases"
	MethodAliasDelete    = "Function.DeleteAlias"
)

// Alias is a named pointer to a published version of a function, or to
// $LATEST, with at most one additional version that takes a share of the
// invocations (Lambda's AliasConfiguration with its RoutingConfig). A
// stored Alias is immutable.
type Alias struct {
	FunctionName string `msgpack:"function"`
	Name         string `msgpack:"name"`
	// FunctionVersion is the primary version: a number, or $LATEST.
	FunctionVersion string `msgpack:"version"`
	Description     string `msgpack:"description,omitempty"`
	// AdditionalVersion, when set, is a published version (never $LATEST
	// nor FunctionVersion) that serves AdditionalWeight of the
	// invocations, 0 <= AdditionalWeight < 1; the primary serves the rest.
	AdditionalVersion string  `msgpack:"additional_version,omitempty"`
	AdditionalWeight  float64 `msgpack:"additional_weight,omitempty"`
	// Revision is the Raft index of the alias's last change (its
	// RevisionId).
	Revision uint64 `msgpack:"revision"`
}

// Weights is the alias's routing as Lambda's AdditionalVersionWeights: nil
// when it routes everything to FunctionVersion.
func (a *Alias) Weights() map[string]float64 {
	if a.AdditionalVersion == "" {
		return nil
	}
	return map[string]float64{a.AdditionalVersion: a.AdditionalWeight}
}

// PublishVersionRequest publishes $LATEST as a new version. The
// preconditions, when set, must hold of $LATEST or the call fails with
// PreconditionFailedException: CodeSHA256 (hex, the store's form) and
// IfRevision.
type PublishVersionRequest struct {
	Name        string `msgpack:"name"`
	Description string `msgpack:"description,omitempty"`
	CodeSHA256  string `msgpack:"code_sha256,omitempty"`
	IfRevision  uint64 `msgpack:"if_revision,omitempty"`
}

// ListVersionsRequest lists a function's versions.
type ListVersionsRequest struct {
	Name string `msgpack:"name"`
}

// ListVersionsResponse holds $LATEST first, then the published versions
// in ascending order.
type ListVersionsResponse struct {
	Versions []*FunctionConfig `msgpack:"versions"`
}

// DeleteVersionRequest deletes one published version.
type DeleteVersionRequest struct {
	Name    string `msgpack:"name"`
	Version string `msgpack:"version"`
}

// DeleteVersionResponse answers MethodVersionDelete.
type DeleteVersionResponse struct{}

// CreateAliasRequest creates an alias. Weights holds at most one version.
type CreateAliasRequest struct {
	FunctionName    string             `msgpack:"function_name"`
	Name            string             `msgpack:"name"`
	FunctionVersion string             `msgpack:"version"`
	Description     string             `msgpack:"description,omitempty"`
	Weights         map[string]float64 `msgpack:"weights,omitempty"`
}

// UpdateAliasRequest changes an alias. Empty or nil fields are left as
// they are; SetWeights replaces the routing with Weights (an empty map
// routes everything to the primary again).
type UpdateAliasRequest struct {
	FunctionName    string             `msgpack:"function_name"`
	Name            string             `msgpack:"name"`
	FunctionVersion string             `msgpack:"version,omitempty"`
	Description     *string            `msgpack:"description,omitempty"`
	SetWeights      bool               `msgpack:"set_weights,omitempty"`
	Weights         map[string]float64 `msgpack:"weights,omitempty"`
	// IfRevision, when not 0, makes the update fail with
	// PreconditionFailedException unless the alias's Revision is this one.
	IfRevision uint64 `msgpack:"if_revision,omitempty"`
}

// GetAliasRequest names one alias (also used by Delete).
type GetAliasRequest struct {
	FunctionName string `msgpack:"function_name"`
	Name         string `msgpack:"name"`
}

// AliasResponse answers Create, Update and Get.
type AliasResponse struct {
	Alias *Alias `msgpack:"alias"`
}

// ListAliasesRequest lists a function's aliases; FunctionVersion, when
// set, keeps those that route to that version.
type ListAliasesRequest struct {
	FunctionName    string `msgpack:"function_name"`
	FunctionVersion string `msgpack:"version,omitempty"`
}

// ListAliasesResponse holds the aliases sorted by name.
type ListAliasesResponse struct {
	Aliases []*Alias `msgpack:"aliases"`
}

// DeleteAliasResponse answers MethodAliasDelete.
type DeleteAliasResponse struct{}

// PublishVersion publishes $LATEST (MethodVersionPublish).
func (c *Client) PublishVersion(ctx context.Context, req *PublishVersionRequest) (*FunctionResponse, error) {
	return callTyped[FunctionResponse](ctx, c, MethodVersionPublish, req)
}

// ListVersions lists a function's versions (MethodVersionList).
func (c *Client) ListVersions(ctx context.Context, req *ListVersionsRequest) (*ListVersionsResponse, error) {
	return callTyped[ListVersionsResponse](ctx, c, MethodVersionList, req)
}

// DeleteVersion deletes a published version (MethodVersionDelete).
func (c *Client) DeleteVersion(ctx context.Context, req *DeleteVersionRequest) (*DeleteVersionResponse, error) {
	return callTyped[DeleteVersionResponse](ctx, c, MethodVersionDelete, req)
}

// CreateAlias creates an alias (MethodAliasCreate).
func (c *Client) CreateAlias(ctx context.Context, req *CreateAliasRequest) (*AliasResponse, error) {
	return callTyped[AliasResponse](ctx, c, MethodAliasCreate, req)
}

// UpdateAlias changes an alias (MethodAliasUpdate).
func (c *Client) UpdateAlias(ctx context.Context, req *UpdateAliasRequest) (*AliasResponse, error) {
	return callTyped[AliasResponse](ctx, c, MethodAliasUpdate, req)
}

// GetAlias returns an alias (MethodAliasGet).
func (c *Client) GetAlias(ctx context.Context, req *GetAliasRequest) (*AliasResponse, error) {
	return callTyped[AliasResponse](ctx, c, MethodAliasGet, req)
}

// ListAliases lists a function's aliases (MethodAliasList).
func (c *Client) ListAliases(ctx context.Context, req *ListAliasesRequest) (*ListAliasesResponse, error) {
	return callTyped[ListAliasesResponse](ctx, c, MethodAliasList, req)
}

// DeleteAlias deletes an alias (MethodAliasDelete).
func (c *Client) DeleteAlias(ctx context.Context, req *GetAliasRequest) (*DeleteAliasResponse, error) {
	return callTyped[DeleteAliasResponse](ctx, c, MethodAliasDelete, req)
}

// CodeCodeStorageExceeded is Lambda's exception for a function past its
// storage: here, past scheduler.MaxVersions versions.
const CodeCodeStorageExceeded = "CodeStorageExceededException"
