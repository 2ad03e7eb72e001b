package sandbox

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"nimbus/rpc"
)

// run carries one invocation through an acquired sandbox and writes its
// START, END and REPORT lines. A sandbox that timed out, ran out of memory
// or crashed is marked dead; the manager destroys it.
func (sb *sandbox) run(m *Manager, req *Request, cold bool) *Result {
	fn := req.Function
	res := &Result{RequestID: req.RequestID, Cold: cold}
	timeout := time.Duration(fn.TimeoutSec) * time.Second

	if !sb.initDone {
		if o, failed := sb.awaitInit(m.cfg.InitTimeout, req.RequestID); failed {
			sb.markDead()
			sb.logs.sync()
			sb.logs.begin(req.RequestID, req.Tail, startLine(req.RequestID))
			res.Payload, res.ErrorType = o.payload, o.errType
			res.InitDuration = time.Since(sb.started)
			res.MaxMemoryMB = sb.cgroups.maxMemoryMB()
			res.LogTail = sb.logs.end(endLine(req.RequestID), reportLine(req.RequestID, fn.MemoryMB, res, o.errType))
			return res
		}
		sb.initDone = true
		sb.initDuration = sb.api.readyAt.Sub(sb.started)
		res.InitDuration = sb.initDuration
		// Init ran with one vCPU; from now on the function gets its share.
		q := cpuQuotaUs(fn.MemoryMB)
		_ = sb.cgroups.write(sb.cgroups.cpu, "cpu.cfs_quota_us", strconv.FormatInt(q, 10))
		_ = sb.cgroups.write(sb.cgroups.cpu, "cpu.cfs_burst_us", strconv.FormatInt(q, 10))
		// Lines written during init belong to no invocation: flush them
		// before START. (A warm sandbox was drained at its last END and
		// has been idle, usually frozen, since.)
		sb.logs.sync()
	}

	sb.logs.begin(req.RequestID, req.Tail, startLine(req.RequestID))

	inv := newInvocation(req.RequestID, req.Payload, m.functionARN(fn.Name), newTraceID(), timeout)
	sb.api.pending <- inv
	queued := time.Now()

	var o outcome
	status := ""
	timer := time.NewTimer(timeout)
	select {
	case <-inv.delivered:
		timer.Reset(time.Until(inv.deadline))
		select {
		case <-inv.done:
			o = inv.out
		case <-sb.exited:
			o, status = sb.crashOutcome(inv)
		case <-timer.C:
			o, status = sb.timeoutOutcome(inv, fn.TimeoutSec)
		}
	case <-sb.exited:
		o, status = sb.crashOutcome(inv)
	case <-timer.C:
		o, status = sb.timeoutOutcome(inv, fn.TimeoutSec)
	}
	timer.Stop()

	select {
	case <-inv.delivered:
		res.Duration = time.Since(inv.deadline.Add(-timeout))
	default:
		res.Duration = time.Since(queued)
	}
	if status != "" {
		sb.markDead()
		if status == "timeout" {
			_ = sb.ctrKill()
		}
	}
	res.Payload, res.ErrorType = o.payload, o.errType
	res.MaxMemoryMB = sb.cgroups.maxMemoryMB()
	sb.logs.sync()
	res.LogTail = sb.logs.end(endLine(req.RequestID), reportLine(req.RequestID, fn.MemoryMB, res, status))
	return res
}

// awaitInit waits for the runtime's first /next. On failure it returns the
// outcome the caller gets.
func (sb *sandbox) awaitInit(limit time.Duration, reqID string) (outcome, bool) {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-sb.api.ready:
		return outcome{}, false
	case <-sb.exited:
		if o := sb.api.initFailure(); o != nil {
			return *o, true
		}
		return sb.exitOutcome(reqID), true
	case <-t.C:
		_ = sb.ctrKill()
		return functionError(rpc.ErrTypeInitTimeout,
			fmt.Sprintf("RequestId: %s Error: Init phase timed out after %.2f seconds", reqID, limit.Seconds())), true
	}
}

// crashOutcome is the answer when the runtime exited during an invocation,
// unless it managed to answer first.
func (sb *sandbox) crashOutcome(inv *invocation) (outcome, string) {
	select {
	case <-inv.done:
		return inv.out, "error"
	default:
	}
	o := sb.exitOutcome(inv.id)
	inv.finish(o)
	return o, "error"
}

func (sb *sandbox) exitOutcome(reqID string) outcome {
	if sb.cgroups.oomKills() > 0 {
		return functionError(rpc.ErrTypeOutOfMemory,
			"RequestId: "+reqID+" Error: Runtime exited with error: signal: killed")
	}
	return functionError(rpc.ErrTypeExit,
		"RequestId: "+reqID+" Error: Runtime exited with error: "+sb.exitDescription())
}

func (sb *sandbox) timeoutOutcome(inv *invocation, timeoutSec int) (outcome, string) {
	msg := fmt.Sprintf("Task timed out after %d.00 seconds", timeoutSec)
	o := functionError(rpc.ErrTypeTimedout, "RequestId: "+inv.id+" Error: "+msg)
	if !inv.finish(o) {
		return inv.out, "" // answered at the last moment
	}
	sb.logs.emit(time.Now().UTC().Format("2006-01-02T15:04:05.000Z") + " " + inv.id + " " + msg)
	return o, "timeout"
}

func (sb *sandbox) ctrKill() error {
	return sb.ctr.Signal(killSignal)
}

func startLine(id string) string { return "START RequestId: " + id + " Version: $LATEST" }
func endLine(id string) string   { return "END RequestId: " + id }

// reportLine is Lambda's REPORT line. Billed Duration is in 1 ms units.
func reportLine(id string, memMB int, r *Result, status string) string {
	ms := float64(r.Duration.Microseconds()) / 1000
	var b strings.Builder
	fmt.Fprintf(&b, "REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: %d MB\tMax Memory Used: %d MB",
		id, ms, int64(math.Ceil(ms)), memMB, r.MaxMemoryMB)
	if r.InitDuration > 0 {
		fmt.Fprintf(&b, "\tInit Duration: %.2f ms", float64(r.InitDuration.Microseconds())/1000)
	}
	if status != "" {
		fmt.Fprintf(&b, "\tStatus: %s", status)
		if r.ErrorType != "" {
			fmt.Fprintf(&b, "\tError Type: %s", r.ErrorType)
		}
	}
	return b.String()
}
