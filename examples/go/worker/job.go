package main

// The job message and its checks, as naq's decodeJob (src/model/job.ts) does them: a
// message that breaks any rule is undecodable and goes to the dead letters, so the rules and
// their messages are the same here as in naq.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"strconv"
	"strings"
	"unicode/utf16"
)

const (
	wireVersion = 1
	// Handler names are at most this long (UTF-16 code units, as JavaScript counts).
	maxNameChars = 256
	// More dependencies than this is a batch, not a dependency list.
	maxDependencies = 1000
	// Ten years: the longest duration naq accepts anywhere.
	maxDurationMs = 10 * 365 * 86_400_000
)

type backoff struct {
	Type   string
	Delay  float64
	Delays []float64
	Jitter float64
}

// jobMessage is a decoded job. The original bytes are kept: the dead letter carries the job
// as it came, and numbers keep their exact text.
type jobMessage struct {
	raw         json.RawMessage
	ID          string
	Name        string
	Queue       string
	Data        json.RawMessage // nil when the message has no data
	Attempts    float64
	Backoff     *backoff
	TimeoutMs   float64 // 0: no timeout
	ResultTtlMs float64 // 0: none
	DependsOn   json.RawMessage
	Ts          float64
}

// decodeFail is naq's JobDecodeError: code DECODE, with the rule the message broke.
func decodeFail(format string, args ...interface{}) (*jobMessage, error) {
	return nil, &jobError{name: "JobDecodeError", code: "DECODE", message: fmt.Sprintf(format, args...)}
}

// undefined stands for a field that is absent (JavaScript's undefined).
type undefined struct{}

// field parses one top-level field, or gives undefined when it is absent.
func field(fields map[string]json.RawMessage, name string) interface{} {
	raw, ok := fields[name]
	if !ok {
		return undefined{}
	}
	var v interface{}
	if err := json.Unmarshal(raw, &v); err != nil {
		return undefined{}
	}
	return v
}

func decodeJob(data []byte) (*jobMessage, error) {
	// A TextDecoder (what naq reads with) drops a leading byte-order mark.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var parsed interface{}
	if err := json.Unmarshal(data, &parsed); err != nil {
		return decodeFail("not JSON: %s", err.Error())
	}
	var fields map[string]json.RawMessage
	if _, isObject := parsed.(map[string]interface{}); !isObject || json.Unmarshal(data, &fields) != nil {
		return decodeFail("not a JSON object")
	}
	if v, ok := field(fields, "v").(float64); !ok || v != wireVersion {
		return decodeFail("unsupported wire version %s (this worker reads v%d)", jsonText(field(fields, "v")), wireVersion)
	}
	strs := map[string]string{}
	for _, name := range []string{"id", "name", "queue"} {
		s, ok := field(fields, name).(string)
		if !ok || s == "" {
			return decodeFail(`missing or empty field "%s"`, name)
		}
		strs[name] = s
	}
	// Not one of naq's rules: an id or queue that cannot be part of a subject (the record's
	// key, the dead letter's subject) could never be recorded, so the message would come back
	// after every ack_wait, for ever (naq's worker does that). Here it is undecodable instead.
	for _, name := range []string{"id", "queue"} {
		if !subjectSafe(strs[name]) {
			return decodeFail(`field "%s" cannot be used in a subject: %s`, name, jsonText(strs[name]))
		}
	}
	if jsLength(strs["name"]) > maxNameChars {
		return decodeFail(`field "name" is longer than %d characters`, maxNameChars)
	}
	attempts, ok := field(fields, "attempts").(float64)
	if !ok || attempts != math.Trunc(attempts) || attempts < 1 {
		return decodeFail(`field "attempts" must be an integer >= 1`)
	}
	ts, ok := field(fields, "ts").(float64)
	if !ok {
		return decodeFail(`field "ts" must be a number`)
	}
	b, problem := checkBackoff(field(fields, "backoff"))
	if problem != "" {
		return decodeFail("%s", problem)
	}
	durations := map[string]float64{}
	for _, name := range []string{"timeoutMs", "resultTtlMs"} {
		v := field(fields, name)
		if _, absent := v.(undefined); absent {
			continue
		}
		if p := durationProblem(v, 1); p != "" {
			return decodeFail(`field "%s": %s`, name, p)
		}
		durations[name] = v.(float64)
	}
	if deps := field(fields, "dependsOn"); deps != (undefined{}) {
		list, ok := deps.([]interface{})
		if ok && len(list) <= maxDependencies {
			for _, d := range list {
				if _, isString := d.(string); !isString {
					ok = false
				}
			}
		}
		if !ok || len(list) > maxDependencies {
			return decodeFail(`field "dependsOn" must be an array of at most %d job ids`, maxDependencies)
		}
	}
	job := &jobMessage{
		raw:         append(json.RawMessage(nil), data...),
		ID:          strs["id"],
		Name:        strs["name"],
		Queue:       strs["queue"],
		Attempts:    attempts,
		Backoff:     b,
		TimeoutMs:   durations["timeoutMs"],
		ResultTtlMs: durations["resultTtlMs"],
		DependsOn:   fields["dependsOn"],
		Ts:          ts,
	}
	if raw, ok := fields["data"]; ok {
		job.Data = raw
	}
	return job, nil
}

func checkBackoff(v interface{}) (*backoff, string) {
	switch o := v.(type) {
	case undefined:
		return nil, ""
	case []interface{}:
		// An array is an object to JavaScript: it fails on its type.
		return nil, "backoff.type must be fixed, exponential or list"
	case map[string]interface{}:
		b := &backoff{}
		b.Type, _ = o["type"].(string)
		switch b.Type {
		case "fixed", "exponential":
			if p := durationProblem(valueOf(o, "delay"), 0); p != "" {
				return nil, "backoff.delay: " + p
			}
			b.Delay = o["delay"].(float64)
		case "list":
			delays, ok := o["delays"].([]interface{})
			if !ok || len(delays) == 0 {
				return nil, "backoff.delays must be a non-empty array of ms"
			}
			for _, d := range delays {
				if p := durationProblem(d, 0); p != "" {
					return nil, "backoff.delays: " + p
				}
				b.Delays = append(b.Delays, d.(float64))
			}
		default:
			return nil, "backoff.type must be fixed, exponential or list"
		}
		if j, present := o["jitter"]; present {
			f, ok := j.(float64)
			if !ok || f < 0 || f > 1 {
				return nil, "backoff.jitter must be in [0, 1]"
			}
			b.Jitter = f
		}
		return b, ""
	default:
		return nil, "backoff must be an object"
	}
}

func valueOf(o map[string]interface{}, key string) interface{} {
	if v, ok := o[key]; ok {
		return v
	}
	return undefined{}
}

// durationProblem is naq's: durations are integers of ms in [min, 10 years].
func durationProblem(v interface{}, min float64) string {
	f, ok := v.(float64)
	if !ok || f != math.Trunc(f) {
		return "expected an integer number of milliseconds, got " + describe(v)
	}
	if f < min {
		return fmt.Sprintf("expected at least %s ms, got %s", jsNumber(min), jsNumber(f))
	}
	if f > maxDurationMs {
		return fmt.Sprintf("expected at most %d ms (10 years), got %s", int64(maxDurationMs), jsNumber(f))
	}
	return ""
}

// describe names a bad value the way naq's error messages do.
func describe(v interface{}) string {
	switch x := v.(type) {
	case float64:
		return jsNumber(x)
	case string:
		if jsLength(x) > 40 {
			x = string(utf16.Decode(utf16.Encode([]rune(x))[:37])) + "..."
		}
		return jsonText(x)
	case nil:
		return "null"
	case bool:
		return "boolean"
	case undefined:
		return "undefined"
	default:
		return "object"
	}
}

// jsonText is JSON.stringify of a parsed value (undefined for an absent one).
func jsonText(v interface{}) string {
	switch x := v.(type) {
	case undefined:
		return "undefined"
	case float64:
		return jsNumber(x)
	}
	b, err := marshal(v)
	if err != nil {
		return "undefined"
	}
	return string(b)
}

// jsNumber prints a number as JavaScript does (String(n), JSON.stringify(n)).
func jsNumber(f float64) string {
	switch {
	case f == 0:
		return "0"
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	if a := math.Abs(f); a >= 1e21 || a < 1e-6 {
		mantissa, exp, _ := strings.Cut(strconv.FormatFloat(f, 'e', -1, 64), "e")
		return mantissa + "e" + exp[:1] + strings.TrimLeft(exp[1:], "0")
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// subjectSafe: s can be a part of a NATS subject (no whitespace, no wildcard, no empty token).
func subjectSafe(s string) bool {
	if strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	return !strings.ContainsAny(s, " \t\r\n\f\v*>")
}

// jsLength is a string's length as JavaScript counts it (UTF-16 code units).
func jsLength(s string) int { return len(utf16.Encode([]rune(s))) }

// retryDelay is naq's: the delay in ms before attempt nextAttempt (the first retry is 2).
func retryDelay(b *backoff, nextAttempt int64) float64 {
	if b == nil {
		return 0
	}
	retry := float64(nextAttempt - 1)
	var base float64
	switch b.Type {
	case "list":
		i := int(math.Min(retry-1, float64(len(b.Delays)-1)))
		base = b.Delays[i]
	case "exponential":
		base = b.Delay * math.Pow(2, retry-1)
	default:
		base = b.Delay
	}
	// Math.round: halves go up.
	delay := math.Floor(base*(1-b.Jitter*rand.Float64()) + 0.5)
	return math.Min(maxDurationMs, math.Max(0, delay))
}
