import java.util.*;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.*;

/**
 * The Java Admin client's cluster calls against a broker; each prints one line that the test compares with what
 * Kafka 4.1 answers on one node. An API the broker does not serve fails the call with UnsupportedVersionException.
 */
public class AdminCalls {
    public static void main(String[] args) {
        try {
            run(args);
        } catch (Throwable e) {  // the source launcher hides the stack trace of what main throws
            e.printStackTrace();
            System.exit(1);
        }
    }

    static String error(ExecutionException e) {
        return e.getCause().getClass().getSimpleName();
    }

    static void run(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1];
        Properties common = new Properties();
        common.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(common)) {
            admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all().get();
            Properties p = new Properties();
            p.putAll(common);
            p.put("key.serializer", "org.apache.kafka.common.serialization.StringSerializer");
            p.put("value.serializer", "org.apache.kafka.common.serialization.StringSerializer");
            try (Producer<String, String> producer = new KafkaProducer<>(p)) {
                for (int i = 0; i < 50; i++) producer.send(new ProducerRecord<>(topic, 0, "k", "v" + i));
            }
            Node node = admin.describeCluster().nodes().get().iterator().next();
            int id = node.id();

            // DescribeTopicPartitions (KIP-966) with a page of one partition: the client follows the cursor.
            TopicDescription td = admin.describeTopics(List.of(topic),
                new DescribeTopicsOptions().partitionSizeLimitPerResponse(1)).allTopicNames().get().get(topic);
            System.out.println("describeTopics partitions " + td.partitions().size() + " leader "
                + (td.partitions().get(2).leader().id() == id));

            Map<Integer, Map<String, LogDirDescription>> dirs = admin.describeLogDirs(List.of(id)).allDescriptions().get();
            LogDirDescription dir = dirs.get(id).values().iterator().next();
            ReplicaInfo r0 = dir.replicaInfos().get(new TopicPartition(topic, 0));
            ReplicaInfo r1 = dir.replicaInfos().get(new TopicPartition(topic, 1));
            System.out.println("describeLogDirs sizes " + (r0.size() > 0) + " " + (r1.size() == 0) + " lag " + r0.offsetLag());
            String path = dirs.get(id).keySet().iterator().next();
            admin.alterReplicaLogDirs(Map.of(new TopicPartitionReplica(topic, 0, id), path)).all().get();
            try {
                admin.alterReplicaLogDirs(Map.of(new TopicPartitionReplica(topic, 0, id), path + "-other")).all().get();
                System.out.println("alterReplicaLogDirs other ok");
            } catch (ExecutionException e) {
                System.out.println("alterReplicaLogDirs other " + error(e));
            }

            for (ElectionType type : ElectionType.values()) {
                Map<TopicPartition, Optional<Throwable>> result =
                    admin.electLeaders(type, Set.of(new TopicPartition(topic, 0))).partitions().get();
                System.out.println("electLeaders " + type + " "
                    + result.get(new TopicPartition(topic, 0)).map(t -> t.getClass().getSimpleName()).orElse("ok"));
            }

            admin.alterPartitionReassignments(Map.of(new TopicPartition(topic, 1),
                Optional.of(new NewPartitionReassignment(List.of(id))))).all().get();
            try {
                admin.alterPartitionReassignments(Map.of(new TopicPartition(topic, 1),
                    Optional.of(new NewPartitionReassignment(List.of(id + 50))))).all().get();
                System.out.println("reassign to another broker ok");
            } catch (ExecutionException e) {
                System.out.println("reassign to another broker " + error(e));
            }
            System.out.println("listPartitionReassignments " + admin.listPartitionReassignments().reassignments().get().size());

            QuorumInfo quorum = admin.describeMetadataQuorum().quorumInfo().get();
            System.out.println("describeMetadataQuorum leader " + (quorum.leaderId() == id) + " voters "
                + quorum.voters().size());

            FeatureMetadata features = admin.describeFeatures().featureMetadata().get();
            System.out.println("describeFeatures metadata.version "
                + features.finalizedFeatures().get("metadata.version").maxVersionLevel());
            admin.updateFeatures(Map.of("metadata.version", new FeatureUpdate((short) 27, FeatureUpdate.UpgradeType.UPGRADE)),
                new UpdateFeaturesOptions()).all().get();
            System.out.println("updateFeatures same level ok");

            Collection<ConfigResource> resources = admin.listConfigResources().all().get();
            System.out.println("listConfigResources topic " + resources.contains(new ConfigResource(ConfigResource.Type.TOPIC, topic))
                + " broker " + resources.contains(new ConfigResource(ConfigResource.Type.BROKER, String.valueOf(id))));

            Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> latest =
                admin.listOffsets(Map.of(new TopicPartition(topic, 0), OffsetSpec.latest())).all().get();
            System.out.println("listOffsets latest " + latest.get(new TopicPartition(topic, 0)).offset());

            try {
                admin.describeDelegationToken().delegationTokens().get();
                System.out.println("describeDelegationToken ok");
            } catch (ExecutionException e) {
                System.out.println("describeDelegationToken " + error(e));
            }
        }
    }
}
