// Command producer enqueues naq jobs from Go, following docs/wire-format.md (section 3,
// "Producer"): it publishes the conformance kit's producer fixture set on one queue.
//
//	producer -url nats://127.0.0.1:4222 -queue Q [-prefix naq]
//
// It prints one line per job id it enqueued and exits 0; on any error it says why and exits 1.
// naq creates the streams and buckets: run any naq command against the server first.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// A JetStream error: the stream holds a message for this subject already (max_msgs_per_subject
// is 1 and discard_new_per_subject is set): a job with this id is pending or running.
const errMaxMsgsPerSubject = 10077

// How often a publish that timed out is sent again (same bytes, same Nats-Msg-Id: stored once).
const publishTries = 5

var queueName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

type backoff struct {
	Type  string `json:"type"`
	Delay int64  `json:"delay"`
}

// jobMessage is a job on the wire: one message on <prefix>.jobs.<queue>.<id>.
type jobMessage struct {
	V         int         `json:"v"`
	ID        string      `json:"id"`
	Name      string      `json:"name"`
	Queue     string      `json:"queue"`
	Data      interface{} `json:"data"`
	Attempts  int         `json:"attempts"`
	Backoff   *backoff    `json:"backoff,omitempty"`
	DependsOn []string    `json:"dependsOn,omitempty"`
	Ts        int64       `json:"ts"` // enqueue time, ms since the epoch
}

type producer struct {
	js      nats.JetStreamContext
	waiting nats.KeyValue
	prefix  string
	queue   string
}

func main() {
	url := flag.String("url", nats.DefaultURL, "NATS server URL(s), comma-separated")
	queue := flag.String("queue", "default", "queue to enqueue on")
	prefix := flag.String("prefix", "naq", "naq's prefix (config prefix)")
	flag.Parse()
	if !queueName.MatchString(*queue) {
		log.Fatal("usage: producer -url nats://... -queue Q [-prefix naq]; queue names use letters, digits, _ and -")
	}
	log.SetFlags(0)
	if err := run(*url, *queue, *prefix); err != nil {
		log.Printf("producer: %v", err)
		os.Exit(1)
	}
}

func run(url, queue, prefix string) error {
	nc, err := nats.Connect(url, nats.Name("naq-go-producer"))
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return err
	}
	waiting, err := js.KeyValue(prefix + "_waiting")
	if err != nil {
		return fmt.Errorf("bucket %s_waiting: %w (naq creates its streams and buckets: run e.g. `naq queue ls` against this server first)", prefix, err)
	}
	p := &producer{js: js, waiting: waiting, prefix: prefix, queue: queue}
	ids := []string{}

	// (a) Ten echo jobs with generated ids (nuid: 22 characters of [A-Za-z0-9]).
	for i := 0; i < 10; i++ {
		job := p.job(nuid.Next(), "conformance.echo", map[string]int{"n": i})
		if err := p.enqueue(job); err != nil {
			return err
		}
		ids = append(ids, job.ID)
	}
	first := ids[0]

	// (b) Fails its first attempt, completes its second: a retry after a fixed 100 ms backoff.
	b := p.job(nuid.Next(), "conformance.failUntil", map[string]int{"attempt": 2})
	b.Backoff = &backoff{Type: "fixed", Delay: 100}
	if err := p.enqueue(b); err != nil {
		return err
	}
	ids = append(ids, b.ID)

	// (c) Fails its only attempt: a dead letter and a failed record.
	c := p.job(nuid.Next(), "conformance.fail", nil)
	c.Attempts = 1
	if err := p.enqueue(c); err != nil {
		return err
	}
	ids = append(ids, c.ID)

	// (d) Waits for the first echo job: parked in the waiting bucket, not published; naq's
	// resolver publishes it once that job's record says completed.
	d := p.job(nuid.Next(), "conformance.echo", map[string]string{"after": first})
	d.DependsOn = []string{first}
	if err := p.park(d); err != nil {
		return err
	}
	ids = append(ids, d.ID)

	// (e) A job id chosen by the caller, enqueued twice: the second is the idempotent case.
	e := p.job(fmt.Sprintf("go-fixed-%d", time.Now().UnixMilli()), "conformance.echo", map[string]string{"fixed": "once"})
	if err := p.enqueue(e); err != nil {
		return err
	}
	ids = append(ids, e.ID)
	if err := p.enqueueAgain(e); err != nil {
		return err
	}

	// (f) Last: tells the kit how many distinct jobs came before it.
	if err := p.enqueue(p.job(nuid.Next(), "conformance.done", map[string]int{"jobs": len(ids)})); err != nil {
		return err
	}
	return nil
}

func (p *producer) job(id, name string, data interface{}) *jobMessage {
	return &jobMessage{V: 1, ID: id, Name: name, Queue: p.queue, Data: data, Attempts: 3, Ts: time.Now().UnixMilli()}
}

// enqueue publishes a job and prints its id.
func (p *producer) enqueue(job *jobMessage) error {
	stored, err := p.publish(job)
	if err != nil {
		return err
	}
	if !stored {
		return fmt.Errorf("job %s: the stream says it is already enqueued, but this producer made it just now", job.ID)
	}
	fmt.Println(job.ID)
	return nil
}

// enqueueAgain publishes the same job once more; the stream must not store it twice.
func (p *producer) enqueueAgain(job *jobMessage) error {
	stored, err := p.publish(job)
	if err != nil {
		return err
	}
	if stored {
		return fmt.Errorf("job %s: enqueued twice: the second publish was stored again", job.ID)
	}
	log.Printf("job %s: already enqueued (second publish)", job.ID)
	return nil
}

// publish sends the job to <prefix>.jobs.<queue>.<id> and waits for the stream's PubAck. It
// reports whether this call stored it: false when the job was there already, either as the
// same message seen within the stream's duplicate window (Nats-Msg-Id) or, answered with
// error 10077, as a pending job with this id (one message per subject).
func (p *producer) publish(job *jobMessage) (bool, error) {
	body, err := json.Marshal(job)
	if err != nil {
		return false, err
	}
	msg := nats.NewMsg(fmt.Sprintf("%s.jobs.%s.%s", p.prefix, job.Queue, job.ID))
	msg.Data = body
	// "<id>:<ts>": a retried publish of this enqueue is stored once; a later enqueue of the
	// same id (after this one finished) is a new job.
	msg.Header.Set(nats.MsgIdHdr, fmt.Sprintf("%s:%d", job.ID, job.Ts))
	for try := 1; ; try++ {
		ack, err := p.js.PublishMsg(msg, nats.AckWait(5*time.Second))
		if err == nil {
			// A duplicate on a retry means the try that timed out was stored after all.
			return !ack.Duplicate || try > 1, nil
		}
		var apiErr *nats.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == errMaxMsgsPerSubject {
			return try > 1, nil
		}
		if !retryable(err) || try == publishTries {
			if errors.Is(err, nats.ErrNoStreamResponse) {
				return false, fmt.Errorf("job %s: no stream takes %s: naq creates stream %s_JOBS (run e.g. `naq queue ls` against this server first)", job.ID, msg.Subject, strings.ToUpper(p.prefix))
			}
			return false, fmt.Errorf("job %s: publish: %w", job.ID, err)
		}
		log.Printf("job %s: publish try %d: %v; trying again", job.ID, try, err)
		time.Sleep(time.Duration(try) * 200 * time.Millisecond)
	}
}

// park creates a job with dependencies in the waiting bucket under its id (KV create: never
// over an entry that is there), and prints its id.
func (p *producer) park(job *jobMessage) error {
	body, err := json.Marshal(job)
	if err != nil {
		return err
	}
	for try := 1; ; try++ {
		_, err = p.waiting.Create(job.ID, body)
		if err == nil {
			fmt.Println(job.ID)
			return nil
		}
		if errors.Is(err, nats.ErrKeyExists) {
			if try > 1 {
				fmt.Println(job.ID) // the try that timed out was stored after all
				return nil
			}
			return fmt.Errorf("job %s: already waiting in %s_waiting, but this producer made it just now", job.ID, p.prefix)
		}
		if !retryable(err) || try == publishTries {
			return fmt.Errorf("job %s: create in %s_waiting: %w", job.ID, p.prefix, err)
		}
		log.Printf("job %s: create try %d: %v; trying again", job.ID, try, err)
		time.Sleep(time.Duration(try) * 200 * time.Millisecond)
	}
}

// retryable: no answer in time (the server is busy, or a stream leader is being elected).
func retryable(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		strings.Contains(err.Error(), "context deadline exceeded")
}
