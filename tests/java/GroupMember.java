import java.time.Duration;
import java.util.*;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.TopicPartition;

/**
 * One member of a consumer group using the consumer group protocol (group.protocol=consumer, KIP-848).
 * Prints "assigned P,...", "revoked P,..." and "record P OFFSET VALUE" lines; commits synchronously after each
 * poll that returned records (after printing them: a kill in between shows up as a duplicate, never as a loss),
 * so what it printed is committed before it can acknowledge a revocation. SIGTERM makes it
 * leave the group cleanly (close()); SIGKILL leaves it to the session timeout.
 *
 * Arguments: bootstrap topic group [instance-id|-]
 */
public class GroupMember {
    static volatile boolean running = true;

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], group = args[2];
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("group.id", group);
        p.put("group.protocol", "consumer");
        if (args.length > 3 && !args[3].equals("-")) p.put("group.instance.id", args[3]);
        p.put("key.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
        p.put("value.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        CountDownLatch done = new CountDownLatch(1);
        Thread main = Thread.currentThread();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            running = false;
            try {
                done.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }));
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
            consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                    if (!parts.isEmpty()) say("revoked " + names(parts));
                }

                public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                    say("assigned " + names(consumer.assignment()));
                }

                public void onPartitionsLost(Collection<TopicPartition> parts) {
                    if (!parts.isEmpty()) say("lost " + names(parts));
                }
            });
            while (running) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(200));
                if (records.isEmpty()) continue;
                StringBuilder out = new StringBuilder();
                for (ConsumerRecord<String, String> r : records)
                    out.append("record ").append(r.partition()).append(' ').append(r.offset()).append(' ')
                        .append(r.value()).append('\n');
                System.out.print(out);
                System.out.flush();
                consumer.commitSync();
            }
            say("closing");
        } finally {
            say("closed");
            done.countDown();
        }
    }

    static String names(Collection<TopicPartition> parts) {
        List<Integer> ids = new ArrayList<>();
        for (TopicPartition tp : parts) ids.add(tp.partition());
        Collections.sort(ids);
        StringBuilder b = new StringBuilder();
        for (int id : ids) b.append(b.length() == 0 ? "" : ",").append(id);
        return b.toString();
    }

    static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }
}
