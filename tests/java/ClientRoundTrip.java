import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.internals.RecordHeader;

/** The Java client against a broker: create a topic, produce (idempotent, the default) with every codec, read back. */
public class ClientRoundTrip {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1];
        Properties common = new Properties();
        common.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(common)) {
            admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get();
        }
        String[] codecs = {"none", "gzip", "snappy", "lz4", "zstd"};
        int perCodec = 200;
        for (String codec : codecs) {
            Properties p = new Properties();
            p.putAll(common);
            p.put("compression.type", codec);
            p.put("key.serializer", "org.apache.kafka.common.serialization.StringSerializer");
            p.put("value.serializer", "org.apache.kafka.common.serialization.StringSerializer");
            try (Producer<String, String> producer = new KafkaProducer<>(p)) {
                for (int i = 0; i < perCodec; i++) {
                    ProducerRecord<String, String> r = new ProducerRecord<>(topic, null, 1_700_000_000_000L + i,
                        "k" + i, codec + "-" + i, List.of(new RecordHeader("codec", codec.getBytes())));
                    producer.send(r);
                }
                producer.flush();
            }
        }
        Properties c = new Properties();
        c.putAll(common);
        c.put("key.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
        c.put("value.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
        c.put("enable.auto.commit", "false");
        c.put("auto.offset.reset", "earliest");
        Set<String> seen = new TreeSet<>();
        try (Consumer<String, String> consumer = new KafkaConsumer<>(c)) {
            consumer.assign(List.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1)));
            long deadline = System.currentTimeMillis() + 30_000;
            while (seen.size() < codecs.length * perCodec && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    String codec = r.value().split("-")[0];
                    if (!codec.equals(new String(r.headers().lastHeader("codec").value())))
                        throw new AssertionError("header mismatch at " + r.offset());
                    seen.add(r.value());
                }
            }
        }
        System.out.println("consumed " + seen.size());
    }
}
