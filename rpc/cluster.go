package rpc

// Methods of the cluster: membership and Raft views for operators, reserved
// concurrency, and the internal calls between nodes (the leader's
// concurrency ledger, running an invocation on a worker, worker heartbeats,
// and code distribution).
const (
	MethodClusterMembers = "Cluster.Members"
	MethodClusterRaft    = "Cluster.Raft"
	MethodClusterScope   = "Cluster.ARNScope"

	MethodConcurrencyPut    = "Function.PutConcurrency"
	MethodConcurrencyGet    = "Function.GetConcurrency"
	MethodConcurrencyDelete = "Function.DeleteConcurrency"

	MethodLedgerAcquire   = "Ledger.Acquire"
	MethodLedgerRelease   = "Ledger.Release"
	MethodWorkerHeartbeat = "Ledger.Heartbeat"
	MethodWorkerRun       = "Worker.Run"
	// MethodWorkerRunStream is Worker.Run with the response streamed
	// (parts as MethodInvokeStream's).
	MethodWorkerRunStream = "Worker.RunStream"
	MethodCodeFetch       = "Code.Fetch"
	MethodCodePut         = "Code.Put"
)

// Node roles.
const (
	RoleServer = "server"
	RoleWorker = "worker"
)

// Member statuses, as gossip sees them.
const (
	MemberAlive   = "alive"
	MemberSuspect = "suspect"
	MemberLeft    = "left"
	MemberDead    = "dead"
)

// MembersRequest asks a node for the members it knows.
type MembersRequest struct{}

// Member is one node as the cluster sees it. InFlight and Warm come from the
// leader's view of the node's last heartbeat (0 when unknown).
type Member struct {
	Name       string   `msgpack:"name" json:"name"`
	Addr       string   `msgpack:"addr" json:"address"` // rpc address
	GossipAddr string   `msgpack:"gossip_addr" json:"gossipAddress"`
	Roles      []string `msgpack:"roles" json:"roles"`
	Status     string   `msgpack:"status" json:"status"`
	MemoryMB   int      `msgpack:"memory_mb" json:"memoryMB"`
	InFlight   int      `msgpack:"in_flight" json:"inFlight"`
	Warm       int      `msgpack:"warm" json:"warmSandboxes"`
	Version    string   `msgpack:"version" json:"version"`
}

// MembersResponse lists members sorted by name.
type MembersResponse struct {
	Members []Member `msgpack:"members" json:"members"`
}

// ScopeRequest asks a node for the region and account its ARNs name (an
// ARNScope answers).
type ScopeRequest struct{}

// RaftRequest asks a node for its view of Raft.
type RaftRequest struct{}

// RaftServer is one server in the Raft configuration.
type RaftServer struct {
	ID       string `msgpack:"id" json:"id"`
	Address  string `msgpack:"address" json:"address"`
	Suffrage string `msgpack:"suffrage" json:"suffrage"` // Voter, Nonvoter
	Leader   bool   `msgpack:"leader" json:"leader"`
}

// RaftResponse is the answering node's view: who leads, the term, indexes.
type RaftResponse struct {
	Node         string       `msgpack:"node" json:"node"`
	State        string       `msgpack:"state" json:"state"` // Leader, Follower, Candidate
	Leader       string       `msgpack:"leader" json:"leader"`
	Term         uint64       `msgpack:"term" json:"term"`
	CommitIndex  uint64       `msgpack:"commit_index" json:"commitIndex"`
	AppliedIndex uint64       `msgpack:"applied_index" json:"appliedIndex"`
	Servers      []RaftServer `msgpack:"servers" json:"servers"`
}

// PutConcurrencyRequest reserves concurrency for a function (0 disables it).
type PutConcurrencyRequest struct {
	Name     string `msgpack:"name"`
	Reserved int    `msgpack:"reserved"`
}

// ConcurrencyResponse answers the concurrency methods. Reserved is nil when
// the function draws from the shared pool.
type ConcurrencyResponse struct {
	Name     string `msgpack:"name" json:"FunctionName"`
	Reserved *int   `msgpack:"reserved" json:"ReservedConcurrentExecutions,omitempty"`
}

// AcquireRequest asks the leader for a slot to run one invocation.
type AcquireRequest struct {
	FunctionName string `msgpack:"function_name"`
	// Avoid lists workers the frontend could not reach with an earlier
	// grant of the same invocation.
	Avoid []string `msgpack:"avoid,omitempty"`
	// Qualifier names the version or alias invoked; the leader resolves
	// it (an alias with weights picks its version here) and grants the
	// slot for that version's sandboxes.
	Qualifier string `msgpack:"qualifier,omitempty"`
}

// AcquireResponse grants a slot on a worker, with the function as the
// leader's registry holds it.
type AcquireResponse struct {
	SlotID     uint64          `msgpack:"slot_id"`
	Worker     string          `msgpack:"worker"`
	WorkerAddr string          `msgpack:"worker_addr"`
	Function   *FunctionConfig `msgpack:"function"`
}

// ReleaseRequest gives slots back to the leader.
type ReleaseRequest struct {
	Worker  string   `msgpack:"worker"`
	SlotIDs []uint64 `msgpack:"slot_ids"`
}

// ReleaseResponse answers ReleaseRequest.
type ReleaseResponse struct{}

// SlotInfo is a slot a worker is running, as it reports it.
type SlotInfo struct {
	ID       uint64 `msgpack:"id"`
	Function string `msgpack:"function"`
	MemoryMB int    `msgpack:"memory_mb"`
}

// HeartbeatRequest is a worker's periodic report to the leader: its
// capacity, the slots it is running and its idle warm sandboxes by
// function@revision. A new leader rebuilds its in-flight counts from these.
type HeartbeatRequest struct {
	Node     string         `msgpack:"node"`
	Addr     string         `msgpack:"addr"`
	MemoryMB int            `msgpack:"memory_mb"`
	Slots    []SlotInfo     `msgpack:"slots"`
	Warm     map[string]int `msgpack:"warm"`
}

// HeartbeatResponse answers a heartbeat.
type HeartbeatResponse struct{}

// RunRequest asks a worker to run an invocation in a granted slot.
type RunRequest struct {
	SlotID   uint64          `msgpack:"slot_id"`
	Function *FunctionConfig `msgpack:"function"`
	Payload  []byte          `msgpack:"payload"`
	LogType  string          `msgpack:"log_type,omitempty"`
	// RequestID, when set, is the invocation's request id (an async
	// event keeps its id across retries); else the worker makes one.
	RequestID string `msgpack:"request_id,omitempty"`
	// Qualifier is the qualifier the caller invoked with ("" for none):
	// the invoked function ARN the runtime sees carries it.
	Qualifier string `msgpack:"qualifier,omitempty"`
	// ClientContext is InvokeRequest's, checked and compacted.
	ClientContext []byte `msgpack:"client_context,omitempty"`
}

// CodeFetchRequest asks a peer for a code bundle by digest.
type CodeFetchRequest struct {
	SHA256 string `msgpack:"sha256"`
}

// CodeFetchResponse carries the zip; the receiver checks its digest.
type CodeFetchResponse struct {
	ZipFile []byte `msgpack:"zip_file"`
}

// CodePutRequest stores a validated bundle on a peer (code replication at
// upload time, so a function survives the loss of the node that took it).
type CodePutRequest struct {
	ZipFile []byte `msgpack:"zip_file"`
}

// CodePutResponse answers CodePutRequest with the digest stored.
type CodePutResponse struct {
	SHA256 string `msgpack:"sha256"`
}
