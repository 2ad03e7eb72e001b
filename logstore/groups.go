package logstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"nimbus/rpc"
)

// RetentionDays are the values CloudWatch accepts for a log group's
// retention in days.
var RetentionDays = []int{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}

const day = 24 * time.Hour

// Groups describes every function's log group, sorted by name.
func (s *Store) Groups(ctx context.Context) ([]rpc.LogGroup, error) {
	js, err := s.jetStream()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 4*apiTimeout)
	defer cancel()
	var out []rpc.LogGroup
	l := js.ListStreams(ctx, jetstream.WithStreamListSubject(subjectPrefix+">"))
	for info := range l.Info() {
		if !strings.HasPrefix(info.Config.Name, streamPrefix) {
			continue
		}
		out = append(out, s.describe(ctx, js, info))
	}
	if err := l.Err(); err != nil {
		return nil, storeErr(err)
	}
	slices.SortFunc(out, func(a, b rpc.LogGroup) int { return strings.Compare(a.FunctionName, b.FunctionName) })
	return out, nil
}

// Group describes one function's log group; a function that never logged
// has an empty one.
func (s *Store) Group(ctx context.Context, fn string) (rpc.LogGroup, error) {
	if err := checkName(fn); err != nil {
		return rpc.LogGroup{}, err
	}
	js, err := s.jetStream()
	if err != nil {
		return rpc.LogGroup{}, err
	}
	st, err := streamInfo(ctx, js, fn)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return rpc.LogGroup{FunctionName: fn, LogGroupName: logGroupOf(fn), MaxBytes: s.opts.GroupMaxBytes}, nil
	}
	if err != nil {
		return rpc.LogGroup{}, storeErr(err)
	}
	return s.describe(ctx, js, st.CachedInfo()), nil
}

func (s *Store) describe(ctx context.Context, js jetstream.JetStream, info *jetstream.StreamInfo) rpc.LogGroup {
	fn := strings.TrimPrefix(info.Config.Name, streamPrefix)
	g := rpc.LogGroup{
		FunctionName:    fn,
		LogGroupName:    logGroupOf(fn),
		StoredBytes:     int64(info.State.Bytes),
		Records:         info.State.Msgs,
		RetentionInDays: int(info.Config.MaxAge / day),
		MaxBytes:        info.Config.MaxBytes,
		Replicas:        info.Config.Replicas,
	}
	if info.State.Msgs == 0 {
		return g
	}
	st, err := streamInfo(ctx, js, fn)
	if err != nil {
		return g
	}
	if m, err := getMsg(ctx, st, info.State.FirstSeq, subjectOf(fn)); err == nil {
		if _, evs, err := decodeBatch(m.Data); err == nil {
			g.FirstEventMs = evs[0].TimeMs
		}
	}
	lctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	if m, err := st.GetLastMsgForSubject(lctx, subjectOf(fn)); err == nil {
		if _, evs, err := decodeBatch(m.Data); err == nil {
			g.LastEventMs = evs[len(evs)-1].TimeMs
		}
	}
	return g
}

// CheckRetentionDays refuses a value CloudWatch does not accept, with its
// message.
func CheckRetentionDays(days int) error {
	if slices.Contains(RetentionDays, days) {
		return nil
	}
	vals := make([]string, len(RetentionDays))
	for i, d := range RetentionDays {
		vals[i] = fmt.Sprint(d)
	}
	return rpc.Errorf(rpc.CodeInvalidParameterValue,
		"1 validation error detected: Value '%d' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: [%s]",
		days, strings.Join(vals, ", "))
}

// PutRetention makes fn's events expire after days (a CloudWatch value);
// 0 removes the age retention. The group is created if it does not exist.
func (s *Store) PutRetention(ctx context.Context, fn string, days int) (rpc.LogGroup, error) {
	if err := checkName(fn); err != nil {
		return rpc.LogGroup{}, err
	}
	if days != 0 {
		if err := CheckRetentionDays(days); err != nil {
			return rpc.LogGroup{}, err
		}
	}
	js, err := s.jetStream()
	if err != nil {
		return rpc.LogGroup{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 4*apiTimeout)
	defer cancel()
	if err := s.ensureStream(ctx, js, fn); err != nil {
		return rpc.LogGroup{}, storeErr(err)
	}
	st, err := streamInfo(ctx, js, fn)
	if err != nil {
		return rpc.LogGroup{}, storeErr(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxAge = time.Duration(days) * day
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return rpc.LogGroup{}, storeErr(err)
	}
	return s.Group(ctx, fn)
}

// Delete drops fn's log group and every event in it.
func (s *Store) Delete(ctx context.Context, fn string) error {
	if err := checkName(fn); err != nil {
		return err
	}
	js, err := s.jetStream()
	if err != nil {
		return err
	}
	s.known.Delete(fn)
	if err := js.DeleteStream(ctx, streamOf(fn)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return storeErr(err)
	}
	return nil
}

// StreamLeader names the server leading fn's stream ("" when unknown).
func (s *Store) StreamLeader(ctx context.Context, fn string) string {
	info := s.streamInfoOf(ctx, fn)
	if info == nil || info.Cluster == nil {
		return ""
	}
	return info.Cluster.Leader
}

// StreamPlacement returns the placement tags of fn's stream (the pin of an
// R1 group, see Options.Pin), or nil.
func (s *Store) StreamPlacement(ctx context.Context, fn string) []string {
	info := s.streamInfoOf(ctx, fn)
	if info == nil || info.Config.Placement == nil {
		return nil
	}
	return info.Config.Placement.Tags
}

// streamInfoOf returns fn's stream's information, or nil.
func (s *Store) streamInfoOf(ctx context.Context, fn string) *jetstream.StreamInfo {
	js, err := s.jetStream()
	if err != nil {
		return nil
	}
	st, err := streamInfo(ctx, js, fn)
	if err != nil {
		return nil
	}
	return st.CachedInfo()
}
