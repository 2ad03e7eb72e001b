package scheduler

import (
	"math"

	"nimbus/rpc"
)

// Reserved concurrency: its two commands and its readers.
//
// A reservation is a number per function, kept beside the registry (not in
// rpc.FunctionConfig: setting it is not a change of the function's code or
// configuration, so it makes no new Revision and retires no warm sandbox).
// As with functions, Apply checks only what the state needs (the function
// exists, the number is not negative); Lambda's rule on the unreserved pool
// runs in the proposer (ValidateReservation), and the command's MaxTotal
// carries the one number Apply needs to refuse a race between two
// proposers.

// applyPutConcurrency sets a function's reservation.
func (f *FSM) applyPutConcurrency(body []byte) ApplyResult {
	var cmd PutConcurrencyCommand
	if err := decodeCommand(CmdPutConcurrency, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	if cmd.Reserved < 0 {
		return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: negative reservation %d", CmdPutConcurrency, cmd.Reserved)}
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		if _, exists := s.functions[cmd.Name]; !exists {
			return ApplyResult{Err: errFunctionNotFound(cmd.Name)}, nil
		}
		old := s.reserved[cmd.Name]
		others := s.reservedTotal - old
		if cmd.Reserved > math.MaxInt-others {
			return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: reservation %d overflows the total", CmdPutConcurrency, cmd.Reserved)}, nil
		}
		next := others + cmd.Reserved
		if cmd.MaxTotal != 0 && cmd.Reserved > old && next > cmd.MaxTotal {
			return ApplyResult{Err: rpc.Errorf(rpc.CodeResourceConflict,
				"The operation cannot be performed at this time. The account's reserved concurrency changed while this request was in progress: retry the request")}, nil
		}
		s.reserved[cmd.Name] = cmd.Reserved
		s.reservedTotal = next
		return ApplyResult{}, nil
	})
}

// applyDeleteConcurrency removes a function's reservation, if it has one.
func (f *FSM) applyDeleteConcurrency(body []byte) ApplyResult {
	var cmd DeleteConcurrencyCommand
	if err := decodeCommand(CmdDeleteConcurrency, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		if _, exists := s.functions[cmd.Name]; !exists {
			return ApplyResult{Err: errFunctionNotFound(cmd.Name)}, nil
		}
		s.deleteReservation(cmd.Name)
		return ApplyResult{}, nil
	})
}

// deleteReservation removes name's reservation, if any, keeping the total.
// The caller holds FSM.mu for writing.
func (s *fsmState) deleteReservation(name string) {
	if r, ok := s.reserved[name]; ok {
		s.reservedTotal -= r
		delete(s.reserved, name)
	}
}

// Reserved returns the reserved concurrency of the function called name and
// whether it has one. A function without a reservation (or a missing
// function) draws from the account's unreserved pool.
func (f *FSM) Reserved(name string) (int, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	r, ok := f.state.reserved[name]
	return r, ok
}

// ReservedTotal returns the sum of every function's reserved concurrency:
// the part of the account limit the unreserved pool may not use.
func (f *FSM) ReservedTotal() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.reservedTotal
}
