import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.acl.*;
import org.apache.kafka.common.errors.GroupAuthorizationException;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.apache.kafka.common.resource.*;

/**
 * The Java client against a broker with an authorizer, as several SCRAM-SHA-256 users over SASL_PLAINTEXT.
 * Args: bootstrap password, then steps separated by "--" (one JVM for all of them: starting one costs seconds):
 *   USER consume TOPIC GROUP N   subscribe in GROUP and poll until N records, or report the first exception
 *                                when N is 0 (with N > 0 an authorization error is retried for 20 s: an ACL just
 *                                created may take a moment to reach Kafka's authorizer)
 *   USER produce TOPIC           send one record and wait for its acknowledgement
 *   USER allow TOPIC|GROUP NAME PRINCIPAL OPERATION   create an ALLOW ACL with the Admin client
 * Each outcome is printed as "STEP_NUMBER WHAT", e.g. "1 TopicAuthorizationException [t]".
 */
public class AclClient {
    static String bootstrap, password;

    public static void main(String[] all) throws Exception {
        bootstrap = all[0];
        password = all[1];
        List<String> current = new ArrayList<>();
        int step = 0;
        for (int i = 2; i <= all.length; i++) {
            if (i == all.length || all[i].equals("--")) {
                if (!current.isEmpty())
                    System.out.println(++step + " " + run(current.toArray(new String[0])));
                current.clear();
            } else {
                current.add(all[i]);
            }
        }
    }

    static Properties auth(String user) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("security.protocol", "SASL_PLAINTEXT");
        p.put("sasl.mechanism", "SCRAM-SHA-256");
        p.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
            + user + "\" password=\"" + password + "\";");
        return p;
    }

    static String describe(Throwable e) {
        if (e instanceof TopicAuthorizationException t)
            return "TopicAuthorizationException " + new TreeSet<>(t.unauthorizedTopics());
        if (e instanceof GroupAuthorizationException g)
            return "GroupAuthorizationException " + g.groupId();
        return e.getClass().getSimpleName() + ": " + e.getMessage();
    }

    static String run(String[] a) throws Exception {
        String user = a[0], action = a[1];
        switch (action) {
            case "consume": return consume(user, a[2], a[3], Integer.parseInt(a[4]));
            case "produce": return produce(user, a[2]);
            case "allow": return allow(a[2], a[3], a[4], a[5]);
            default: throw new IllegalArgumentException("unknown step " + action);
        }
    }

    static String consume(String user, String topic, String group, int expected) {
        Properties c = auth(user);
        c.put("key.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
        c.put("value.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
        c.put("group.id", group);
        c.put("enable.auto.commit", "false");
        c.put("auto.offset.reset", "earliest");
        int seen = 0;
        try (Consumer<String, String> consumer = new KafkaConsumer<>(c)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 20_000;
            KafkaException last = null;
            while (System.currentTimeMillis() < deadline && (expected == 0 || seen < expected)) {
                try {
                    seen += consumer.poll(Duration.ofMillis(500)).count();
                } catch (TopicAuthorizationException | GroupAuthorizationException e) {
                    if (expected == 0)
                        return describe(e);
                    last = e;
                }
            }
            if (seen == 0 && last != null)
                return describe(last);
            if (seen > 0)
                consumer.commitSync();
        }
        return "consumed " + seen;
    }

    static String produce(String user, String topic) throws InterruptedException {
        Properties p = auth(user);
        p.put("key.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        p.put("value.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        p.put("delivery.timeout.ms", "20000");
        p.put("request.timeout.ms", "10000");
        try (Producer<String, String> producer = new KafkaProducer<>(p)) {
            producer.send(new ProducerRecord<>(topic, "java", "from-java")).get();
            return "produced";
        } catch (ExecutionException e) {
            return describe(e.getCause());
        }
    }

    static String allow(String type, String name, String principal, String operation) throws Exception {
        ResourceType resource = ResourceType.valueOf(type);
        AclBinding acl = new AclBinding(new ResourcePattern(resource, name, PatternType.LITERAL),
            new AccessControlEntry(principal, "*", AclOperation.valueOf(operation), AclPermissionType.ALLOW));
        try (Admin admin = Admin.create(auth("admin"))) {
            admin.createAcls(List.of(acl)).all().get();
        }
        return "allowed " + principal + " " + operation + " " + type + " " + name;
    }
}
