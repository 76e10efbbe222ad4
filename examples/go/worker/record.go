package main

// What the worker writes: job records (naq_jobs), dead letters (NAQ_DEAD) and the error
// descriptions in both, shaped as naq writes them (src/model/job.ts, record-codec.ts,
// src/core/errors.ts), and cut down the same way when one would not fit one message.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf16"
)

// errorInfo is naq's description of an error: strings only.
type errorInfo struct {
	Name    string     `json:"name"`
	Code    string     `json:"code,omitempty"`
	Message string     `json:"message"`
	Cause   *errorInfo `json:"cause,omitempty"`
}

// jobError is an error with naq's name and code; handlers return one to set them. Any other
// Go error is described with the name "Error" and no code.
type jobError struct {
	name, code, message string
}

func (e *jobError) Error() string { return e.message }

const (
	maxErrorMessageChars = 4096
	maxCauses            = 3
	shortMessageChars    = 512
	deadPreviewChars     = 16 * 1024
)

// describeError is naq's errorInfo(): name and code cut at 200 characters, the message at
// 4,096, and causes (Go's wrapped errors) followed three deep.
func describeError(err error) errorInfo { return describeErrorAt(err, 0) }

func describeErrorAt(err error, depth int) errorInfo {
	info := errorInfo{Name: "Error", Message: truncateText(err.Error(), maxErrorMessageChars)}
	if je, ok := err.(*jobError); ok {
		info.Name = truncateText(je.name, 200)
		if je.code != "" {
			info.Code = truncateText(je.code, 200)
		}
	}
	if cause := errors.Unwrap(err); cause != nil && depth < maxCauses {
		c := describeErrorAt(cause, depth+1)
		info.Cause = &c
	}
	return info
}

// truncateText cuts text at max characters (UTF-16 code units, as naq counts), saying how much was cut.
func truncateText(text string, max int) string {
	units := utf16.Encode([]rune(text))
	if len(units) <= max {
		return text
	}
	return fmt.Sprintf("%s… [%d more characters cut]", string(utf16.Decode(units[:max])), len(units)-max)
}

// cut is JavaScript's text.slice(0, max).
func cut(text string, max int) string {
	units := utf16.Encode([]rune(text))
	if len(units) <= max {
		return text
	}
	return string(utf16.Decode(units[:max]))
}

// shortError is the error with details dropped: no cause, the message cut at 512 characters.
func shortError(e errorInfo) errorInfo {
	short := errorInfo{Name: cut(e.Name, 200), Code: cut(e.Code, 200), Message: e.Message}
	if jsLength(e.Message) > shortMessageChars {
		short.Message = cut(e.Message, shortMessageChars) + "… [cut]"
	}
	return short
}

// attempt is one entry of a record's attempts.
type attempt struct {
	N          int64      `json:"n"`
	StartedAt  int64      `json:"startedAt"`
	FinishedAt *int64     `json:"finishedAt,omitempty"`
	Error      *errorInfo `json:"error,omitempty"`
	WorkerID   string     `json:"workerId,omitempty"`
}

// record is a job record, the value under the job id in naq_jobs. Attempts are kept as raw
// JSON: earlier attempts are copied from the previous record exactly as they were written.
type record struct {
	V           int               `json:"v"`
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Queue       string            `json:"queue"`
	Status      string            `json:"status"`
	MaxAttempts json.Number       `json:"maxAttempts"`
	Attempts    []json.RawMessage `json:"attempts"`
	EnqueuedAt  json.Number       `json:"enqueuedAt"`
	DependsOn   json.RawMessage   `json:"dependsOn,omitempty"`
	StartedAt   *int64            `json:"startedAt,omitempty"`
	FinishedAt  *int64            `json:"finishedAt,omitempty"`
	Result      json.RawMessage   `json:"result,omitempty"`
	Error       *errorInfo        `json:"error,omitempty"`
	DeadSeq     uint64            `json:"deadSeq,omitempty"`
	ExpiresAt   *int64            `json:"expiresAt,omitempty"`
	Trimmed     []string          `json:"trimmed,omitempty"`
}

// recordFrom is naq's recordFromMessage: the one way a record is made from a job.
func recordFrom(job *jobMessage, status string, attempts []json.RawMessage) *record {
	return &record{
		V:           wireVersion,
		ID:          job.ID,
		Name:        job.Name,
		Queue:       job.Queue,
		Status:      status,
		MaxAttempts: json.Number(jsNumber(job.Attempts)),
		Attempts:    append([]json.RawMessage{}, attempts...),
		EnqueuedAt:  json.Number(jsNumber(job.Ts)),
		DependsOn:   job.DependsOn,
	}
}

func (r *record) addAttempt(a attempt) {
	r.Attempts = append(r.Attempts, mustMarshal(a))
}

// storedRecord is what the worker reads back from a record.
type storedRecord struct {
	Status     string            `json:"status"`
	EnqueuedAt *float64          `json:"enqueuedAt"`
	Attempts   []json.RawMessage `json:"attempts"`
}

func (s *storedRecord) final() bool {
	return s.Status == "completed" || s.Status == "failed" || s.Status == "cancelled"
}

// finishedBefore is the record's finished attempts numbered below n: a retry keeps them.
func (s *storedRecord) finishedBefore(n int64) []json.RawMessage {
	kept := []json.RawMessage{}
	for _, raw := range s.Attempts {
		var a struct {
			N          *float64        `json:"n"`
			FinishedAt json.RawMessage `json:"finishedAt"`
		}
		if json.Unmarshal(raw, &a) == nil && a.N != nil && *a.N < float64(n) && a.FinishedAt != nil {
			kept = append(kept, raw)
		}
	}
	return kept
}

// marshal is JSON.stringify: no HTML escaping, no trailing newline.
func marshal(v interface{}) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func mustMarshal(v interface{}) []byte {
	b, err := marshal(v)
	if err != nil {
		panic(err) // only our own types are encoded here, and they always encode
	}
	return b
}

// encodeRecord gives the record as JSON of at most max bytes: when it is larger, parts are
// cut in naq's order (result, error details, the middle attempts, dependencies, everything
// else) and named in `trimmed`.
func encodeRecord(rec *record, max int) []byte {
	b := mustMarshal(rec)
	if len(b) <= max {
		return b
	}
	r := *rec
	r.Trimmed = append([]string{}, rec.Trimmed...)
	cutAnd := func(what string) []byte {
		if !contains(r.Trimmed, what) {
			r.Trimmed = append(r.Trimmed, what)
		}
		if b := mustMarshal(&r); len(b) <= max {
			return b
		}
		return nil
	}
	if r.Result != nil {
		r.Result = nil
		if b := cutAnd("result"); b != nil {
			return b
		}
	}
	shortened := make([]json.RawMessage, len(r.Attempts))
	for i, raw := range r.Attempts {
		shortened[i] = shortAttempt(raw)
	}
	r.Attempts = shortened
	if r.Error != nil {
		e := shortError(*r.Error)
		r.Error = &e
	}
	if b := cutAnd("error details"); b != nil {
		return b
	}
	if n := len(r.Attempts); n > 10 {
		r.Attempts = append(append([]json.RawMessage{}, r.Attempts[0]), r.Attempts[n-9:]...)
		if b := cutAnd("attempts"); b != nil {
			return b
		}
	}
	var deps []json.RawMessage
	if json.Unmarshal(r.DependsOn, &deps) == nil && len(deps) > 100 {
		r.DependsOn = mustMarshal(deps[:100])
		if b := cutAnd("dependsOn"); b != nil {
			return b
		}
	}
	// Only fields a producer could make huge are left (name, ids): keep the bones.
	bones := record{
		V: r.V, ID: cut(r.ID, 200), Name: cut(r.Name, 200), Queue: cut(r.Queue, 200), Status: r.Status,
		MaxAttempts: r.MaxAttempts, Attempts: []json.RawMessage{}, EnqueuedAt: r.EnqueuedAt,
		StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, Error: r.Error, DeadSeq: r.DeadSeq, ExpiresAt: r.ExpiresAt,
		Trimmed: append(r.Trimmed, "everything else"),
	}
	return mustMarshal(&bones)
}

// shortAttempt is an attempt whose error lost its details.
func shortAttempt(raw json.RawMessage) json.RawMessage {
	var a map[string]json.RawMessage
	var e errorInfo
	if json.Unmarshal(raw, &a) != nil || a["error"] == nil || json.Unmarshal(a["error"], &e) != nil {
		return raw
	}
	a["error"] = mustMarshal(shortError(e))
	return mustMarshal(a)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// deadLetter is what lands on <prefix>.dead.<queue>.
type deadLetter struct {
	V             int             `json:"v"`
	Reason        string          `json:"reason"`
	Error         *errorInfo      `json:"error,omitempty"`
	Queue         string          `json:"queue"`
	Subject       string          `json:"subject"`
	JobID         string          `json:"jobId,omitempty"`
	Job           json.RawMessage `json:"job,omitempty"`
	Raw           *string         `json:"raw,omitempty"`
	DataTruncated *dataTruncated  `json:"dataTruncated,omitempty"`
	Ts            int64           `json:"ts"`
}

type dataTruncated struct {
	Bytes   int    `json:"bytes"`
	Preview string `json:"preview"`
}

// encodeDeadLetter gives the dead letter as JSON of at most max bytes: a job whose data does
// not fit beside the reason keeps its size and a preview instead (`dataTruncated`).
func encodeDeadLetter(d *deadLetter, max int) []byte {
	b := mustMarshal(d)
	if len(b) <= max {
		return b
	}
	s := *d
	if s.Error != nil {
		e := shortError(*s.Error)
		s.Error = &e
	}
	s.Reason = cut(s.Reason, 2*shortMessageChars)
	var job map[string]json.RawMessage
	if s.Job != nil && json.Unmarshal(s.Job, &job) == nil {
		var data bytes.Buffer
		if json.Compact(&data, job["data"]) != nil || data.Len() == 0 {
			data.Reset()
			data.WriteString("null")
		}
		job["data"] = json.RawMessage("null")
		s.Job = mustMarshal(job)
		s.DataTruncated = &dataTruncated{Bytes: data.Len(), Preview: cut(data.String(), deadPreviewChars)}
	}
	if s.Raw != nil {
		raw := cut(*s.Raw, deadPreviewChars)
		s.Raw = &raw
	}
	if b := mustMarshal(&s); len(b) <= max {
		return b
	}
	// Left: a job whose name or ids are huge; keep the reason and where it was.
	bones := deadLetter{V: s.V, Reason: s.Reason, Queue: s.Queue, Subject: cut(s.Subject, 1024), Ts: s.Ts, JobID: cut(s.JobID, 200), Error: s.Error}
	if s.DataTruncated != nil {
		bones.DataTruncated = &dataTruncated{Bytes: s.DataTruncated.Bytes, Preview: cut(s.DataTruncated.Preview, 1024)}
	}
	return mustMarshal(&bones)
}
