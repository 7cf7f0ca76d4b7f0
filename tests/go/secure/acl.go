package main

// franzsecure acl BOOTSTRAP USER PASSWORD STEP...: one step as USER (SCRAM-SHA-256 over SASL_PLAINTEXT) against a
// broker with an authorizer, its outcome printed as one line:
//
//	consume TOPIC GROUP N   consume in GROUP until N records or 20 s ("consumed N"); with N = 0, until the first
//	                        error: "denied CODE TOPIC" for a partition's, "group denied CODE" for the group's
//	produce TOPIC           produce one record ("produced" or "denied CODE")
//
// CODE is Kafka's error name as kerr gives it, e.g. TOPIC_AUTHORIZATION_FAILED.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

func errorName(err error) string {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Message
	}
	return err.Error()
}

func aclMain(args []string) {
	bootstrap, user, password, step := args[0], args[1], args[2], args[3]
	common := []kgo.Opt{kgo.SeedBrokers(bootstrap),
		kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha256Mechanism())}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	switch step {
	case "consume":
		topic, group := args[4], args[5]
		expected, err := strconv.Atoi(args[6])
		if err != nil {
			fail("N: %v", err)
		}
		c, err := kgo.NewClient(append(common, kgo.ConsumeTopics(topic), kgo.ConsumerGroup(group),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
		if err != nil {
			fail("consumer: %v", err)
		}
		defer c.Close()
		seen := 0
		for (expected == 0 || seen < expected) && ctx.Err() == nil {
			fetches := c.PollFetches(ctx)
			for _, fe := range fetches.Errors() {
				if errors.Is(fe.Err, context.DeadlineExceeded) {
					continue
				}
				if expected > 0 { // an ACL just created may take a moment to reach Kafka's authorizer
					continue
				}
				var session *kgo.ErrGroupSession
				if errors.As(fe.Err, &session) {
					fmt.Printf("group denied %s\n", errorName(fe.Err))
				} else {
					fmt.Printf("denied %s %s\n", errorName(fe.Err), fe.Topic)
				}
				return
			}
			seen += fetches.NumRecords()
		}
		if seen > 0 {
			if err := c.CommitUncommittedOffsets(context.Background()); err != nil {
				fail("commit: %v", err)
			}
		}
		fmt.Printf("consumed %d\n", seen)
	case "produce":
		topic := args[4]
		p, err := kgo.NewClient(append(common, kgo.RecordDeliveryTimeout(15*time.Second))...)
		if err != nil {
			fail("producer: %v", err)
		}
		defer p.Close()
		if err := p.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("from-franz-go")}).FirstErr(); err != nil {
			fmt.Printf("denied %s\n", errorName(err))
			return
		}
		fmt.Println("produced")
	default:
		fail("unknown step %s", step)
	}
}
