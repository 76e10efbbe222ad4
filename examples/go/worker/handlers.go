package main

// The conformance kit's four reference handlers (src/conformance/handlers.ts), by job name.
// A job names a handler; only these can ever run on this worker.

import (
	"context"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
)

// jobContext is what a handler gets besides the job's data.
type jobContext struct {
	JobID       string
	Name        string
	Queue       string
	Attempt     int64 // 1-based: the delivery count
	MaxAttempts float64
}

// A handler returns its result as JSON, or an error (a *jobError sets name and code). ctx is
// cancelled on timeout, on cancel and when the worker gives the job back at shutdown.
type handler func(ctx context.Context, job jobContext, data json.RawMessage) (json.RawMessage, error)

const failureCode = "CONFORMANCE_FAILURE"

var handlers = map[string]handler{
	"conformance.echo":      echo,
	"conformance.fail":      fail,
	"conformance.failUntil": failUntil,
	"conformance.sleep":     sleep,
}

// echo returns its data as the result (none or null: null).
func echo(_ context.Context, _ jobContext, data json.RawMessage) (json.RawMessage, error) {
	if data == nil {
		return json.RawMessage("null"), nil
	}
	return data, nil
}

// fail always fails, with the message and code it is given.
func fail(_ context.Context, _ jobContext, data json.RawMessage) (json.RawMessage, error) {
	message, ok := dataField(data, "message").(string)
	if !ok {
		message = "conformance failure"
	}
	code, ok := dataField(data, "code").(string)
	if !ok {
		code = failureCode
	}
	return nil, &jobError{name: "Error", code: code, message: message}
}

// failUntil fails every attempt before data.attempt, then returns the attempt it succeeded on.
func failUntil(_ context.Context, job jobContext, data json.RawMessage) (json.RawMessage, error) {
	until := number(dataField(data, "attempt"), 1)
	if float64(job.Attempt) < until {
		return nil, &jobError{name: "Error", code: failureCode, message: "attempt " + strconv.FormatInt(job.Attempt, 10) + " fails"}
	}
	return json.RawMessage(`{"attempt":` + strconv.FormatInt(job.Attempt, 10) + `}`), nil
}

// sleep waits data.ms, ended early by the job's timeout or a cancel.
func sleep(ctx context.Context, _ jobContext, data json.RawMessage) (json.RawMessage, error) {
	ms := number(dataField(data, "ms"), 0)
	wait := time.Duration(0)
	if ms > 0 {
		wait = time.Duration(math.Min(ms, float64(math.MaxInt64/int64(time.Millisecond)))) * time.Millisecond
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		return nil, ctx.Err() // the worker records why (timeout, cancel), not this error
	}
	slept := "null" // JSON's NaN
	if !math.IsNaN(ms) {
		slept = jsNumber(ms)
	}
	return json.RawMessage(`{"slept":` + slept + `}`), nil
}

// dataField is data[key] when data is a JSON object, else nil.
func dataField(data json.RawMessage, key string) interface{} {
	var o map[string]interface{}
	if json.Unmarshal(data, &o) != nil {
		return nil
	}
	return o[key]
}

// number is JavaScript's Number(v ?? fallback), for the values JSON has.
func number(v interface{}, fallback float64) float64 {
	switch x := v.(type) {
	case nil:
		return fallback
	case float64:
		return x
	case bool:
		if x {
			return 1
		}
		return 0
	case string:
		s := strings.TrimSpace(x)
		if s == "" {
			return 0
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f
		}
	}
	return math.NaN()
}
