package main

// The path of one delivery (naq: src/actors/worker/job-path.ts): decode → already finished
// or cancelled → run (timeout, cancel, +WPI while it runs) → record the outcome → ack, NAK
// with the backoff delay, or dead letter. At least once: a delivery is acked only after its
// outcome is stored; when a write fails the message stays unacked and comes back after ack_wait.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Cancels are remembered this long, for jobs that arrive after their cancel notice.
const cancelMemory = 10 * time.Minute

type worker struct {
	nc                *nats.Conn
	js                nats.JetStreamContext
	jobsKV, workersKV nats.KeyValue
	names             names
	queue, id, host   string
	concurrency       int
	ackWait           time.Duration
	startedAt         int64

	jobs                        sync.WaitGroup
	inFlight, processed, failed atomic.Int64
	// Until then (ms), first attempts too are checked against their record before they run.
	verifyUntil atomic.Int64

	mu        sync.Mutex // guards the fields below
	status    string
	running   map[string]*runningJob
	cancelled map[string]time.Time
}

// The errors that end an attempt from outside its handler, named as naq names them.
var (
	errCancelled = &jobError{name: "JobCancelledError", code: "JOB_CANCELLED", message: "job was cancelled"}
	errDrained   = &jobError{name: "DrainAbort", code: "DRAINED", message: "worker stopped before the job finished; it goes back to the queue"}
)

func timeoutError(ms float64) error {
	return &jobError{name: "JobTimeoutError", code: "JOB_TIMEOUT", message: "job timed out after " + jsNumber(ms) + " ms"}
}

// runningJob is one job while its handler runs.
type runningJob struct {
	msg       *nats.Msg
	job       *jobMessage
	attempt   int64
	startedAt int64
	ctx       context.Context
	cancel    context.CancelFunc
	abortOnce sync.Once
	reason    error // why ctx was cancelled; written before the cancel

	finished atomic.Bool
	// An 'active' record is written while holding it, so it can never land after the outcome.
	writing sync.Mutex
	// Copies of this job delivered again while it ran (guarded by worker.mu): settled with it.
	duplicates []*nats.Msg
	priorOnce  sync.Once
	prior      []json.RawMessage
}

// abort ends the handler's wait (and its ctx) with reason; the first reason wins.
func (r *runningJob) abort(reason error) {
	r.abortOnce.Do(func() {
		r.reason = reason
		r.cancel()
	})
}

// aborted is the abort reason, or nil when the job was not aborted.
func (r *runningJob) aborted() error {
	select {
	case <-r.ctx.Done():
		return r.reason
	default:
		return nil
	}
}

func now() int64 { return time.Now().UnixMilli() }

func (w *worker) process(m *nats.Msg) {
	// 1. The attempt number is the delivery count.
	attempt := int64(1)
	if meta, err := m.Metadata(); err == nil {
		attempt = int64(meta.NumDelivered)
	}
	// 2. Decode; anything undecodable goes to the dead letters.
	job, err := decodeJob(m.Data)
	if err != nil {
		w.deadLetterUndecodable(m, err)
		return
	}
	// 3. Running here already (a redelivery while it runs): settled with the running copy.
	w.mu.Lock()
	if r := w.running[job.ID]; r != nil && r.job.Ts == job.Ts {
		r.duplicates = append(r.duplicates, m)
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	// A redelivery whose outcome is recorded already (its ack was lost): only the ack is left.
	if w.mustVerify(attempt) && w.alreadyFinished(job) {
		m.Ack()
		return
	}
	if w.cancelledBefore(job) {
		w.recordCancel(m, job, attempt, nil)
		return
	}
	startedAt := now()
	h, ok := handlers[job.Name]
	if !ok {
		unknown := &jobError{name: "UnknownHandlerError", code: "UNKNOWN_HANDLER", message: "no handler named " + job.Name + " on this worker"}
		w.fail(m, job, attempt, startedAt, describeError(unknown), true, nil)
		return
	}
	// 4. Run.
	r := w.start(m, job, attempt, startedAt)
	defer w.forget(r)
	result, herr := w.runHandler(r, h)
	// From here on no 'active' record is written; taking the lock waits for one being
	// written now, so it cannot land after the outcome.
	r.finished.Store(true)
	r.writing.Lock()
	r.writing.Unlock()
	// 5. Record the outcome.
	if r.aborted() == errDrained {
		w.settle(m, r, false, 0)
		return
	}
	if herr == nil {
		if herr = w.complete(r, result); herr == nil {
			return
		}
		// A result that cannot be stored fails the attempt, like any failure.
	}
	if r.aborted() == errCancelled || herr == errCancelled {
		w.recordCancel(m, job, attempt, r)
		return
	}
	w.fail(m, job, attempt, startedAt, describeError(herr), false, r)
}

// start registers the job as running, arms its timeout and keeps its delivery alive.
func (w *worker) start(m *nats.Msg, job *jobMessage, attempt, startedAt int64) *runningJob {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningJob{msg: m, job: job, attempt: attempt, startedAt: startedAt, ctx: ctx, cancel: cancel}
	w.mu.Lock()
	w.running[job.ID] = r
	w.mu.Unlock()
	if job.TimeoutMs > 0 {
		timer := time.AfterFunc(time.Duration(job.TimeoutMs)*time.Millisecond, func() { r.abort(timeoutError(job.TimeoutMs)) })
		go func() { <-ctx.Done(); timer.Stop() }()
	}
	go w.keepAlive(r)
	return r
}

// forget ends the job's bookkeeping once its outcome is settled (or left for redelivery).
func (w *worker) forget(r *runningJob) {
	w.mu.Lock()
	if w.running[r.job.ID] == r {
		delete(w.running, r.job.ID)
	}
	w.mu.Unlock()
	r.cancel() // releases the timeout and the keep-alive
}

type outcome struct {
	result json.RawMessage
	err    error
}

// runHandler settles with the handler's outcome or with the abort (timeout, cancel, drain),
// whichever comes first: a handler that ignores its ctx cannot hold the job.
func (w *worker) runHandler(r *runningJob, h handler) (json.RawMessage, error) {
	done := make(chan outcome, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- outcome{err: fmt.Errorf("handler panicked: %v", p)}
			}
		}()
		result, err := h(r.ctx, jobContext{JobID: r.job.ID, Name: r.job.Name, Queue: r.job.Queue, Attempt: r.attempt, MaxAttempts: r.job.Attempts}, r.job.Data)
		done <- outcome{result, err}
	}()
	select {
	case o := <-done:
		if o.err != nil {
			if reason := r.aborted(); reason != nil {
				return nil, reason // the handler gave up because of the abort: record why
			}
		}
		return o.result, o.err
	case <-r.ctx.Done():
		return nil, r.reason
	}
}

// keepAlive sends +WPI (working) every ack_wait/2 (at least 1 s) so the server does not
// redeliver a job still running, and writes an 'active' record once the job runs activeAfter.
func (w *worker) keepAlive(r *runningJob) {
	every := w.ackWait / 2
	if every < time.Second {
		every = time.Second
	}
	working := time.NewTicker(every)
	defer working.Stop()
	active := time.NewTimer(activeAfter)
	defer active.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-working.C:
			if !r.finished.Load() {
				r.msg.InProgress()
			}
		case <-active.C:
			w.writeActive(r)
		}
	}
}

// writeActive writes the 'active' record (on a retry, with the earlier attempts kept). Only
// informative: the outcome write that follows is the one that counts.
func (w *worker) writeActive(r *runningJob) {
	prior := w.priorAttempts(r.job, r.attempt, r)
	r.writing.Lock()
	defer r.writing.Unlock()
	if r.finished.Load() {
		return // never write over an outcome
	}
	rec := recordFrom(r.job, "active", prior)
	rec.addAttempt(attempt{N: r.attempt, StartedAt: r.startedAt, WorkerID: w.id})
	rec.StartedAt = &r.startedAt
	if err := w.writeRecord(rec); err != nil {
		log.Printf("job %s: active record not written: %v", r.job.ID, err)
	}
}

// complete records a completed attempt and acks it. It returns the error that fails the
// attempt instead when the result cannot be stored.
func (w *worker) complete(r *runningJob, result json.RawMessage) error {
	var compact bytes.Buffer
	if result == nil {
		result = json.RawMessage("null")
	}
	if err := json.Compact(&compact, result); err != nil {
		return &jobError{name: "ResultNotSerializableError", code: "RESULT_NOT_SERIALIZABLE", message: "the handler's result cannot be stored: it is not JSON (" + err.Error() + ")"}
	}
	// A copy that ran twice (a redelivery racing the original after a crash) records its
	// completion once: if the record already says so, only the ack is left.
	if w.mustVerify(r.attempt) && w.alreadyFinished(r.job) {
		w.settle(r.msg, r, true, 0)
		return nil
	}
	finishedAt := now()
	rec := w.baseRecord(r.job, r.attempt, r)
	rec.Status = "completed"
	rec.StartedAt = &r.startedAt
	rec.FinishedAt = &finishedAt
	rec.Result = compact.Bytes()
	rec.addAttempt(attempt{N: r.attempt, StartedAt: r.startedAt, FinishedAt: &finishedAt, WorkerID: w.id})
	if r.job.ResultTtlMs > 0 {
		expiresAt := finishedAt + int64(r.job.ResultTtlMs)
		rec.ExpiresAt = &expiresAt
	}
	b := mustMarshal(rec)
	if max := int(w.nc.MaxPayload()); len(b) > max {
		return &jobError{name: "ResultTooLargeError", code: "RESULT_TOO_LARGE", message: fmt.Sprintf(
			"the handler's result is %d bytes encoded; a job record holds at most %d (the server's max_payload). Store large results elsewhere and return a reference", compact.Len(), max)}
	}
	if err := w.putRecord(r.job.ID, b); err != nil {
		w.notRecorded(r.job.ID, err)
		return nil
	}
	w.processed.Add(1)
	w.settle(r.msg, r, true, 0)
	return nil
}

// fail records a failed attempt: with attempts left (and not permanent), record 'retrying'
// and NAK with the backoff delay; otherwise dead letter, record 'failed' with its sequence, ack.
func (w *worker) fail(m *nats.Msg, job *jobMessage, n, startedAt int64, e errorInfo, permanent bool, r *runningJob) {
	finishedAt := now()
	rec := w.baseRecord(job, n, r)
	rec.StartedAt = &startedAt
	rec.Error = &e
	rec.addAttempt(attempt{N: n, StartedAt: startedAt, FinishedAt: &finishedAt, Error: &e, WorkerID: w.id})
	if !permanent && float64(n) < job.Attempts {
		rec.Status = "retrying"
		if err := w.writeRecord(rec); err != nil {
			w.notRecorded(job.ID, err)
			return
		}
		delay := retryDelay(job.Backoff, n+1)
		w.settle(m, r, false, time.Duration(delay)*time.Millisecond)
		return
	}
	rec.FinishedAt = &finishedAt
	w.failed.Add(1)
	reason := e.Message
	if !permanent {
		plural := "s"
		if n == 1 {
			plural = ""
		}
		reason = fmt.Sprintf("failed after %d attempt%s: %s", n, plural, e.Message)
	}
	dead := &deadLetter{V: wireVersion, Reason: reason, Error: &e, Queue: job.Queue, Subject: m.Subject, JobID: job.ID, Job: job.raw, Ts: finishedAt}
	seq, err := w.publishDead(job.Queue, dead)
	if err != nil {
		w.notRecorded(job.ID, err)
		return
	}
	rec.Status = "failed"
	rec.DeadSeq = seq
	w.finish(m, r, rec)
}

// recordCancel records 'cancelled' (no error, no attempt entry: as naq) and acks.
func (w *worker) recordCancel(m *nats.Msg, job *jobMessage, n int64, r *runningJob) {
	rec := w.baseRecord(job, n, r)
	rec.Status = "cancelled"
	if r != nil {
		rec.StartedAt = &r.startedAt
	}
	finishedAt := now()
	rec.FinishedAt = &finishedAt
	w.finish(m, r, rec)
}

// deadLetterUndecodable: bad input loses nothing; its text and the reason go to the dead letters.
func (w *worker) deadLetterUndecodable(m *nats.Msg, decodeErr error) {
	jobID := m.Subject[strings.LastIndex(m.Subject, ".")+1:]
	at := now()
	e := describeError(decodeErr)
	data := m.Data
	if len(data) > 64*1024 {
		data = data[:64*1024]
	}
	raw := strings.ToValidUTF8(string(data), "\uFFFD")
	dead := &deadLetter{V: wireVersion, Reason: "undecodable job: " + decodeErr.Error(), Error: &e, Queue: w.queue, Subject: m.Subject, JobID: jobID, Raw: &raw, Ts: at}
	w.failed.Add(1)
	seq, err := w.publishDead(w.queue, dead)
	if err != nil {
		w.notRecorded(jobID, err)
		return
	}
	if jobID != "" {
		rec := &record{
			V: wireVersion, ID: jobID, Name: "(undecodable)", Queue: w.queue, Status: "failed",
			MaxAttempts: "1", Attempts: []json.RawMessage{}, EnqueuedAt: json.Number(strconv.FormatInt(at, 10)),
			FinishedAt: &at, Error: &e, DeadSeq: seq,
		}
		if err := w.writeRecord(rec); err != nil {
			log.Printf("job %s: record of an undecodable job not written: %v", jobID, err)
		}
	}
	m.Ack()
}

// finish writes a final record, then acks: at least once.
func (w *worker) finish(m *nats.Msg, r *runningJob, rec *record) {
	if err := w.writeRecord(rec); err != nil {
		w.notRecorded(rec.ID, err)
		return
	}
	w.settle(m, r, true, 0)
}

// settle acks (or NAKs, after delay) the delivery and every copy of it delivered meanwhile.
func (w *worker) settle(m *nats.Msg, r *runningJob, ack bool, delay time.Duration) {
	msgs := []*nats.Msg{m}
	if r != nil {
		w.mu.Lock()
		msgs = append(msgs, r.duplicates...)
		r.duplicates = nil
		if w.running[r.job.ID] == r {
			delete(w.running, r.job.ID) // later copies are no duplicates of this run
		}
		w.mu.Unlock()
	}
	for _, x := range msgs {
		switch {
		case ack:
			x.Ack()
		case delay > 0:
			x.NakWithDelay(delay)
		default:
			x.Nak()
		}
	}
}

func (w *worker) notRecorded(id string, err error) {
	log.Printf("job %s: outcome not recorded (%v); it will be redelivered after ack_wait", id, err)
}

// baseRecord is the record so far: fresh on a first attempt; on a retry, with the earlier attempts.
func (w *worker) baseRecord(job *jobMessage, n int64, r *runningJob) *record {
	return recordFrom(job, "pending", w.priorAttempts(job, n, r))
}

// priorAttempts are the finished attempts before this one, read from the record (once per run).
func (w *worker) priorAttempts(job *jobMessage, n int64, r *runningJob) []json.RawMessage {
	if n <= 1 {
		return nil
	}
	read := func() []json.RawMessage {
		rec, err := w.readRecord(job.ID)
		// Only this enqueue's history: the id may have run before, under another enqueue.
		if err != nil || rec == nil || rec.EnqueuedAt == nil || *rec.EnqueuedAt != job.Ts {
			return nil
		}
		return rec.finishedBefore(n)
	}
	if r == nil {
		return read()
	}
	r.priorOnce.Do(func() { r.prior = read() })
	return r.prior
}

func (w *worker) mustVerify(n int64) bool {
	return n > 1 || now() < w.verifyUntil.Load()
}

// alreadyFinished: the job's record says how it ended, and it is this enqueue's record.
func (w *worker) alreadyFinished(job *jobMessage) bool {
	rec, err := w.readRecord(job.ID)
	if err != nil || rec == nil {
		return false // unknown: run it (at least once beats at most once)
	}
	return rec.final() && rec.EnqueuedAt != nil && *rec.EnqueuedAt == job.Ts
}

// readRecord is the job's record, or nil when there is none.
func (w *worker) readRecord(id string) (*storedRecord, error) {
	entry, err := w.jobsKV.Get(id)
	if errors.Is(err, nats.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec storedRecord
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// writeRecord puts the record, cut down to fit one message, and waits for the server's ack.
func (w *worker) writeRecord(rec *record) error {
	return w.putRecord(rec.ID, encodeRecord(rec, int(w.nc.MaxPayload())))
}

// putRecord is a KV put by hand: a publish to $KV.<bucket>.<key>, acked by the stream.
func (w *worker) putRecord(id string, b []byte) error {
	_, err := w.js.Publish("$KV."+w.names.jobsBucket+"."+id, b)
	return err
}

// publishDead publishes a dead letter and returns its sequence in the dead-letter stream.
func (w *worker) publishDead(queue string, d *deadLetter) (uint64, error) {
	ack, err := w.js.Publish(w.names.deadPrefix+queue, encodeDeadLetter(d, int(w.nc.MaxPayload())))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// cancel handles a cancel notice: a running job is aborted; one that arrives later is not run.
func (w *worker) cancel(id string) {
	at := time.Now()
	w.mu.Lock()
	w.cancelled[id] = at
	for other, when := range w.cancelled {
		if at.Sub(when) > cancelMemory {
			delete(w.cancelled, other)
		}
	}
	r := w.running[id]
	w.mu.Unlock()
	if r != nil && !r.finished.Load() {
		r.abort(errCancelled)
	}
}

// cancelledBefore: a cancel notice covers the jobs enqueued before it; a later enqueue of the
// same id (its ts after the notice) runs.
func (w *worker) cancelledBefore(job *jobMessage) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, ok := w.cancelled[job.ID]
	return ok && time.Since(at) <= cancelMemory && job.Ts <= float64(at.UnixMilli())
}

// abandonAll aborts what still runs once the stop's grace is over: each is NAKed, so
// another worker takes it at once, with no attempt recorded.
func (w *worker) abandonAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.running {
		if !r.finished.Load() {
			r.abort(errDrained)
		}
	}
}
