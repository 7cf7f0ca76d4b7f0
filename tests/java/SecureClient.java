import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.errors.SaslAuthenticationException;

/**
 * The Java client over SASL (PLAIN or SCRAM) and TLS: an admin call, produce, a transaction, a read_committed
 * group consumer. Args: one or more cases separated by "--", each
 * bootstrap topic securityProtocol mechanism user password caPem|- [expect-auth-failure]; output lines start
 * with the case's number (one JVM for all cases: starting one costs seconds).
 */
public class SecureClient {
    static int caseNo;

    public static void main(String[] all) throws Exception {
        List<String> current = new ArrayList<>();
        for (String a : all) {
            if (a.equals("--")) {
                run(current.toArray(new String[0]));
                current.clear();
            } else {
                current.add(a);
            }
        }
        if (!current.isEmpty())
            run(current.toArray(new String[0]));
    }

    static void out(String line) {
        System.out.println(caseNo + " " + line);
    }

    static void run(String[] args) throws Exception {
        caseNo++;
        String bootstrap = args[0], topic = args[1], protocol = args[2], mechanism = args[3];
        String user = args[4], password = args[5], ca = args[6];
        boolean expectFailure = args.length > 7 && args[7].equals("expect-auth-failure");
        Properties common = new Properties();
        common.put("bootstrap.servers", bootstrap);
        common.put("security.protocol", protocol);
        common.put("sasl.mechanism", mechanism);
        String module = mechanism.equals("PLAIN") ? "org.apache.kafka.common.security.plain.PlainLoginModule"
            : "org.apache.kafka.common.security.scram.ScramLoginModule";
        common.put("sasl.jaas.config", module + " required username=\"" + user + "\" password=\"" + password + "\";");
        if (!ca.equals("-")) {
            common.put("ssl.truststore.type", "PEM");
            common.put("ssl.truststore.location", ca);
        }
        try (Admin admin = Admin.create(common)) {
            try {
                admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get();
            } catch (ExecutionException e) {
                if (expectFailure && e.getCause() instanceof SaslAuthenticationException) {
                    out("auth failed: " + e.getCause().getMessage());
                    return;
                }
                throw e;
            }
            if (expectFailure)
                throw new AssertionError("authenticated with a wrong password");
            if (mechanism.startsWith("SCRAM")) {
                UserScramCredentialsDescription d = admin.describeUserScramCredentials(List.of(user)).description(user).get();
                out("scram credentials " + d.credentialInfos().size());
            }
        }
        Properties p = new Properties();
        p.putAll(common);
        p.put("key.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        p.put("value.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        try (Producer<String, String> producer = new KafkaProducer<>(p)) {
            for (int i = 0; i < 100; i++)
                producer.send(new ProducerRecord<>(topic, "k" + i, "v" + i));
            producer.flush();
        }
        Properties t = new Properties();
        t.putAll(p);
        t.put("transactional.id", "tx-" + topic);
        try (Producer<String, String> txn = new KafkaProducer<>(t)) {
            txn.initTransactions();
            txn.beginTransaction();
            txn.send(new ProducerRecord<>(topic, "t", "committed"));
            txn.commitTransaction();
            txn.beginTransaction();
            txn.send(new ProducerRecord<>(topic, "t", "aborted"));
            txn.abortTransaction();
        }
        Properties c = new Properties();
        c.putAll(common);
        c.put("key.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
        c.put("value.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
        c.put("group.id", "g-" + topic);
        c.put("enable.auto.commit", "false");
        c.put("auto.offset.reset", "earliest");
        c.put("isolation.level", "read_committed");
        Set<String> seen = new TreeSet<>();
        try (Consumer<String, String> consumer = new KafkaConsumer<>(c)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 60_000;
            while (seen.size() < 101 && System.currentTimeMillis() < deadline)
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500)))
                    seen.add(r.value());
            consumer.commitSync();
        }
        if (seen.contains("aborted"))
            throw new AssertionError("read an aborted record");
        out("consumed " + seen.size());
    }
}
