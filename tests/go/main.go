// Command franzcheck drives franz-go against a broker: create a topic, produce idempotently with every codec,
// consume by assignment, then run a group consumer and a transaction, and print what it saw.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "member" {
		runMember(os.Args[2:])
		return
	}
	bootstrap, topic := os.Args[1], os.Args[2]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	admin, err := kgo.NewClient(kgo.SeedBrokers(bootstrap))
	if err != nil {
		fail("client: %v", err)
	}
	adm := kadm.NewClient(admin)
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil {
		fail("create topic: %v", err)
	}

	codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(),
		kgo.Lz4Compression(), kgo.ZstdCompression()}
	want := map[string]bool{}
	for c, codec := range codecs {
		p, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ProducerBatchCompression(codec),
			kgo.DefaultProduceTopic(topic))
		if err != nil {
			fail("producer: %v", err)
		}
		for i := 0; i < 100; i++ {
			v := fmt.Sprintf("c%d-%d", c, i)
			want[v] = true
			p.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(v)}, func(_ *kgo.Record, err error) {
				if err != nil {
					fail("produce: %v", err)
				}
			})
		}
		if err := p.Flush(ctx); err != nil {
			fail("flush: %v", err)
		}
		p.Close()
	}

	// A transaction that commits and one that aborts.
	tx, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.TransactionalID("tx-"+topic), kgo.DefaultProduceTopic(topic))
	if err != nil {
		fail("txn client: %v", err)
	}
	for _, commit := range []bool{true, false} {
		if err := tx.BeginTransaction(); err != nil {
			fail("begin: %v", err)
		}
		v := fmt.Sprintf("txn-%v", commit)
		if commit {
			want[v] = true
		}
		if err := tx.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			fail("txn produce: %v", err)
		}
		if err := tx.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			fail("end txn: %v", err)
		}
	}
	tx.Close()

	// A group consumer, read_committed, from the start.
	group := "g-" + topic
	c, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ConsumeTopics(topic), kgo.ConsumerGroup(group),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		fail("consumer: %v", err)
	}
	got := map[string]bool{}
	for len(got) < len(want) && ctx.Err() == nil {
		fetches := c.PollFetches(ctx)
		if errs := fetches.Errors(); len(errs) > 0 {
			fail("fetch: %v", errs)
		}
		fetches.EachRecord(func(r *kgo.Record) { got[string(r.Value)] = true })
	}
	if err := c.CommitUncommittedOffsets(ctx); err != nil {
		fail("commit: %v", err)
	}
	c.Close()
	var missing []string
	for v := range want {
		if !got[v] {
			missing = append(missing, v)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 || got["txn-false"] {
		fail("missing %v, aborted seen %v", missing, got["txn-false"])
	}
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		fail("lag: %v", err)
	}
	total := int64(0)
	lags.Each(func(l kadm.DescribedGroupLag) { total += l.Lag.Total() })
	admin.Close()
	fmt.Printf("consumed %d lag %d\n", len(got), total)
}
