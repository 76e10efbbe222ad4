// Command worker is a naq worker written in Go: it runs naq jobs of one queue by following
// docs/wire-format.md (section 4, "Worker"), with nothing but the NATS client.
//
//	worker -url nats://127.0.0.1:4222 -queue default [-concurrency 10] [-prefix naq]
//
// naq creates the streams and buckets; run any naq command against the server first. The
// queue's consumer is created here when no naq worker has made it yet.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

const (
	// How long one pull request waits on the server (naq: 5 s). A stop waits for it to end.
	pullExpires = 5 * time.Second
	// naq's defaults for the consumer it creates (config worker.ackWaitMs, worker.maxAckPending):
	// a Go worker that creates it makes the consumer a naq worker would.
	defaultAckWait       = 30 * time.Second
	defaultMaxAckPending = 1000
	// naq's worker.heartbeatMs: the workers bucket's TTL is three of them.
	heartbeatEvery = 5 * time.Second
	// naq's jobs.activeAfterMs: a job running this long gets an 'active' record.
	activeAfter = time.Second
)

var queueName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// names are the subjects, streams and buckets naq derives from its prefix (src/model/layout.ts).
type names struct {
	jobsStream, consumer, filter, deadPrefix, cancel, jobsBucket, workersBucket string
}

func layout(prefix, queue string) names {
	upper := strings.ReplaceAll(strings.ToUpper(prefix), "-", "_")
	return names{
		jobsStream:    upper + "_JOBS",
		consumer:      prefix + "-" + queue,
		filter:        prefix + ".jobs." + queue + ".>",
		deadPrefix:    prefix + ".dead.",
		cancel:        prefix + ".cancel." + queue,
		jobsBucket:    prefix + "_jobs",
		workersBucket: prefix + "_workers",
	}
}

func main() {
	url := flag.String("url", nats.DefaultURL, "NATS server URL(s), comma-separated")
	queue := flag.String("queue", "default", "queue to consume")
	concurrency := flag.Int("concurrency", 10, "jobs run at once")
	prefix := flag.String("prefix", "naq", "naq's prefix (config prefix)")
	ackWait := flag.Duration("ack-wait", defaultAckWait, "ack_wait of the queue's consumer when this worker creates it (naq: worker.ackWaitMs); an existing consumer keeps its own")
	grace := flag.Duration("grace", 10*time.Second, "on SIGTERM/SIGINT, how long running jobs may finish before they are given back (naq: worker.drainGraceMs)")
	flag.Parse()
	if !queueName.MatchString(*queue) || *concurrency < 1 {
		log.Fatal("usage: worker -url nats://... -queue Q [-concurrency N>=1] [-prefix naq]; queue names use letters, digits, _ and -")
	}
	if *ackWait < time.Second {
		log.Fatal("-ack-wait is at least 1s")
	}
	if err := run(*url, *queue, *prefix, *concurrency, *ackWait, *grace); err != nil {
		log.Fatalf("worker: %v", err)
	}
}

func run(url, queue, prefix string, concurrency int, ackWait, grace time.Duration) error {
	w := &worker{
		queue:       queue,
		names:       layout(prefix, queue),
		concurrency: concurrency,
		running:     map[string]*runningJob{},
		cancelled:   map[string]time.Time{},
		startedAt:   time.Now().UnixMilli(),
		status:      "running",
	}
	host, _ := os.Hostname()
	w.host = host
	// naq's worker id: <host>-<pid>-<queue>, with anything a KV key cannot hold as "_".
	w.id = regexp.MustCompile(`[^A-Za-z0-9_=-]`).ReplaceAllString(fmt.Sprintf("%s-%d-%s", host, os.Getpid(), queue), "_")

	nc, err := nats.Connect(url,
		nats.Name("naq-go-worker "+w.id),
		nats.MaxReconnects(-1),
		// A server that restarted may redeliver jobs as first attempts: check them against
		// their record until two ack waits after the link is back (naq: verifyAfterRestart).
		nats.DisconnectErrHandler(func(*nats.Conn, error) { w.verifyUntil.Store(1<<62 - 1) }),
		nats.ReconnectHandler(func(*nats.Conn) { w.verifyUntil.Store(time.Now().Add(2 * w.ackWait).UnixMilli()) }),
	)
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	w.nc = nc
	if w.js, err = nc.JetStream(); err != nil {
		return err
	}
	if w.jobsKV, err = w.js.KeyValue(w.names.jobsBucket); err != nil {
		return fmt.Errorf("bucket %s: %w (naq creates its streams and buckets: run e.g. `naq queue ls` against this server first)", w.names.jobsBucket, err)
	}
	if w.workersKV, err = w.js.KeyValue(w.names.workersBucket); err != nil {
		return fmt.Errorf("bucket %s: %w", w.names.workersBucket, err)
	}
	info, err := w.ensureConsumer(ackWait)
	if err != nil {
		return err
	}
	// The consumer's own ack_wait counts (a naq worker may have made it with another).
	w.ackWait = info.Config.AckWait
	sub, err := w.js.PullSubscribe(w.names.filter, w.names.consumer, nats.Bind(w.names.jobsStream, w.names.consumer))
	if err != nil {
		return fmt.Errorf("pull from %s: %w", w.names.consumer, err)
	}
	cancels, err := nc.Subscribe(w.names.cancel, func(m *nats.Msg) { w.cancel(string(m.Data)) })
	if err != nil {
		return err
	}
	defer cancels.Unsubscribe()

	stopHeartbeat := w.heartbeats()
	log.Printf("worker %s: queue %s, consumer %s (ack_wait %s), concurrency %d", w.id, queue, w.names.consumer, w.ackWait, concurrency)

	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	stop := make(chan struct{})
	var stopAt time.Time
	go func() {
		<-signals
		log.Printf("stopping: no more pulls; running jobs may finish within %s (signal again to give them back now)", grace)
		stopAt = time.Now()
		w.setStatus("draining")
		close(stop)
	}()

	w.pull(sub, stop)
	// The last pull has ended, so a job given back now goes to another worker, not to a pull
	// of this one. Running jobs finish, or are given back when the grace is over.
	idle := make(chan struct{})
	go func() { w.jobs.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-signals:
		w.abandonAll()
	case <-time.After(time.Until(stopAt.Add(grace))):
		w.abandonAll()
	}
	<-idle
	stopHeartbeat()
	// Drained: the worker is gone from `naq workers` at once, not after the key's TTL.
	if err := w.workersKV.Delete(w.id); err != nil {
		log.Printf("heartbeat key not deleted: %v", err)
	}
	log.Printf("stopped: %d processed, %d failed", w.processed.Load(), w.failed.Load())
	// Acks and NAKs are sent without waiting for an answer: make sure they went out.
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		log.Printf("flush: %v", err)
	}
	return nil
}

// ensureConsumer returns the queue's durable consumer, created with naq's settings
// (src/actors/nats/storage.ts) when no naq worker has created it yet.
func (w *worker) ensureConsumer(ackWait time.Duration) (*nats.ConsumerInfo, error) {
	info, err := w.js.ConsumerInfo(w.names.jobsStream, w.names.consumer)
	if errors.Is(err, nats.ErrConsumerNotFound) {
		info, err = w.js.AddConsumer(w.names.jobsStream, &nats.ConsumerConfig{
			Durable:       w.names.consumer,
			FilterSubject: w.names.filter,
			AckPolicy:     nats.AckExplicitPolicy,
			AckWait:       ackWait,
			MaxAckPending: defaultMaxAckPending,
			MaxDeliver:    -1,
		})
		if err != nil {
			// Made by a naq worker at the same moment (with its own ack wait): use that one.
			info, err = w.js.ConsumerInfo(w.names.jobsStream, w.names.consumer)
		}
	}
	if errors.Is(err, nats.ErrStreamNotFound) {
		return nil, fmt.Errorf("stream %s not found: naq creates it (run e.g. `naq queue ls` against this server first)", w.names.jobsStream)
	}
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", w.names.consumer, err)
	}
	return info, nil
}

// pull takes one job at a time whenever a slot is free, until stop. One message per pull:
// a nats.go Fetch of several waits for all of them (or its expiry) once the queue is empty.
func (w *worker) pull(sub *nats.Subscription, stop <-chan struct{}) {
	slots := make(chan struct{}, w.concurrency)
	for {
		select {
		case slots <- struct{}{}:
		case <-stop:
			return
		}
		msgs, err := sub.Fetch(1, nats.MaxWait(pullExpires))
		if err != nil {
			<-slots
			if !errors.Is(err, nats.ErrTimeout) {
				w.pullFailed(err, stop)
			}
			continue
		}
		for _, m := range msgs {
			select {
			case <-stop:
				// Pulled while stopping: back to the queue at once, for another worker.
				m.Nak()
				<-slots
				continue
			default:
			}
			w.jobs.Add(1)
			w.inFlight.Add(1)
			go func(m *nats.Msg) {
				defer func() { w.inFlight.Add(-1); <-slots; w.jobs.Done() }()
				w.process(m)
			}(m)
		}
	}
}

// pullFailed waits a moment after a failed pull; a consumer deleted under the worker is made again.
func (w *worker) pullFailed(err error, stop <-chan struct{}) {
	log.Printf("pull: %v", err)
	if errors.Is(err, nats.ErrConsumerDeleted) || errors.Is(err, nats.ErrConsumerNotFound) || strings.Contains(err.Error(), "consumer not found") {
		if _, err := w.ensureConsumer(w.ackWait); err != nil {
			log.Printf("consumer: %v", err)
		}
	}
	select {
	case <-time.After(time.Second):
	case <-stop:
	}
}

// workerInfo is a heartbeat, as naq's QueueWorker.info() writes it.
type workerInfo struct {
	ID          string   `json:"id"`
	Host        string   `json:"host"`
	Pid         int      `json:"pid"`
	Queues      []string `json:"queues"`
	InFlight    int64    `json:"inFlight"`
	Processed   int64    `json:"processed"`
	Failed      int64    `json:"failed"`
	Status      string   `json:"status"`
	Concurrency int      `json:"concurrency"`
	StartedAt   int64    `json:"startedAt"`
	Ts          int64    `json:"ts"`
}

// heartbeats puts the worker's info into the workers bucket now and every heartbeatEvery;
// the returned function stops them.
func (w *worker) heartbeats() func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(heartbeatEvery)
		defer tick.Stop()
		for {
			info := workerInfo{
				ID: w.id, Host: w.host, Pid: os.Getpid(), Queues: []string{w.queue},
				InFlight: w.inFlight.Load(), Processed: w.processed.Load(), Failed: w.failed.Load(),
				Status: w.getStatus(), Concurrency: w.concurrency, StartedAt: w.startedAt, Ts: time.Now().UnixMilli(),
			}
			if _, err := w.workersKV.Put(w.id, mustMarshal(info)); err != nil {
				log.Printf("heartbeat not written: %v", err)
			}
			select {
			case <-tick.C:
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (w *worker) setStatus(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status = s
}

func (w *worker) getStatus() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}
