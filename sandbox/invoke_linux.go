package sandbox

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"nimbus/rpc"
)

// initOutcome is how a cold sandbox's init ended.
type initOutcome uint8

const (
	initOK       initOutcome = iota
	initFailed               // exited or reported /init/error: the invocation fails
	initTimedOut             // over the init cap: retry once within the invocation
)

// run carries one invocation through an acquired sandbox and writes its
// START, END and REPORT lines. A sandbox that timed out, ran out of memory
// or crashed is marked dead; the manager destroys it. It reports initTimedOut
// (and no result) when a cold sandbox's init outran limit: the manager then
// retries init in a new sandbox, under the function's own timeout, as Lambda
// does.
//
// Init is bounded by initLimit; the invocation by the function's timeout,
// less initSpent (the time a retried init already took of it).
func (sb *sandbox) run(m *Manager, req *Request, cold bool, initLimit time.Duration, retried bool) (*Result, initOutcome) {
	fn := req.Function
	res := &Result{RequestID: req.RequestID, Cold: cold}
	timeout := time.Duration(fn.TimeoutSec) * time.Second

	if !sb.initDone {
		// The tail started with the init's lines, for a failed init.
		o, how := sb.awaitInit(initLimit, req.RequestID, retried, fn.TimeoutSec)
		if how == initTimedOut && !retried {
			sb.markDead()
			sb.logs.sync()
			sb.logs.emit(initReportLine(initLimit, "timeout", ""))
			return nil, initTimedOut
		}
		if how != initOK {
			sb.markDead()
			status := "error"
			if how == initTimedOut {
				status = "timeout"
			}
			sb.logs.sync()
			res.InitDuration = time.Since(sb.started)
			sb.logs.emit(initReportLine(res.InitDuration, status, o.errType))
			sb.logs.begin(req.RequestID, startLine(req.RequestID, fn.VersionName()))
			res.Payload, res.ErrorType = o.payload, o.errType
			res.MaxMemoryMB, _ = sb.maxMemoryMB(fn.MemoryMB)
			res.LogTail = sb.logs.end(endLine(req.RequestID), reportLine(req.RequestID, fn, res, status, o.errType))
			return res, how
		}
		sb.initDone = true
		sb.initDuration = sb.api.readyTime().Sub(sb.started)
		res.InitDuration = sb.initDuration
		if retried {
			// The retried init ran inside the invocation's time.
			timeout -= sb.initDuration
			if timeout <= 0 {
				timeout = time.Millisecond
			}
		}
		// Init ran with one vCPU; from now on the function gets its share.
		q := cpuQuotaUs(fn.MemoryMB)
		_ = sb.cgroups.write(sb.cgroups.cpu, "cpu.cfs_quota_us", strconv.FormatInt(q, 10))
		_ = sb.cgroups.write(sb.cgroups.cpu, "cpu.cfs_burst_us", strconv.FormatInt(q, 10))
		// Lines written during init belong to no invocation: flush them
		// before START. (A warm sandbox was drained at its last END, once
		// its runtime was back in /next, and has been idle since.) Only a
		// failed init's lines are in the invocation's tail.
		sb.logs.sync()
	}
	if !cold {
		sb.awaitExtensions()
	}
	sb.logs.collectTail(req.Tail)

	sb.logs.begin(req.RequestID, startLine(req.RequestID, fn.VersionName()))

	// The runtime waits in /next (the first one after init, or the one
	// that made this sandbox idle): hand it the invocation.
	inv := newInvocation(req.RequestID, req.Payload, m.invokedARN(fn.Name, req.Qualifier), newTraceID(), timeout)
	inv.clientContext = req.ClientContext
	if req.Stream != nil {
		inv.stream, inv.streamEnd = req.Stream, make(chan struct{})
	}
	timer := time.NewTimer(timeout)
	queued := time.Now()
	delivered := sb.api.deliver(inv)

	var o outcome
	status, statusType := "", ""
	if !delivered {
		// The runtime gave up its /next: the next one it makes takes it.
		select {
		case <-inv.delivered:
			delivered = true
		case <-sb.exited:
			o, status = sb.crashOutcome(inv)
		case <-timer.C:
			o, status = sb.timeoutOutcome(inv, fn.TimeoutSec)
		}
	}
	if delivered {
		timer.Reset(time.Until(inv.deadline))
		// The invocation is over once the runtime has answered and is back
		// in /next: the sandbox is idle again only then, and lines written
		// until then are this invocation's. (back follows the answer.)
		select {
		case <-sb.api.back:
			// A runtime can ask /next while its answer's body is read.
			select {
			case <-inv.done:
				o = inv.out
			case <-sb.exited:
				o, status = sb.crashOutcome(inv)
			case <-timer.C:
				o, status = sb.timeoutOutcome(inv, fn.TimeoutSec)
			}
		case <-sb.exited:
			select {
			case <-inv.done:
				o = inv.out
				status, statusType = "error", rpc.ErrTypeExit
				sb.logs.emit(sb.exitOutcome(inv.id).message)
			default:
				o, status = sb.crashOutcome(inv)
			}
		case <-timer.C:
			select {
			case <-inv.done:
				o = inv.out
				status, statusType = "timeout", rpc.ErrTypeTimedout
				sb.logs.emit(timestamp() + " " + inv.id + " " + timeoutMessage(fn.TimeoutSec))
			default:
				o, status = sb.timeoutOutcome(inv, fn.TimeoutSec)
			}
		}
	}
	timer.Stop()
	if statusType == "" {
		statusType = o.errType
	}

	select {
	case <-inv.delivered:
		res.Duration = time.Since(inv.deadline.Add(-timeout))
	default:
		res.Duration = time.Since(queued)
	}
	if status != "" {
		if status == "timeout" && sb.api.anyExtensions.Load() {
			// Its extensions get SHUTDOWN (timeout) before the kill
			// (destroy's shutdown phase), as on Lambda.
			sb.endReason = shutdownTimeout
		}
		sb.markDead()
		if status == "timeout" && sb.endReason == "" {
			_ = sb.ctrKill()
		}
	}
	sb.api.endStream(inv)
	res.Payload, res.ErrorType, res.Streamed = o.payload, o.errType, o.streamed
	res.MaxMemoryMB, sb.peakMB = sb.maxMemoryMB(fn.MemoryMB)
	sb.logs.sync()
	res.LogTail = sb.logs.end(endLine(req.RequestID), reportLine(req.RequestID, fn, res, status, statusType))
	return res, initOK
}

// awaitInit waits for the runtime's first /next. On failure it returns the
// outcome the caller gets. A first init is cut at limit (initTimedOut, no
// outcome: the manager retries); a retried one runs under the function's
// timeout, and outrunning it is Sandbox.Timedout.
func (sb *sandbox) awaitInit(limit time.Duration, reqID string, retried bool, timeoutSec int) (outcome, initOutcome) {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-sb.api.ready:
		return outcome{}, initOK
	case <-sb.api.failed:
		_ = sb.ctrKill()
		return *sb.api.initFailure(), initFailed
	case <-sb.exited:
		if o := sb.api.initFailure(); o != nil {
			return *o, initFailed
		}
		return sb.exitOutcome(reqID).outcome, initFailed
	case <-t.C:
		_ = sb.ctrKill()
		if !retried {
			return outcome{}, initTimedOut
		}
		return functionError(rpc.ErrTypeTimedout, "RequestId: "+reqID+" Error: "+timeoutMessage(timeoutSec)), initTimedOut
	}
}

// awaitExtensions waits, as Lambda does before the next invocation, until
// the extensions that got the last INVOKE have asked for their next event,
// for at most the function's timeout after the sandbox went idle. An
// extension still at it then is stuck: this invocation goes on, and the
// sandbox is not used again after it (Lambda resets such an environment).
// Nothing to wait for without extensions.
func (sb *sandbox) awaitExtensions() {
	if !sb.api.extensionsBusy() {
		return
	}
	sb.mu.Lock()
	until := sb.lastUsed.Add(time.Duration(sb.fn.TimeoutSec) * time.Second)
	sb.mu.Unlock()
	for sb.api.extensionsBusy() {
		if !time.Now().Before(until) {
			sb.extStuck.Store(true)
			sb.logs.emit("EXTENSION\tState: Timeout\tError: an extension did not ask for its next event within the function's timeout after the last invocation; this sandbox is not used again")
			return
		}
		select {
		case <-sb.exited:
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// crashOutcome is the answer when the runtime exited during an invocation,
// unless it managed to answer first. The exit is written to the log.
func (sb *sandbox) crashOutcome(inv *invocation) (outcome, string) {
	select {
	case <-inv.done:
		return inv.out, "error"
	default:
	}
	o := sb.exitOutcome(inv.id)
	inv.finish(o.outcome)
	sb.logs.emit(o.message)
	return o.outcome, "error"
}

// exitResult is the outcome of a runtime's exit and the message it carries.
type exitResult struct {
	outcome
	message string
}

func (sb *sandbox) exitOutcome(reqID string) exitResult {
	if e := sb.runtimeStatus().execErr; e != "" {
		msg := "RequestId: " + reqID + " Error: " + e
		return exitResult{functionError(rpc.ErrTypeInvalidEntrypoint, msg), msg}
	}
	if sb.cgroups.oomKills() > 0 {
		msg := "RequestId: " + reqID + " Error: Runtime exited with error: signal: killed"
		return exitResult{functionError(rpc.ErrTypeOutOfMemory, msg), msg}
	}
	msg := "RequestId: " + reqID + " Error: Runtime exited with error: " + sb.exitDescription()
	return exitResult{functionError(rpc.ErrTypeExit, msg), msg}
}

func timeoutMessage(timeoutSec int) string {
	return fmt.Sprintf("Task timed out after %d.00 seconds", timeoutSec)
}

func timestamp() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000Z") }

func (sb *sandbox) timeoutOutcome(inv *invocation, timeoutSec int) (outcome, string) {
	msg := timeoutMessage(timeoutSec)
	o := functionError(rpc.ErrTypeTimedout, "RequestId: "+inv.id+" Error: "+msg)
	if !inv.finish(o) {
		return inv.out, "" // answered at the last moment
	}
	sb.logs.emit(timestamp() + " " + inv.id + " " + msg)
	return o, "timeout"
}

func (sb *sandbox) ctrKill() error {
	return sb.ctr.Signal(killSignal)
}

func startLine(id, version string) string {
	return "START RequestId: " + id + " Version: " + version
}
func endLine(id string) string { return "END RequestId: " + id }

func initStartLine(runtime string) string {
	return "INIT_START Runtime Version: " + runtime
}

// initReportLine is Lambda's line for an init that failed or timed out.
func initReportLine(d time.Duration, status, errType string) string {
	line := fmt.Sprintf("INIT_REPORT Init Duration: %.2f ms\tPhase: init\tStatus: %s", float64(d.Microseconds())/1000, status)
	if errType != "" {
		line += "\tError Type: " + errType
	}
	return line
}

// reportLine is Lambda's REPORT line. Billed Duration is in 1 ms units; a
// timeout bills the whole timeout, and a custom runtime's cold start bills
// its init too.
func reportLine(id string, fn *rpc.FunctionConfig, r *Result, status, errType string) string {
	ms := float64(r.Duration.Microseconds()) / 1000
	billed := int64(math.Ceil(ms))
	if status == "timeout" {
		billed = int64(fn.TimeoutSec) * 1000
	}
	if r.InitDuration > 0 {
		billed += int64(math.Ceil(float64(r.InitDuration.Microseconds()) / 1000))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: %d MB\tMax Memory Used: %d MB",
		id, ms, billed, fn.MemoryMB, r.MaxMemoryMB)
	if r.InitDuration > 0 {
		fmt.Fprintf(&b, "\tInit Duration: %.2f ms", float64(r.InitDuration.Microseconds())/1000)
	}
	if status != "" {
		fmt.Fprintf(&b, "\tStatus: %s", status)
		if errType != "" {
			fmt.Fprintf(&b, "\tError Type: %s", errType)
		}
	}
	return b.String()
}
