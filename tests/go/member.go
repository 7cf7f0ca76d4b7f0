package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/twmb/franz-go/pkg/kgo"
)

// runMember is `franzcheck member BOOTSTRAP TOPIC GROUP [INSTANCE-ID|-]`: one member of a consumer group using the consumer group
// protocol (KIP-848, the server-side "uniform" assignor through kgo.ServerSideBalancer). It prints the same lines as
// tests/java/GroupMember.java ("assigned P,...", "revoked P,...", "record P OFFSET VALUE", "closed") and commits
// synchronously after every poll. SIGTERM leaves the group cleanly.
func runMember(args []string) {
	bootstrap, topic, group := args[0], args[1], args[2]
	var static []kgo.Opt
	if len(args) > 3 && args[3] != "-" {
		static = append(static, kgo.InstanceID(args[3]))
	}
	var mu sync.Mutex
	owned := map[int32]bool{}
	say := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Println(line)
	}
	list := func(parts []int32) string {
		sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
		s := make([]string, len(parts))
		for i, p := range parts {
			s[i] = fmt.Sprint(p)
		}
		return strings.Join(s, ",")
	}
	current := func() []int32 {
		var out []int32
		for p := range owned {
			out = append(out, p)
		}
		return out
	}
	cl, err := kgo.NewClient(append(static, kgo.SeedBrokers(bootstrap), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ServerSideBalancer(), kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			for _, p := range m[topic] {
				owned[p] = true
			}
			say("assigned " + list(current()))
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, c *kgo.Client, m map[string][]int32) {
			if err := c.CommitUncommittedOffsets(ctx); err != nil {
				fmt.Fprintf(os.Stderr, "commit on revoke: %v\n", err)
			}
			for _, p := range m[topic] {
				delete(owned, p)
			}
			if len(m[topic]) > 0 {
				say("revoked " + list(m[topic]))
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			for _, p := range m[topic] {
				delete(owned, p)
			}
			if len(m[topic]) > 0 {
				say("lost " + list(m[topic]))
			}
		}))...)
	if err != nil {
		fail("member: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	for ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			cl.AllowRebalance()
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			fmt.Fprintf(os.Stderr, "fetch %s/%d: %v\n", t, p, err)
		})
		var b strings.Builder
		records := fetches.Records()
		for _, r := range records {
			fmt.Fprintf(&b, "record %d %d %s\n", r.Partition, r.Offset, r.Value)
		}
		if len(records) > 0 {
			mu.Lock()
			fmt.Print(b.String())
			mu.Unlock()
			if err := cl.CommitRecords(context.Background(), records...); err != nil {
				fmt.Fprintf(os.Stderr, "commit: %v\n", err)
			}
		}
		cl.AllowRebalance()
	}
	say("closing")
	cl.Close()
	say("closed")
}
