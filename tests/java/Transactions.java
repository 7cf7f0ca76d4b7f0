import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;

/**
 * Transactions of the Java client against a broker: commit, abort, offsets in a transaction, read_committed, fencing.
 * It prints the transaction.version the cluster finalized and the producer epoch after three ended transactions:
 * with the second-generation protocol (KIP-890) every EndTxn bumps the epoch, with the first it stays put.
 */
public class Transactions {
    public static void main(String[] args) {
        try {
            run(args);
        } catch (Throwable e) {  // the source launcher hides the stack trace of what main throws
            e.printStackTrace();
            System.exit(1);
        }
    }

    static void run(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], tid = "tx-" + topic, group = "g-" + topic;
        Properties common = new Properties();
        common.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(common)) {
            admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get();
            FinalizedVersionRange tv = admin.describeFeatures().featureMetadata().get()
                .finalizedFeatures().get("transaction.version");
            System.out.println("transaction.version " + (tv == null ? 0 : tv.maxVersionLevel()));
        }
        Properties p = new Properties();
        p.putAll(common);
        p.put("transactional.id", tid);
        p.put("key.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        p.put("value.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        try (Producer<String, String> producer = new KafkaProducer<>(p)) {
            producer.initTransactions();
            String[] outcomes = {"commit", "abort", "commit"};
            for (int t = 0; t < outcomes.length; t++) {
                producer.beginTransaction();
                for (int i = 0; i < 10; i++)
                    producer.send(new ProducerRecord<>(topic, i % 2, "k" + i, outcomes[t] + "-" + t + "-" + i));
                if (t == 2)
                    producer.sendOffsetsToTransaction(Map.of(new TopicPartition(topic, 0), new OffsetAndMetadata(5)),
                        new ConsumerGroupMetadata(group));
                if (outcomes[t].equals("commit")) producer.commitTransaction();
                else producer.abortTransaction();
            }
            try (Admin admin = Admin.create(common)) {
                TransactionDescription d = admin.describeTransactions(List.of(tid)).description(tid).get();
                System.out.println("epoch after 3 transactions " + d.producerEpoch() + " " + d.state());
                long committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get()
                    .get(new TopicPartition(topic, 0)).offset();
                System.out.println("committed offset " + committed);
            }
            // A second instance with the same transactional.id fences this one.
            try (Producer<String, String> successor = new KafkaProducer<>(p)) {
                successor.initTransactions();
                try {
                    producer.beginTransaction();
                    producer.send(new ProducerRecord<>(topic, 0, "z", "zombie")).get();
                    producer.commitTransaction();
                    System.out.println("zombie committed");
                } catch (ProducerFencedException | ExecutionException e) {
                    System.out.println("zombie fenced");
                }
                successor.beginTransaction();
                successor.send(new ProducerRecord<>(topic, 1, "s", "commit-successor"));
                successor.commitTransaction();
            }
        }
        Properties c = new Properties();
        c.putAll(common);
        c.put("key.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
        c.put("value.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
        c.put("isolation.level", "read_committed");
        c.put("auto.offset.reset", "earliest");
        c.put("enable.auto.commit", "false");
        List<String> seen = new ArrayList<>();
        try (Consumer<String, String> consumer = new KafkaConsumer<>(c)) {
            consumer.assign(List.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1)));
            long deadline = System.currentTimeMillis() + 20_000;
            while (seen.size() < 21 && System.currentTimeMillis() < deadline)
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(300))) seen.add(r.value());
            for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(1000))) seen.add(r.value());
        }
        long committedRecords = seen.stream().filter(v -> v.startsWith("commit")).count();
        long abortedRecords = seen.size() - committedRecords;
        System.out.println("read_committed " + committedRecords + " committed " + abortedRecords + " other");
    }
}
