// Command franzsecure drives franz-go over SASL (PLAIN, SCRAM-SHA-256/512) and TLS: an admin call, produce, a
// committed and an aborted transaction, a read_committed group consumer. Args: bootstrap topic mechanism user
// password caPem|- [expect-auth-failure]. With "acl" first it runs one step against an authorizer (acl.go).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "acl" {
		aclMain(os.Args[2:])
		return
	}
	bootstrap, topic, mechanism, user, password, ca := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6]
	expectFailure := len(os.Args) > 7 && os.Args[7] == "expect-auth-failure"
	var mech sasl.Mechanism
	switch mechanism {
	case "PLAIN":
		mech = plain.Auth{User: user, Pass: password}.AsMechanism()
	case "SCRAM-SHA-256":
		mech = scram.Auth{User: user, Pass: password}.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		mech = scram.Auth{User: user, Pass: password}.AsSha512Mechanism()
	default:
		fail("unknown mechanism %s", mechanism)
	}
	common := []kgo.Opt{kgo.SeedBrokers(bootstrap), kgo.SASL(mech)}
	if ca != "-" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			fail("ca: %v", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		common = append(common, kgo.DialTLSConfig(&tls.Config{RootCAs: pool}))
	}
	opts := func(more ...kgo.Opt) []kgo.Opt { return append(append([]kgo.Opt{}, common...), more...) }
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	admin, err := kgo.NewClient(opts()...)
	if err != nil {
		fail("client: %v", err)
	}
	adm := kadm.NewClient(admin)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, topic); err != nil {
		if expectFailure {
			fmt.Printf("auth failed: %v\n", err)
			return
		}
		fail("create topic: %v", err)
	}
	if expectFailure {
		fail("authenticated with a wrong password")
	}
	if mechanism != "PLAIN" {
		described, err := adm.DescribeUserSCRAMs(ctx, user)
		if err != nil {
			fail("describe scram: %v", err)
		}
		fmt.Printf("scram credentials %d\n", len(described[user].CredInfos))
	}

	p, err := kgo.NewClient(opts(kgo.DefaultProduceTopic(topic))...)
	if err != nil {
		fail("producer: %v", err)
	}
	for i := 0; i < 100; i++ {
		p.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("v%d", i))}, func(_ *kgo.Record, err error) {
			if err != nil {
				fail("produce: %v", err)
			}
		})
	}
	if err := p.Flush(ctx); err != nil {
		fail("flush: %v", err)
	}
	p.Close()

	tx, err := kgo.NewClient(opts(kgo.TransactionalID("tx-"+topic), kgo.DefaultProduceTopic(topic))...)
	if err != nil {
		fail("txn client: %v", err)
	}
	for _, commit := range []bool{true, false} {
		if err := tx.BeginTransaction(); err != nil {
			fail("begin: %v", err)
		}
		if err := tx.ProduceSync(ctx, &kgo.Record{Value: []byte(fmt.Sprintf("txn-%v", commit))}).FirstErr(); err != nil {
			fail("txn produce: %v", err)
		}
		if err := tx.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			fail("end txn: %v", err)
		}
	}
	tx.Close()

	c, err := kgo.NewClient(opts(kgo.ConsumeTopics(topic), kgo.ConsumerGroup("g-"+topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		fail("consumer: %v", err)
	}
	got := map[string]bool{}
	for len(got) < 101 && ctx.Err() == nil {
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
	admin.Close()
	if got["txn-false"] {
		fail("read an aborted record")
	}
	fmt.Printf("consumed %d\n", len(got))
}
