import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterClientQuotasOptions;
import org.apache.kafka.common.quota.ClientQuotaAlteration;
import org.apache.kafka.common.quota.ClientQuotaEntity;
import org.apache.kafka.common.quota.ClientQuotaFilter;
import org.apache.kafka.common.quota.ClientQuotaFilterComponent;

/** The Java Admin client's client-quota calls (KIP-546): set, describe with filters, validate, remove. One line
 *  per step, so that the same run against Apache Kafka and against our broker can be compared. */
public class ClientQuotas {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        String user = args[1] + "-u", client = args[1] + "-c";
        try (Admin admin = Admin.create(props)) {
            ClientQuotaEntity u = new ClientQuotaEntity(Map.of(ClientQuotaEntity.USER, user));
            ClientQuotaEntity uc = new ClientQuotaEntity(Map.of(ClientQuotaEntity.USER, user,
                    ClientQuotaEntity.CLIENT_ID, client));
            admin.alterClientQuotas(List.of(
                    new ClientQuotaAlteration(u, List.of(new ClientQuotaAlteration.Op("producer_byte_rate", 1024.0))),
                    new ClientQuotaAlteration(uc, List.of(new ClientQuotaAlteration.Op("consumer_byte_rate", 2048.0)))
            )).all().get();
            System.out.println("alter ok");
            ClientQuotaFilter byUser = ClientQuotaFilter.contains(List.of(ClientQuotaFilterComponent.ofEntity(
                    ClientQuotaEntity.USER, user)));
            Map<ClientQuotaEntity, Map<String, Double>> found = Map.of();
            for (int i = 0; i < 50; i++) {  // Kafka applies the change through its metadata log
                found = admin.describeClientQuotas(byUser).entities().get();
                if (found.size() == 2) break;
                Thread.sleep(100);
            }
            System.out.println("describe user " + found.size() + " " + found.get(u) + " " + found.get(uc));
            found = admin.describeClientQuotas(ClientQuotaFilter.containsOnly(List.of(
                    ClientQuotaFilterComponent.ofEntity(ClientQuotaEntity.USER, user)))).entities().get();
            System.out.println("describe strict " + found.size() + " " + found.get(u));
            try {
                admin.alterClientQuotas(List.of(new ClientQuotaAlteration(u, List.of(
                        new ClientQuotaAlteration.Op("producer_byte_rate", 1.5))))).all().get();
                System.out.println("fractional accepted");
            } catch (ExecutionException e) {
                System.out.println("fractional " + e.getCause().getClass().getSimpleName());
            }
            try {
                admin.alterClientQuotas(List.of(new ClientQuotaAlteration(u, List.of(
                        new ClientQuotaAlteration.Op("no_such_quota", 1.0))))).all().get();
                System.out.println("unknown key accepted");
            } catch (ExecutionException e) {
                System.out.println("unknown key " + e.getCause().getClass().getSimpleName());
            }
            admin.alterClientQuotas(List.of(new ClientQuotaAlteration(u, List.of(
                    new ClientQuotaAlteration.Op("producer_byte_rate", 9999.0)))),
                    new AlterClientQuotasOptions().validateOnly(true)).all().get();
            admin.alterClientQuotas(List.of(
                    new ClientQuotaAlteration(u, List.of(new ClientQuotaAlteration.Op("producer_byte_rate", null))),
                    new ClientQuotaAlteration(uc, List.of(new ClientQuotaAlteration.Op("consumer_byte_rate", null)))
            )).all().get();
            for (int i = 0; i < 50; i++) {
                found = admin.describeClientQuotas(byUser).entities().get();
                if (found.isEmpty()) break;
                Thread.sleep(100);
            }
            System.out.println("after removal " + found.size());
        }
    }
}
