// Package e2e holds nimbus's multi-host fault tests: a real three-node
// cluster, each node an agent in its own network namespace (scripts/cluster),
// whose nodes the tests kill with SIGKILL, restart, and cut off from the
// others, while clients call them over the network through nimbus/rpc and
// bin/nimbus.
//
// The tests need root, iproute2 (`ip`) and util-linux (`nsenter`, `flock`);
// without them they skip and say why. Run them with
//
//	go test -count=1 -v ./e2e/
//
// TestMain builds bin/nimbus and examples/hello into a temporary folder and
// runs `scripts/cluster up 3` with a cluster of its own (folder
// $TMPDIR/nimbus-e2e, namespaces nbe2e-n1..n3, network 10.213.50.0/24,
// `--account-concurrency 20`), so it never touches a developer's cluster,
// and `scripts/cluster down` at the end. One e2e run at a time holds
// $TMPDIR/nimbus-e2e.lock; a run that finds a cluster left by a run that
// died first takes it down. The agents' logs stay in
// $TMPDIR/nimbus-e2e/n*/agent.log after the run.
//
// The tests share the cluster and run one after the other; each starts by
// waiting for a healthy cluster (three voters agreeing on a leader, every
// node alive) and leaves it so, restarting and healing nodes in its cleanup.
package e2e
